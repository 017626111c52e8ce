"""Issue 13 part 3: the TaskQueue's jobTimeout (TASKQUEUE_JOB_TIMEOUT) is the default and
the upper bound of every job's timeout, so the pod's grace period (jobTimeout + 30 s)
always covers a running job. A real worker process against a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from rq import Queue
from rq.job import JobStatus
from worker_processes import WorkerProcess, wait_for

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerProcess]
SLEEP = "taskqueue_worker.examples.sleep"
JOB_TIMEOUT = 2


@pytest.mark.parametrize("worker_class", ["fork", "simple"])
@pytest.mark.parametrize(
    "enqueue_kwargs",
    [{}, {"job_timeout": 10_000}, {"job_timeout": -1}],
    ids=["rq-default", "longer", "infinite"],
)
def test_a_job_runs_at_most_job_timeout(
    worker_class: str,
    enqueue_kwargs: dict[str, int],
    start_worker: StartWorker,
    redis_client: redis.Redis,
) -> None:
    queue = Queue("default", connection=redis_client)
    worker = start_worker(
        "default", TASKQUEUE_WORKER_CLASS=worker_class, TASKQUEUE_JOB_TIMEOUT=str(JOB_TIMEOUT)
    )
    worker.wait_ready()
    job = queue.enqueue(SLEEP, 5, **enqueue_kwargs)
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 30, "the job to start")
    started = time.monotonic()
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FAILED, 10, "the job to fail")
    elapsed = time.monotonic() - started
    print(f"\n{worker_class} {enqueue_kwargs or 'no timeout'}: failed after {elapsed:.2f} s")
    assert elapsed < 4.5, elapsed  # JOB_TIMEOUT, not the 5 s sleep nor rq's 180 s
    assert job.id in queue.failed_job_registry.get_job_ids()
    assert "JobTimeoutException" in (job.latest_result().exc_string or "")
    assert f"{JOB_TIMEOUT}" in (job.latest_result().exc_string or "")
    capped = [e for e in worker.logs() if e.get("job_id") == job.id and "caps it" in e["message"]]
    assert len(capped) == (1 if enqueue_kwargs else 0), worker.logs()
    worker.terminate()
    assert worker.wait(30) == 0, worker.output()


def test_a_shorter_timeout_is_kept(start_worker: StartWorker, redis_client: redis.Redis) -> None:
    queue = Queue("default", connection=redis_client)
    worker = start_worker("default", TASKQUEUE_JOB_TIMEOUT="30")
    worker.wait_ready()
    job = queue.enqueue(SLEEP, 5, job_timeout=1)
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 30, "the job to start")
    started = time.monotonic()
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FAILED, 10, "the job to fail")
    assert time.monotonic() - started < 3.5
    assert "JobTimeoutException" in (job.latest_result().exc_string or "")
    assert not [e for e in worker.logs() if "caps it" in e["message"]]
    # A job within the bound finishes.
    done = queue.enqueue(SLEEP, 0.2)
    wait_for(lambda: done.get_status(refresh=True) == JobStatus.FINISHED, 20, "a short job")
    worker.terminate()
    assert worker.wait(30) == 0, worker.output()
