"""A worker whose Redis stops answering (SIGSTOPped: connections stay open, nothing is
read) still stops promptly: an idle one within seconds of SIGTERM, a busy one soon after
its job ends, the job never cut short. Before the fix it hung in rq's scheduler stop and
then in its unregistration, each waiting for rq's 415 s socket timeout, until the
kubelet's SIGKILL at the end of the grace period (jobTimeout + 30 s)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from testbed.redis_server import RedisServer
from worker_processes import WorkerProcess, wait_for

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerProcess]
QUEUE = "bounded"
EXIT_WAIT = 120  # seconds: the unfixed worker would still be waiting long after this
IDLE_EXIT_BOUND = 10  # seconds; the fix takes about 5 (3 scheduler + 2 unregistering)
AFTER_JOB_BOUND = 10  # seconds after the job's end; the fix takes 2 to 4
JOB_SECONDS = 4.0
# time.sleep, not taskqueue_worker.examples.sleep: that one saves its progress in Redis
# every second, and a job's own Redis calls keep rq's timeout (we never cut a job short),
# so with Redis stopped it would hang inside the job itself.
JOB = "time.sleep"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """This test's own server: it gets stopped (SIGSTOP) and must not take others along."""
    server = RedisServer(data_dir=tmp_path / "redis").start()
    try:
        yield server
    finally:
        if server.process is not None:  # never leave it stopped: it could not be stopped
            os.kill(server.process.pid, signal.SIGCONT)
        server.cleanup()


@contextlib.contextmanager
def silent(server: RedisServer) -> Iterator[None]:
    """Redis keeps its sockets open but answers nothing until the block ends."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def messages(worker: WorkerProcess) -> list[str]:
    return [entry["message"] for entry in worker.logs()]


def logged(worker: WorkerProcess, *needles: str) -> list[dict[str, Any]]:
    return [e for e in worker.logs() if all(n in e["message"] for n in needles)]


def wait_exit(worker: WorkerProcess) -> tuple[int, float]:
    """SIGTERM, then (exit code, seconds until the process ended)."""
    started = time.monotonic()
    worker.terminate()
    try:
        code = worker.wait(timeout=EXIT_WAIT)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"worker still running {EXIT_WAIT}s after SIGTERM:\n{worker.output()}"
        ) from None
    return code, time.monotonic() - started


def scheduler_pid(worker: WorkerProcess, client: redis.Redis) -> int:
    """Once rq's scheduler process runs its loop (its hash exists), its PID."""
    wait_for(lambda: client.keys("rq:scheduler:*"), 30, "rq's scheduler to register")
    (entry,) = logged(worker, f"Scheduler for {QUEUE} started with PID")
    return int(entry["message"].rsplit(" ", 1)[1])


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def test_an_idle_worker_exits_within_seconds_when_redis_stops_answering(
    own_redis: RedisServer, start_worker: StartWorker
) -> None:
    worker = start_worker(QUEUE, REDIS_URL=own_redis.url)
    worker.wait_ready()
    scheduler = scheduler_pid(worker, own_redis.client())

    with silent(own_redis):
        code, seconds = wait_exit(worker)
    print(f"idle worker exited {seconds:.2f}s after SIGTERM, Redis not answering")

    assert code == 0, worker.output()  # still a warm shutdown: nothing was running
    assert seconds < IDLE_EXIT_BOUND, worker.output()
    assert logged(worker, "scheduler", "did not stop within", "killing it"), worker.output()
    assert logged(worker, "Redis did not answer within", "exiting without unregistering")
    assert "worker stopped" in messages(worker)
    assert gone(scheduler)


@pytest.mark.parametrize("worker_class", ["fork", "simple"])
def test_a_busy_worker_finishes_its_job_then_exits_soon_when_redis_stops_answering(
    worker_class: str, own_redis: RedisServer, start_worker: StartWorker
) -> None:
    client = own_redis.client()
    worker = start_worker(QUEUE, REDIS_URL=own_redis.url, TASKQUEUE_WORKER_CLASS=worker_class)
    worker.wait_ready()
    job = Queue(QUEUE, connection=client).enqueue(JOB, JOB_SECONDS, job_timeout=60)
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 30, "the job to start")
    started_at = Job.fetch(job.id, connection=client).started_at
    assert started_at is not None

    try:
        signalled = time.monotonic()
        worker.terminate()
        wait_for(lambda: logged(worker, "warm shut down requested"), 10, "the stop request")
        with silent(own_redis):
            code = worker.wait(timeout=EXIT_WAIT)
            seconds = time.monotonic() - signalled
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker still running:\n{worker.output()}") from None

    (ended,) = logged(worker, f"job {job.id} ended while the worker is stopping")
    ran = datetime.fromisoformat(ended["time"]) - started_at.replace(tzinfo=UTC)
    print(
        f"{worker_class} worker: job ran {ran.total_seconds():.2f}s, worker exited "
        f"{seconds:.2f}s after SIGTERM, Redis not answering after the stop request"
    )
    assert code == 0, worker.output()
    # The job ran its whole course (time.sleep never returns early), nobody killed it...
    assert ran.total_seconds() >= JOB_SECONDS - 0.01, worker.output()
    assert not logged(worker, "killed horse") and not logged(worker, "cold shut down")
    # ...and the worker left soon after; what could not be recorded says so.
    assert seconds < JOB_SECONDS + AFTER_JOB_BOUND, worker.output()
    assert logged(worker, "Redis did not answer within", f"outcome of job {job.id}")
    assert "worker stopped" in messages(worker)


def test_with_redis_answering_an_idle_worker_still_unregisters_and_releases_its_locks(
    own_redis: RedisServer, start_worker: StartWorker
) -> None:
    client = own_redis.client()
    worker = start_worker(QUEUE, REDIS_URL=own_redis.url)
    worker.wait_ready()
    scheduler = scheduler_pid(worker, client)
    assert client.scard("rq:workers") == 1
    assert client.exists(f"rq:scheduler-lock:{QUEUE}")

    code, seconds = wait_exit(worker)
    print(f"idle worker exited {seconds:.2f}s after SIGTERM, Redis answering")

    assert code == 0, worker.output()
    assert seconds < IDLE_EXIT_BOUND, worker.output()
    assert client.smembers("rq:workers") == set()  # unregistered
    assert not client.exists(f"rq:scheduler-lock:{QUEUE}")  # the scheduler let go itself
    assert not client.keys("rq:scheduler:*")
    assert not logged(worker, "did not stop within") and not logged(worker, "did not answer")
    assert gone(scheduler)
