"""Two operator replicas: only the Lease holder acts; the standby takes over when it dies."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from e2e_helpers import Kubectl, OperatorProcess, taskqueue_manifest, wait_for
from testbed.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_one_leader_acts_and_the_standby_takes_over(
    cluster: Cluster, kube: Kubectl, operator_process: Any, redis_secret: str
) -> None:
    operator_process.stop()  # the session's operator would act without an election
    replicas = [
        OperatorProcess(cluster.kubeconfig, "--leader-election-namespace", kube.namespace)
        for _ in range(2)
    ]
    try:
        for replica in replicas:
            replica.start()

        def holder() -> str | None:
            lease = kube.get("lease", "taskqueue-operator") or {}
            return (lease.get("spec") or {}).get("holderIdentity")

        leader_identity = wait_for(holder, 20, 0.2, "a leader")
        kube.apply(taskqueue_manifest("ha", queues=[f"ha-{kube.namespace[-6:]}"], replicas=1))
        wait_for(lambda: kube.get("deployment", "ha-workers"), 20, message="Deployment")
        time.sleep(3)
        created = kube.run(
            "get",
            "events",
            "-o",
            "json",
            "--field-selector",
            "reason=Created,involvedObject.name=ha",
        ).stdout
        messages = [e["message"] for e in json.loads(created)["items"]]
        assert messages.count("Deployment ha-workers") == 1, messages  # one actor only

        pid = int(leader_identity.rsplit("-", 1)[1])
        leader = next(r for r in replicas if r.process and r.process.pid == pid)
        leader.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        leader.process.wait()  # type: ignore[union-attr]
        leader.process = None
        killed = time.monotonic()
        kube.apply(taskqueue_manifest("ha", queues=[f"ha-{kube.namespace[-6:]}"], replicas=2))

        def scaled() -> bool:
            return ((kube.get("deployment", "ha-workers") or {}).get("spec") or {}).get(
                "replicas"
            ) == 2

        wait_for(scaled, 40, 0.2, "the standby acts")
        takeover = time.monotonic() - killed
        print(f"\ntakeover: the standby applied the change {takeover:.1f}s after the leader died")
        assert holder() != leader_identity
    finally:
        for replica in replicas:
            replica.stop()
        operator_process.start()
