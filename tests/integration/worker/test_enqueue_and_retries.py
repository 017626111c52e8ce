"""taskqueue-enqueue against a real Redis, and retries brought back by the worker's scheduler."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from testbed.ports import free_port
from worker_processes import ENQUEUE, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

Enqueue = Callable[..., subprocess.CompletedProcess[str]]
NOOP = ("--function", "taskqueue_worker.examples.noop", "--queue", "default")


def test_enqueue_prints_the_job_id_and_sets_every_option(
    enqueue: Enqueue, redis_client: redis.Redis
) -> None:
    done = enqueue(
        "--function", "taskqueue_worker.examples.ingest_candles",
        "--queue", "data_ingestion",
        "--args", '["KRW-BTC"]',
        "--kwargs", '{"timeframe": "1H", "days": 1}',
        "--job-timeout", "360",
        "--retry-max", "3",
        "--retry-intervals", "10,60",
        "--result-ttl", "86400",
        "--failure-ttl", "604800",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert Queue("data_ingestion", connection=redis_client).get_job_ids() == [job_id]
    job = Job.fetch(job_id, connection=redis_client)
    assert job.func_name == "taskqueue_worker.examples.ingest_candles"
    assert job.args == ("KRW-BTC",) or list(job.args) == ["KRW-BTC"]
    assert job.kwargs == {"timeframe": "1H", "days": 1}
    assert job.timeout == 360
    assert (job.retries_left, job.retry_intervals) == (3, [10, 60])
    assert (job.result_ttl, job.failure_ttl) == (86400, 604800)


def test_the_same_slot_twice_enqueues_one_job(enqueue: Enqueue, redis_client: redis.Redis) -> None:
    slot = {"TASKQUEUE_IDEMPOTENCY_KEY": "quant/daily-ingest-29345120"}
    first = enqueue(*NOOP, **slot)
    second = enqueue(*NOOP, **slot)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    job_id = first.stdout.strip()
    assert second.stdout.startswith("already enqueued") and job_id in second.stdout
    assert Queue("default", connection=redis_client).get_job_ids() == [job_id]
    # Even once the job itself is gone (result TTL), the slot stays done.
    Job.fetch(job_id, connection=redis_client).delete()
    assert enqueue(*NOOP, **slot).stdout.startswith("already enqueued")
    assert Queue("default", connection=redis_client).count == 0
    # The next slot is a new job.
    other = enqueue(*NOOP, TASKQUEUE_IDEMPOTENCY_KEY="quant/daily-ingest-29345121")
    assert other.returncode == 0 and other.stdout.strip() != job_id


def test_concurrent_runs_of_one_slot_enqueue_once(
    base_env: dict[str, str], redis_client: redis.Redis
) -> None:
    env = {**base_env, "TASKQUEUE_IDEMPOTENCY_KEY": "quant/race-1"}
    processes = [
        subprocess.Popen(
            [ENQUEUE, *NOOP], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, outputs
    created = [out for out, _ in outputs if not out.startswith("already enqueued")]
    assert len(created) == 1
    assert Queue("default", connection=redis_client).get_job_ids() == [created[0].strip()]


@pytest.mark.parametrize(
    ("args", "env", "code"),
    [
        ((*NOOP, "--args", "[1,"), {}, 2),
        ((*NOOP, "--kwargs", "[]"), {}, 2),
        ((*NOOP, "--retry-intervals", "1,2"), {}, 2),
        ((*NOOP, "--job-timeout", "forever"), {}, 2),
        (("--function", "taskqueue_worker.examples.noop"), {}, 2),
        (NOOP, {"REDIS_URL": ""}, 2),
        (NOOP, {"RQ_KEY_PREFIX": "no spaces"}, 2),
        (("--function", "taskqueue_worker.nothing.here", "--queue", "default"), {}, 3),
        (("--function", "taskqueue_worker.examples.nothing", "--queue", "default"), {}, 3),
        (("--function", "taskqueue_worker.config.DEFAULT_HEALTH_INTERVAL", "--queue", "q"), {}, 3),
    ],
)
def test_bad_inputs_exit_non_zero_with_one_line_and_enqueue_nothing(
    args: tuple[str, ...],
    env: dict[str, str],
    code: int,
    enqueue: Enqueue,
    redis_client: redis.Redis,
) -> None:
    done = enqueue(*args, TASKQUEUE_IDEMPOTENCY_KEY="ns/slot", **env)
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("taskqueue-enqueue: ")
    assert redis_client.dbsize() == 0  # not even an idempotency marker


def test_unreachable_redis_exits_4(enqueue: Enqueue) -> None:
    done = enqueue(*NOOP, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 4
    assert (
        done.stderr.startswith("taskqueue-enqueue: redis unreachable")
        and done.stderr.count("\n") == 1
    )


def test_failing_jobs_come_back_with_their_retries_then_end_in_the_failed_registry(
    enqueue: Enqueue, start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    done = enqueue(
        "--function", "taskqueue_worker.examples.flaky",
        "--queue", "default",
        "--kwargs", '{"key": "always", "failures": 100}',
        "--retry-max", "3",
        "--retry-intervals", "1,2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doomed = Job.fetch(done.stdout.strip(), connection=redis_client)
    recovers = enqueue(
        "--function", "taskqueue_worker.examples.flaky",
        "--queue", "default",
        "--kwargs", '{"key": "twice", "failures": 2}',
        "--retry-max", "3",
        "--retry-intervals", "1,2",
    )  # fmt: skip
    recovering = Job.fetch(recovers.stdout.strip(), connection=redis_client)
    worker = start_worker("default")
    worker.wait_ready()

    failed = FailedJobRegistry("default", connection=redis_client)
    wait_for(lambda: doomed.id in failed.get_job_ids(), 60, "the job to exhaust its retries")
    # 1 try + 3 retries; without the scheduler the delayed retries would never run.
    assert int(redis_client.get("rq:taskqueue:flaky:always")) == 4
    doomed.refresh()
    assert doomed.get_status() == JobStatus.FAILED
    assert doomed.retries_left == 0
    wait_for(lambda: recovering.get_status(refresh=True) == JobStatus.FINISHED, 60, "the recovery")
    assert recovering.return_value() == 3
    assert recovering.id not in failed.get_job_ids()
    worker.terminate()
    assert worker.wait(30) == 0, worker.output()
