"""Pod start in status: from a worker pod's creation to its RQ worker registered in Redis,
measured by the operator on real pods and checked against the pods' own timestamps."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from e2e_helpers import Kubectl, taskqueue_manifest, wait_for
from taskqueue_contract import timestamps

pytestmark = pytest.mark.e2e


def test_pod_start_is_measured_per_taskqueue_and_kept_in_status(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    queue = f"ps-{kube.namespace[-8:]}"
    kube.apply(taskqueue_manifest("podstart", queues=[queue], replicas=2))

    def measured() -> dict[str, Any] | None:
        status = (kube.get("taskqueue", "podstart") or {}).get("status") or {}
        pod_start = status.get("podStart") or {}
        return pod_start if pod_start.get("samples") == 2 else None

    pod_start = wait_for(measured, 120, 0.5, "status.podStart of both worker pods")
    print(f"\nstatus.podStart: {pod_start}")

    # The same figure from the pods' creationTimestamp (whole seconds, hence up to 1 s
    # more) and the workers' birth in Redis: the operator's is from its first watch event.
    births = {}
    for key in redis_client.smembers(f"rq:workers:{queue}"):
        worker = redis_client.hgetall(key)
        births[worker[b"hostname"].decode()] = timestamps.epoch(worker[b"birth"].decode())
    pods = {
        p["metadata"]["name"]: p for p in kube.list("pods", "app.kubernetes.io/instance=podstart")
    }
    independent = [
        births[name] - timestamps.epoch(body["metadata"]["creationTimestamp"])
        for name, body in pods.items()
        if name in births
    ]
    assert len(independent) == 2, (births, list(pods))
    assert 0 < pod_start["seconds"] < 60
    assert min(independent) - 1.5 <= pod_start["seconds"] <= max(independent) + 0.05, independent
    assert min(independent) - 1.5 <= pod_start["lastSeconds"] <= max(independent) + 0.05

    # A restarted operator keeps the figure (it is in status) and measures only pods
    # created after it started: the two old ones reach it as a listing, not as new pods.
    operator_process.restart()
    kube.run("patch", "taskqueue", "podstart", "--type=merge", "-p", '{"spec":{"replicas":3}}')

    def remeasured() -> dict[str, Any] | None:
        status = (kube.get("taskqueue", "podstart") or {}).get("status") or {}
        kept = status.get("podStart") or {}
        assert kept, "the figure survives the restart"
        return kept if kept.get("samples") == 1 else None

    again = wait_for(remeasured, 120, 0.5, "the third pod measured after the restart")
    assert 0 < again["seconds"] == again["lastSeconds"] < 60, again
