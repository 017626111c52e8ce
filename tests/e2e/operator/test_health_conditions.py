"""Issue 13: every TaskQueue the CRD accepts gets its children, or within a tick a False
condition naming the user's field, while PENDING keeps updating; health is visible where
users look (STATUS column, kstatus conditions, `kubectl wait`, Events with reasons that
say what happened)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from e2e_helpers import Kubectl, condition, make_secret, taskqueue_manifest, wait_for
from rq import Queue
from rq.suspension import resume, suspend
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.e2e

NOOP = "taskqueue_worker.examples.basic.noop"
# What the API server refuses in a Deployment and the CRD leaves to it: an affinity term
# is passed through as Kubernetes content.
BAD_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Near"}]}]
        }
    }
}


def queue_of(kube: Kubectl) -> str:
    return f"health-{kube.namespace[-8:]}"


def status_of(kube: Kubectl, name: str) -> dict[str, Any]:
    return (kube.get("taskqueue", name) or {}).get("status") or {}


def reasons(kube: Kubectl, name: str) -> dict[str, tuple[str, str]]:
    return {
        c["type"]: (c["status"], c["reason"]) for c in status_of(kube, name).get("conditions", [])
    }


def events(kube: Kubectl, name: str) -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["reason"], e["message"])
        for e in kube.list("events")
        if e["involvedObject"].get("name") == name and e["involvedObject"]["kind"] == "TaskQueue"
    ]


def test_a_child_only_the_api_server_refuses_stalls_naming_the_field_and_counts_go_on(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    queue = queue_of(kube)
    manifest = taskqueue_manifest("refused", queues=[queue], replicas=1)
    manifest["spec"]["worker"]["affinity"] = BAD_AFFINITY
    kube.apply(manifest)
    for _ in range(3):
        Queue(queue, connection=redis_client).enqueue(NOOP)
    started = time.monotonic()
    stalled = wait_for(
        lambda: condition(kube.get("taskqueue", "refused"), "Stalled"), 15, 0.2, "Stalled"
    )
    print(f"Stalled condition {time.monotonic() - started:.2f}s after the apply")
    assert stalled["status"] == "True" and stalled["reason"] == "ChildRefused", stalled
    assert "spec.worker.affinity.nodeAffinity" in stalled["message"], stalled["message"]
    # The counts keep coming while the children are refused (the Stalled status may have
    # been written before all 3 enqueues).
    wait_for(lambda: status_of(kube, "refused").get("pending") == 3, 10, 0.2, "PENDING 3")
    assert status_of(kube, "refused")["observedGeneration"] == 1
    assert reasons(kube, "refused")["Ready"] == ("False", "ChildRefused")
    assert kube.get("deployment", "refused-workers") is None  # nothing touched
    row = kube.run("get", "taskqueue", "refused").stdout.splitlines()
    assert "ChildRefused" in row[1] and "STATUS" in row[0]
    Queue(queue, connection=redis_client).enqueue(NOOP)
    wait_for(lambda: status_of(kube, "refused").get("pending") == 4, 10, 0.2, "PENDING 4")

    # Fixed: the children come, Ready follows; `kubectl wait` reads the condition.
    del manifest["spec"]["worker"]["affinity"]
    kube.apply(manifest)
    kube.run("wait", "--for=condition=Ready", "--timeout=90s", "taskqueue/refused")
    assert reasons(kube, "refused")["Stalled"][0] == "False"
    assert status_of(kube, "refused")["observedGeneration"] == 2


def test_an_edit_the_api_server_refuses_keeps_the_old_children_and_the_status_honest(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    queue = queue_of(kube)
    manifest = taskqueue_manifest("edited", queues=[queue], replicas=0)
    kube.apply(manifest)
    kube.run("wait", "--for=condition=Ready", "--timeout=60s", "taskqueue/edited")
    before = kube.get("deployment", "edited-workers")
    assert before is not None
    patch = {"spec": {"replicas": 1, "worker": {"affinity": BAD_AFFINITY}}}
    kube.run("patch", "taskqueue", "edited", "--type=merge", "-p", json.dumps(patch))
    wait_for(lambda: reasons(kube, "edited").get("Stalled", ("",))[0] == "True", 15, 0.2, "Stall")
    status = status_of(kube, "edited")
    assert status["observedGeneration"] == 2
    assert reasons(kube, "edited")["Ready"] == ("False", "ChildRefused")
    after = kube.get("deployment", "edited-workers")
    assert after is not None and after["metadata"]["generation"] == before["metadata"]["generation"]
    Queue(queue, connection=redis_client).enqueue(NOOP)
    wait_for(lambda: status_of(kube, "edited").get("pending") == 1, 10, 0.2, "PENDING 1")


def test_a_missing_secret_a_crash_loop_and_a_users_scale_are_told_as_such(
    kube: Kubectl, operator_process: Any, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = queue_of(kube)
    kube.apply(taskqueue_manifest("nosecret", queues=[queue], replicas=0))
    wait_for(
        lambda: reasons(kube, "nosecret").get("RedisReachable") == ("False", "SecretMissing"),
        15,
        0.2,
        "SecretMissing",
    )
    assert reasons(kube, "nosecret")["Ready"] == ("False", "SecretMissing")
    assert any(r == "SecretMissing" for _, r, _ in events(kube, "nosecret"))

    # A worker whose command exits at once: its pod's reason reaches Ready and an Event.
    make_secret(kube, "redis-url", redis_server.pod_url)
    crashing = taskqueue_manifest("crashing", queues=[queue], replicas=1)
    crashing["spec"]["worker"]["command"] = ["python", "-c", "raise SystemExit(3)"]
    kube.apply(crashing)
    ready = wait_for(
        lambda: (
            (c := condition(kube.get("taskqueue", "crashing"), "Ready"))
            and c["reason"] in ("CrashLoopBackOff", "ContainerTerminated")
            and c
        ),
        90,
        0.5,
        "a crash-loop reason in Ready",
    )
    assert "exit code 3" in ready["message"], ready["message"]
    wait_for(
        lambda: any(r == "WorkerPodFailing" for _, r, _ in events(kube, "crashing")),
        15,
        0.5,
        "WorkerPodFailing Event",
    )

    # The user's own `kubectl scale` of a fixed-size TaskQueue is not drift.
    kube.apply(taskqueue_manifest("fixed", queues=[queue], replicas=0))
    wait_for(lambda: kube.get("deployment", "fixed-workers"), 30, 0.2, "the Deployment")
    kube.run("scale", "deployment", "fixed-workers", "--replicas=2")
    restored = wait_for(
        lambda: [m for _, r, m in events(kube, "fixed") if r == "ReplicasRestored"], 15, 0.2
    )
    assert "spec.replicas=0" in restored[0]
    assert not [m for _, r, m in events(kube, "fixed") if "restored the spec" in m]


def test_rq_suspend_is_a_condition_and_the_scaler_respects_it(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    queue = queue_of(kube)
    scaling = {"minReplicas": 0, "maxReplicas": 3, "targetBacklogPerWorker": 1}
    kube.apply(taskqueue_manifest("pausable", queues=[queue], scaling=scaling))
    wait_for(lambda: kube.get("deployment", "pausable-workers"), 30, 0.2, "the Deployment")
    suspend(redis_client)
    try:
        wait_for(
            lambda: reasons(kube, "pausable").get("WorkersSuspended") == ("True", "Suspended"),
            10,
            0.2,
            "WorkersSuspended",
        )
        for _ in range(3):
            Queue(queue, connection=redis_client).enqueue(NOOP)
        wait_for(lambda: status_of(kube, "pausable").get("pending") == 3, 10, 0.2, "PENDING 3")
        time.sleep(3)
        assert kube.get("deployment", "pausable-workers")["spec"]["replicas"] == 0  # type: ignore[index]
        assert reasons(kube, "pausable")["Ready"] == ("False", "WorkersSuspended")
    finally:
        resume(redis_client)
    wait_for(
        lambda: (kube.get("deployment", "pausable-workers") or {})["spec"]["replicas"] >= 1,
        15,
        0.2,
        "scale-up after rq resume",
    )
