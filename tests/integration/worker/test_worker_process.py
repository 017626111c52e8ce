"""taskqueue-worker as a real process against a real Redis: drain, warm shutdown,
worker identity, probes, key prefix."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from worker_processes import WORKER, WorkerProcess, wait_for, worker_hashes

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerProcess]


@pytest.mark.parametrize("worker_class", ["fork", "simple"])
def test_a_worker_drains_a_queue_and_stops_on_sigterm(
    worker_class: str, start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    queue = Queue("default", connection=redis_client)
    jobs = [queue.enqueue("taskqueue_worker.examples.noop") for _ in range(15)]
    jobs += [queue.enqueue("taskqueue_worker.examples.sleep", 0.05) for _ in range(5)]
    worker = start_worker("default", args=("--worker-class", worker_class), pod="drain-pod")
    worker.wait_ready()

    registry = FinishedJobRegistry(queue=queue)
    wait_for(lambda: len(registry.get_job_ids()) == 20, 60, "20 finished jobs")
    assert queue.count == 0
    assert all(job.get_status(refresh=True) == JobStatus.FINISHED for job in jobs)

    workers = worker_hashes(redis_client)
    assert len(workers) == 1
    ((name, fields),) = workers.items()
    assert fields["hostname"] == "drain-pod"  # the operator maps workers to pods by this
    assert name != "drain-pod" and name.startswith("drain-pod-")

    worker.terminate()
    assert worker.wait(30) == 0, worker.output()
    assert not worker.health_file.exists()
    assert worker_hashes(redis_client) == {}  # unregistered on the way out
    logs = worker.logs()  # every line is JSON
    assert {entry["worker"] for entry in logs} == {name}
    assert any(entry["message"] == "worker stopped" for entry in logs)
    assert any(entry.get("worker_class") == worker_class for entry in logs)


@pytest.mark.parametrize("worker_class", ["fork", "simple"])
def test_sigterm_while_busy_finishes_the_job_then_exits_0(
    worker_class: str, start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    queue = Queue("default", connection=redis_client)
    worker = start_worker("default", TASKQUEUE_WORKER_CLASS=worker_class)
    worker.wait_ready()
    job = queue.enqueue("taskqueue_worker.examples.sleep", 2.5, job_timeout=60)
    queued_after = queue.enqueue("taskqueue_worker.examples.noop")
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 30, "the job to start")

    worker.terminate()
    assert worker.wait(60) == 0, worker.output()

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == 2.5
    assert redis_client.zcard("rq:wip:default") == 0
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    # Warm shutdown means: no new job after the signal.
    assert queued_after.get_status(refresh=True) == JobStatus.QUEUED
    assert queue.get_job_ids() == [queued_after.id]
    assert worker_hashes(redis_client) == {}
    assert not redis_client.keys("rq:scheduler-lock:*")  # the scheduler let go too


def test_sigterm_while_idle_exits_0_quickly(start_worker: StartWorker) -> None:
    worker = start_worker("default")
    worker.wait_ready()
    worker.terminate()
    assert worker.wait(30) == 0, worker.output()


def test_a_restarted_pod_does_not_crash_loop_on_its_old_worker_hash(
    start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    first = start_worker("default", pod="same-pod")
    first.wait_ready()
    first.process.send_signal(signal.SIGKILL)  # no chance to unregister
    first.wait(10)
    second = start_worker("default", pod="same-pod")
    second.wait_ready()
    hostnames = [fields["hostname"] for fields in worker_hashes(redis_client).values()]
    assert hostnames == ["same-pod", "same-pod"]  # the stale hash and the new worker
    second.terminate()
    assert second.wait(30) == 0, second.output()


def test_probe_follows_the_worker_lifecycle(start_worker: StartWorker) -> None:
    worker = start_worker("default")

    def probe(*flags: str) -> int:
        return subprocess.run(
            [WORKER, "--probe", *flags], env=worker.env, capture_output=True, timeout=30
        ).returncode

    worker.wait_ready()
    assert probe() == 0
    assert probe("--ready", "--max-age", "5") == 0
    worker.terminate()
    assert worker.wait(30) == 0
    assert probe() == 1


def test_burst_mode_and_max_jobs_exit_0(
    start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    queue = Queue("default", connection=redis_client)
    for _ in range(3):
        queue.enqueue("taskqueue_worker.examples.noop")
    burst = start_worker("default", args=("--burst",))
    assert burst.wait(60) == 0, burst.output()
    assert queue.count == 0
    for _ in range(3):
        queue.enqueue("taskqueue_worker.examples.noop")
    limited = start_worker("default", args=("--max-jobs", "2"))
    assert limited.wait(60) == 0, limited.output()
    assert queue.count == 1


def test_queues_are_served_in_priority_order(
    start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    low = Queue("low", connection=redis_client)
    high = Queue("high", connection=redis_client)
    low_jobs = [low.enqueue("taskqueue_worker.examples.noop") for _ in range(3)]
    high_jobs = [high.enqueue("taskqueue_worker.examples.noop") for _ in range(3)]
    worker = start_worker("high", "low", args=("--burst", "--worker-class", "simple"))
    assert worker.wait(60) == 0, worker.output()
    ended = {
        job.id: Job.fetch(job.id, connection=redis_client).ended_at for job in low_jobs + high_jobs
    }
    assert max(ended[j.id] for j in high_jobs) <= min(ended[j.id] for j in low_jobs)


def test_key_prefix_is_honoured_by_worker_and_enqueue(
    start_worker: StartWorker,
    enqueue: Callable[..., subprocess.CompletedProcess[str]],
    redis_client: redis.Redis,
) -> None:
    prefix = {"RQ_KEY_PREFIX": "tq1"}
    ok = enqueue("--function", "taskqueue_worker.examples.noop", "--queue", "default", **prefix)
    bad = enqueue("--function", "taskqueue_worker.examples.fail", "--queue", "default", **prefix)
    assert ok.returncode == 0 and bad.returncode == 0, ok.stderr + bad.stderr
    assert redis_client.llen("tq1:queue:default") == 2
    worker = start_worker("default", pod="prefixed", **prefix)
    worker.wait_ready()
    wait_for(lambda: redis_client.zcard("tq1:failed:default") == 1, 30, "the failed job")
    wait_for(lambda: redis_client.zcard("tq1:finished:default") == 1, 30, "the finished job")
    assert worker_hashes(redis_client, "tq1") and all(
        fields["hostname"] == "prefixed" for fields in worker_hashes(redis_client, "tq1").values()
    )
    keys = {k.decode() for k in redis_client.keys("*")}
    assert keys and all(k.startswith("tq1:") for k in keys), sorted(keys)
    worker.terminate()
    assert worker.wait(30) == 0, worker.output()


def test_sigterm_during_start_up_exits_0_without_taking_a_job(
    start_worker: StartWorker, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # A preloaded module that announces itself and then imports slowly opens a
    # start-up window in which to deliver the signal deterministically.
    (tmp_path / "tq_slow_import.py").write_text(
        "import os, pathlib, time\n"
        "pathlib.Path(os.environ['SLOW_IMPORT_MARKER']).write_text('x')\n"
        "time.sleep(1.5)\n"
    )
    marker = tmp_path / "importing"
    job = Queue("default", connection=redis_client).enqueue("taskqueue_worker.examples.noop")
    worker = start_worker(
        "default",
        TASKQUEUE_PRELOAD="tq_slow_import",
        PYTHONPATH=str(tmp_path),
        SLOW_IMPORT_MARKER=str(marker),
    )
    wait_for(marker.exists, 30, "the slow preload to begin")
    worker.terminate()
    assert worker.wait(30) == 0, worker.output()
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert worker_hashes(redis_client) == {}


def test_a_broken_preload_module_exits_3(start_worker: StartWorker) -> None:
    worker = start_worker("default", TASKQUEUE_PRELOAD="tq_no_such_module_anywhere")
    assert worker.wait(30) == 3
    assert any("TASKQUEUE_PRELOAD" in entry["message"] for entry in worker.logs())
