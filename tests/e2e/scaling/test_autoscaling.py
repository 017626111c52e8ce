"""Issue 5 acceptance on the real control plane, with real worker processes and Redis."""

from __future__ import annotations

import os
import signal
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import kubernetes
import pytest
import redis
from e2e_helpers import (
    Kubectl,
    Replicas,
    condition,
    make_secret,
    queue_of,
    taskqueue_manifest,
    wait_for,
)
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.utils import utcparse
from taskqueue_contract.keys import Keys
from testbed.cluster import Cluster
from testbed.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SLEEP = "taskqueue_worker.examples.sleep"


def scaling(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "minReplicas": 0,
        "maxReplicas": 5,
        "targetBacklogPerWorker": 5,
        "scaleDownDelay": "5s",
    }
    base.update(overrides)
    return base


def test_burst_wakes_in_a_second_scales_to_max_drains_and_returns_to_zero(
    cluster: Cluster,
    kube: Kubectl,
    operator_process: Any,
    redis_secret: str,
    redis_client: redis.Redis,
) -> None:
    queue = queue_of(kube)
    kube.apply(taskqueue_manifest("burst", queues=[queue], scaling=scaling(scaleDownDelay="1s")))
    replicas = Replicas(cluster, kube.namespace, "burst")
    wait_for(lambda: replicas() == 0, 30, message="Deployment at 0")
    rq_queue = Queue(queue, connection=redis_client)

    latencies = []
    for _ in range(20):
        job = rq_queue.enqueue(SLEEP, 0)
        enqueued = time.monotonic()
        wait_for(lambda: replicas() >= 1, 5, 0.01, "wake to 1")
        latencies.append(time.monotonic() - enqueued)
        # Take the job back before a worker runs it, so the next round starts idle again.
        rq_queue.remove(job)
        Job.fetch(job.id, connection=redis_client).delete()
        wait_for(lambda: replicas() == 0, 30, 0.1, "back to zero")
        # A draining worker could still take the next job: wait until none is left.
        wait_for(
            lambda: (
                not redis_client.smembers(f"rq:workers:{queue}")
                and not kube.list("pods", "taskqueue.dev/taskqueue=burst")
            ),
            60,
            0.2,
            "no worker left",
        )
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[18]
    print(
        f"\nenqueue -> Deployment patched, 20 repeats: p50 {p50:.3f}s p95 {p95:.3f}s "
        f"max {max(latencies):.3f}s"
    )
    assert p95 <= 1.5

    kube.apply(taskqueue_manifest("burst", queues=[queue], scaling=scaling()))
    for _ in range(50):
        rq_queue.enqueue(SLEEP, 2)
    wait_for(lambda: replicas() == 5, 5, 0.05, "scale to 5")
    finished = FinishedJobRegistry(queue, connection=redis_client)
    wait_for(lambda: len(finished.get_job_ids(cleanup=False)) == 50, 180, 1.0, "drained")
    drained = time.monotonic()
    wait_for(lambda: replicas() == 0, 60, 0.2, "scale to zero")
    print(
        f"back to 0 replicas {time.monotonic() - drained:.1f}s after the drain (scaleDownDelay 5s)"
    )
    status = (kube.get("taskqueue", "burst") or {}).get("status") or {}
    assert "-> 0" in status.get("lastScaleReason", ""), status
    events = kube.run("get", "events", "--field-selector", "reason=Scaled").stdout
    assert "scaled up" in events and "scaled down" in events


def pod_of(client: redis.Redis, job: Job) -> str:
    """The pod whose worker runs `job` (worker hashes carry the pod name as hostname)."""
    job.refresh()
    hostname = client.hget(Keys().worker(str(job.worker_name)), "hostname")
    return hostname.decode() if isinstance(hostname, bytes) else str(hostname)


