"""Issue 15 part 4 on the real node: pods of `spec.worker.processes` RQ work loops. The
scaler sizes the pool in loops and runs ceil(loops / processes) pods; when the load drops,
a pod with one busy loop outranks an idle pod, so the idle pod goes and the job runs on."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from e2e_helpers import Kubectl, Replicas, condition, queue_of, taskqueue_manifest, wait_for
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry
from taskqueue_contract.worker_names import slot_of
from testbed.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SLEEP = "taskqueue_worker.examples.sleep"
PROCESSES = 2
LONG_JOB_SECONDS = 40  # outlasts the short jobs, the scale-down delay and a slow pod start
SHORT_JOBS = 6
COST = "controller.kubernetes.io/pod-deletion-cost"


def loops_by_pod(client: redis.Redis, queue: str) -> dict[str, list[int]]:
    """The slots of the registered loops of each pod (worker hashes: hostname = pod)."""
    pods: dict[str, list[int]] = {}
    for member in client.smembers(f"rq:workers:{queue}"):
        key = member.decode()
        name = key.removeprefix("rq:worker:")
        hostname = client.hget(key, "hostname")
        if hostname:
            pod = hostname.decode()
            pods.setdefault(pod, []).append(slot_of(name, pod))
    return {pod: sorted(slots) for pod, slots in pods.items()}


def test_a_pod_with_one_busy_loop_survives_the_scale_down_and_its_job_finishes(
    cluster: Cluster,
    kube: Kubectl,
    operator_process: Any,
    redis_secret: str,
    redis_client: redis.Redis,
) -> None:
    name = "procs"
    queue = queue_of(kube, "-procs")
    # Every knob the scale-down relies on, explicitly: one worker per job (so a lone
    # running job asks for one loop, i.e. one pod, whatever the arrival rate's tail
    # times the long job's service time says), a short stabilization, busy protection.
    scaling = {
        "minReplicas": 0,
        "maxReplicas": 2,
        "targetBacklogPerWorker": 1,
        "scaleDownDelay": "3s",
        "protectBusyWorkers": True,
    }
    manifest = taskqueue_manifest(name, queues=[queue], scaling=scaling)
    manifest["spec"]["worker"].update(processes=PROCESSES, jobTimeout="60s")
    kube.apply(manifest)
    replicas = Replicas(cluster, kube.namespace, name)
    wait_for(lambda: replicas() == 0, 30, 0.2, "Deployment at 0")

    rq_queue = Queue(queue, connection=redis_client)
    long_job = rq_queue.enqueue(SLEEP, LONG_JOB_SECONDS, job_timeout=60)
    short = [rq_queue.enqueue(SLEEP, 2) for _ in range(SHORT_JOBS)]
    # 7 jobs, one loop each: ceil(7 / 2) = 4 pods, held at maxReplicas 2.
    wait_for(lambda: replicas() == 2, 15, 0.1, "2 pods of 2 loops")
    wait_for(lambda: long_job.get_status(refresh=True) == "started", 90, 0.2, "the long job runs")
    long_job.refresh()
    busy_loop, started_at = str(long_job.worker_name), long_job.started_at
    busy_pod = (redis_client.hget(f"rq:worker:{busy_loop}", "hostname") or b"").decode()
    layout = loops_by_pod(redis_client, queue)
    assert layout[busy_pod] == list(range(PROCESSES)), layout  # an image with the pool

    finished = FinishedJobRegistry(queue, connection=redis_client)
    wait_for(
        lambda: set(finished.get_job_ids(cleanup=False)) >= {j.id for j in short},
        90,
        0.2,
        "the short jobs",
    )
    # One running job left: one loop, one pod. The busy pod costs 10000 per busy loop,
    # the idle one 0: the ReplicaSet removes the idle one.
    wait_for(lambda: replicas() == 1, 30, 0.2, "the scale-down to 1 pod")
    assert long_job.get_status(refresh=True) == "started"

    def pods() -> dict[str, dict[str, Any]]:
        return {
            pod["metadata"]["name"]: pod
            for pod in kube.list("pods", f"taskqueue.dev/taskqueue={name}")
        }

    def survivors() -> list[str]:
        return sorted(
            pod for pod, body in pods().items() if not body["metadata"].get("deletionTimestamp")
        )

    assert survivors() == [busy_pod], pods().keys()
    annotations = pods()[busy_pod]["metadata"].get("annotations") or {}
    assert annotations.get(COST) == "10000", annotations
    wait_for(lambda: list(pods()) == [busy_pod], 60, 0.5, "the idle pod gone")

    wait_for(
        lambda: long_job.get_status(refresh=True) == "finished",
        LONG_JOB_SECONDS + 30,
        0.5,
        "the long job to finish",
    )
    done = Job.fetch(long_job.id, connection=redis_client)
    assert done.return_value() == LONG_JOB_SECONDS
    # Ran once, from its first start: neither killed nor recovered and run again (rq
    # writes started_at again in the work horse, milliseconds after the loop did).
    assert done.started_at is not None and started_at is not None
    assert abs((done.started_at - started_at).total_seconds()) < 1, (started_at, done.started_at)
    events = kube.run("get", "events", "--field-selector", "reason=AbandonedJobsRecovered")
    assert long_job.id not in events.stdout
    ready = condition(kube.get("taskqueue", name), "Ready") or {}
    assert ready.get("message", "").endswith(f"worker pods ready ({PROCESSES} workers each)"), ready