def scale_down_scenario(
    cluster: Cluster, kube: Kubectl, redis_client: redis.Redis, name: str, protect: bool
) -> tuple[int, int, int]:
    """4 workers, 2 of them busy with long jobs, then the load drops below the busy count.

    The long jobs (45 s, asking for 120 s) run within jobTimeout (60 s), which bounds every
    job's timeout, and the grace period (90 s) covers it: even a busy pod that is removed
    finishes its job (warm shutdown). Busy-pod protection keeps busy pods from being
    chosen at all. Returns (long jobs finished, failed, busy pods terminated under them).
    """
    queue = queue_of(kube, f"-{name}")
    spec = scaling(
        maxReplicas=4,
        targetBacklogPerWorker=2,
        scaleDownDelay="3s",
        protectBusyWorkers=protect,
        abandonedJobs="fail",
    )
    manifest = taskqueue_manifest(name, queues=[queue], scaling=spec)
    manifest["spec"]["worker"]["jobTimeout"] = "60s"
    kube.apply(manifest)
    replicas = Replicas(cluster, kube.namespace, name)
    wait_for(lambda: replicas() == 0, 30, message="Deployment")
    rq_queue = Queue(queue, connection=redis_client)
    long_jobs = [rq_queue.enqueue(SLEEP, 45, job_timeout=120) for _ in range(2)]
    for _ in range(6):
        rq_queue.enqueue(SLEEP, 1)
    wait_for(lambda: replicas() == 4, 10, 0.1, "scale to 4")
    wait_for(
        lambda: all(j.get_status(refresh=True) == "started" for j in long_jobs),
        60,
        0.5,
        "both long jobs run",
    )
    running_on = {pod_of(redis_client, j): j for j in long_jobs}
    terminated: set[str] = set()

    def long_jobs_ended() -> bool:
        """Also notes busy pods terminating while their job still runs (a pod whose job
        ended is idle: scaling it away then is right)."""
        for pod in kube.list("pods", f"taskqueue.dev/taskqueue={name}"):
            pod_name = pod["metadata"]["name"]
            job = running_on.get(pod_name)
            terminating = bool(pod["metadata"].get("deletionTimestamp"))
            if terminating and job is not None and job.get_status(refresh=True) == "started":
                terminated.add(pod_name)
        return all(j.get_status(refresh=True) in ("finished", "failed") for j in long_jobs)

    wait_for(lambda: replicas() < 4, 60, 0.5, "the scale-down")
    wait_for(long_jobs_ended, 150, 0.5, "the long jobs end")
    statuses = [j.get_status(refresh=True) for j in long_jobs]
    failed_registry = FailedJobRegistry(queue, connection=redis_client).get_job_ids(cleanup=False)
    assert statuses.count("failed") == len([j for j in long_jobs if j.id in failed_registry])
    return statuses.count("finished"), statuses.count("failed"), len(terminated)


def test_scale_down_never_interrupts_a_job_and_protection_spares_busy_pods(
    cluster: Cluster,
    kube: Kubectl,
    operator_process: Any,
    redis_secret: str,
    redis_client: redis.Redis,
) -> None:
    protected = scale_down_scenario(cluster, kube, redis_client, "guarded", protect=True)
    baseline = scale_down_scenario(cluster, kube, redis_client, "naive", protect=False)
    print(
        "\nlong jobs (finished, failed, busy pods terminated): "
        f"protected {protected}, without protection {baseline}"
    )
    assert protected == (2, 0, 0)
    # Without protection the ReplicaSet removes busy pods too; the grace period covers
    # jobTimeout, so their jobs still finish: slower to scale down, never interrupted.
    assert baseline[:2] == (2, 0), baseline
    assert baseline[2] >= 1, "without protection a busy pod should be chosen"


def test_sigkill_of_a_busy_worker_brings_its_job_back_within_5s(
    cluster: Cluster,
    kube: Kubectl,
    operator_process: Any,
    redis_secret: str,
    redis_client: redis.Redis,
) -> None:
    if cluster.state_dir is None:
        pytest.skip("SIGKILLs the container's process on this machine: test bed only")
    queue = queue_of(kube)
    kube.apply(taskqueue_manifest("kill", queues=[queue], replicas=2))
    rq_queue = Queue(queue, connection=redis_client)
    job = rq_queue.enqueue(SLEEP, 6, job_timeout=60, retry=None)
    wait_for(lambda: job.get_status(refresh=True) == "started", 60, 0.1, "job started")
    worker = Job.fetch(job.id, connection=redis_client).worker_name
    pod = redis_client.hget(f"rq:worker:{worker}", "hostname")
    assert pod, "the worker hash names its pod"
    pid = cluster.container_pid(kube.namespace, pod.decode(), "worker")
    assert pid is not None, "the worker container's process"
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    def recovered() -> bool:
        # Requeued jobs are taken by the other worker within milliseconds: look at who runs
        # it (and the operator's mark), not only at the status.
        current = Job.fetch(job.id, connection=redis_client)
        moved = current.get_status() != "started" or current.worker_name != worker
        return moved and current.meta.get("taskqueue_abandoned") == 1

    wait_for(recovered, 5, 0.05, "job recovered")
    print(f"\njob requeued {time.monotonic() - killed:.2f}s after SIGKILL")
    wait_for(lambda: job.get_status(refresh=True) == "finished", 60, 0.5, "ran to completion")
    assert FailedJobRegistry(queue, connection=redis_client).get_job_ids(cleanup=False) == []


def test_redis_outage_holds_replicas_and_recovers(
    cluster: Cluster, kube: Kubectl, operator_process: Any
) -> None:
    """Issue 8: Redis down 60 s -> replicas held, RedisReachable=False within 2 ticks, no
    crash loop (one Warning event, the same operator process), back within 5 s.

    Workers ride the outage out: an idle one waits for Redis; a busy one exits once (its
    job's outcome cannot be written) and its successor waits, unready, not crash-looping."""
    # AOF: the jobs outlive the restart, so "recovered" means workers back on them (an
    # empty Redis would rightly scale the workers away).
    server = RedisServer(extra_args=["--appendonly", "yes"]).start()
    try:
        make_secret(kube, "own-redis", server.pod_url)
        queue = queue_of(kube)
        manifest = taskqueue_manifest(
            "hold",
            queues=[queue],
            scaling=scaling(scaleDownDelay="2s"),
            redis={"urlFrom": {"secretKeyRef": {"name": "own-redis", "key": "url"}}},
        )
        # The jobs (120 s) must outlive the outage (60 s): jobTimeout bounds every job's
        # timeout, so it is as long as theirs.
        manifest["spec"]["worker"]["jobTimeout"] = "300s"
        kube.apply(manifest)
        replicas = Replicas(cluster, kube.namespace, "hold")
        rq_queue = Queue(queue, connection=server.client())
        for _ in range(10):
            rq_queue.enqueue(SLEEP, 120, job_timeout=300)
        wait_for(lambda: replicas() == 2, 20, 0.2, "scaled to 2")
        # The API client, not kubectl: a subprocess per poll would blur a 1 s tick.
        objects = kubernetes.client.CustomObjectsApi(cluster.api_client())
        core = kubernetes.client.CoreV1Api(cluster.api_client())

        def reachable() -> str | None:
            body = objects.get_namespaced_custom_object(
                "taskqueue.dev", "v1alpha1", kube.namespace, "taskqueues", "hold"
            )
            found = condition(body, "RedisReachable")
            return found["status"] if found else None

        def warnings() -> dict[str, int]:
            listed = core.list_namespaced_event(
                kube.namespace, field_selector="involvedObject.name=hold,type=Warning"
            )
            counts: dict[str, int] = {}
            for event in listed.items:
                counts[event.reason] = counts.get(event.reason, 0) + (event.count or 1)
            return counts

        def restarts() -> int:
            pods = core.list_namespaced_pod(
                kube.namespace, label_selector="taskqueue.dev/taskqueue=hold"
            ).items
            return sum(s.restart_count for p in pods for s in p.status.container_statuses or [])

        wait_for(lambda: reachable() == "True", 20, 0.2, "RedisReachable=True")
        tick = 1.0  # spec.scaling.pollInterval default
        warnings_before, restarts_before = warnings(), restarts()
        operator_pid = operator_process.process.pid
        server.stop()
        stopped = time.monotonic()
        wait_for(lambda: reachable() == "False", 5, 0.05, "RedisReachable=False")
        to_false = time.monotonic() - stopped
        assert to_false <= 2 * tick + 0.5, f"{to_false:.2f}s > 2 ticks (+0.5 s to observe it)"
        samples = []
        while time.monotonic() - stopped < 60:
            samples.append(replicas())
            assert samples[-1] == 2, f"replicas must be held while Redis is down: {samples}"
            time.sleep(1)
        warnings_down, restarts_down = warnings(), restarts()
        server.start()
        back = time.monotonic()
        returned = datetime.now(UTC)
        wait_for(lambda: reachable() == "True", 5, 0.05, "RedisReachable=True")
        recovery = time.monotonic() - back
        assert replicas() == 2
        new_warnings = {k: v - warnings_before.get(k, 0) for k, v in warnings_down.items()}
        new_warnings = {k: v for k, v in new_warnings.items() if v}
        print(
            f"\nRedis down {back - stopped:.0f}s: RedisReachable=False after {to_false:.2f}s "
            f"({to_false / tick:.1f} ticks); replicas sampled {len(samples)}x, "
            f"min {min(samples)} max {max(samples)}; new Warning events {new_warnings}; "
            f"worker container restarts {restarts_down - restarts_before}; "
            f"RedisReachable=True {recovery:.2f}s after Redis returned"
        )
        # At most one restart per worker (the busy ones), not a crash loop.
        assert restarts_down - restarts_before <= 2, restarts_down - restarts_before
        workers = server.client()

        def busy_workers() -> int:
            # Born after Redis returned: the AOF still holds the dead workers' busy hashes.
            count = 0
            for key in workers.smembers(f"rq:workers:{queue}"):
                state, birth = workers.hmget(key, "state", "birth")
                if state == b"busy" and birth and utcparse(birth.decode()) >= returned:
                    count += 1
            return count

        wait_for(lambda: busy_workers() >= 2, 30, 0.1, "2 workers busy again")
        busy_again = time.monotonic() - back
        print(f"2 workers busy again {busy_again:.2f}s after Redis returned")
        assert busy_again < 5, f"full recovery took {busy_again:.2f}s"
        assert replicas() == 2
        # No crash loop: one Warning for the whole outage, the same operator process.
        assert new_warnings == {"RedisUnreachable": 1}, new_warnings
        assert operator_process.process.pid == operator_pid
        assert operator_process.process.poll() is None
    finally:
        server.cleanup()
