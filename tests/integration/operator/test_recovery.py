"""Abandoned-job recovery against a real `rq worker` process killed mid-job."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from taskqueue_operator.adapters.recovery import recover, recover_with_prefix
from taskqueue_operator.adapters.redis_stats import connect, read_stats
from taskqueue_operator.observation import RedisObservation
from taskqueue_operator.reconcile.abandoned import find_abandoned
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration
SLEEP = "taskqueue_worker.examples.basic.sleep"


def observe(url: str, queues: list[str], prefix: str = "rq") -> RedisObservation:
    async def run() -> RedisObservation:
        client = connect(url)
        try:
            return await read_stats(client, prefix, queues)
        finally:
            await client.aclose()

    return asyncio.run(run())


def start_worker(url: str, queue: str, pod: str, prefix: str = "rq") -> subprocess.Popen[bytes]:
    env = {**os.environ, "RQ_KEY_PREFIX": prefix}
    # rq records socket.gethostname(); our worker entrypoint records POD_NAME instead.
    code = (
        "import socket, sys; pod = sys.argv[1]; socket.gethostname = lambda: pod; "
        "from rq.cli import main; sys.argv = ['rq'] + sys.argv[2:]; main()"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, pod, "worker", "--url", url, "-w", "rq.SimpleWorker", queue],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def killed_worker_job(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[Job]:
    """A job started by a worker on pod `pod-a`, whose process is then SIGKILLed."""
    job = Queue("work", connection=redis_client).enqueue(SLEEP, 60)
    worker = start_worker(redis_server.url, "work", "pod-a")
    try:
        deadline = time.monotonic() + 20
        while job.get_status(refresh=True) != JobStatus.STARTED:
            assert time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    yield job


def test_vanished_pod_job_is_requeued_once(
    redis_server: RedisServer, redis_client: redis.Redis, killed_worker_job: Job
) -> None:
    observation = observe(redis_server.url, ["work"])
    abandoned = find_abandoned(observation.workers, live_pods=set(), vanished_pods={"pod-a"})
    assert [a.job_id for a in abandoned] == [killed_worker_job.id]
    results = recover(redis_client, abandoned, "requeue")
    assert [r.action for r in results] == ["requeued"]
    assert redis_client.lrange("rq:queue:work", 0, -1) == [killed_worker_job.id.encode()]
    assert StartedJobRegistry("work", connection=redis_client).get_job_ids(cleanup=False) == []
    assert killed_worker_job.get_status(refresh=True) == JobStatus.QUEUED
    # The dead worker is forgotten: a second pass finds nothing to do.
    again = observe(redis_server.url, ["work"])
    assert again.workers == ()
    assert find_abandoned(again.workers, set(), {"pod-a"}) == []
    # Idempotent even when handed the same stale list again.
    assert [r.action for r in recover(redis_client, abandoned, "requeue")] == ["already-handled"]
    assert redis_client.llen("rq:queue:work") == 1


def test_live_pods_jobs_are_never_touched(
    redis_server: RedisServer, redis_client: redis.Redis, killed_worker_job: Job
) -> None:
    observation = observe(redis_server.url, ["work"])
    assert find_abandoned(observation.workers, live_pods={"pod-a"}, vanished_pods=set()) == []
    # A host we never managed is not ours to judge either.
    assert find_abandoned(observation.workers, live_pods=set(), vanished_pods={"pod-b"}) == []


def test_fail_policy_moves_the_job_to_the_failed_registry(
    redis_server: RedisServer, redis_client: redis.Redis, killed_worker_job: Job
) -> None:
    abandoned = find_abandoned(observe(redis_server.url, ["work"]).workers, set(), {"pod-a"})
    assert [r.action for r in recover(redis_client, abandoned, "fail")] == ["failed"]
    failed = FailedJobRegistry("work", connection=redis_client)
    assert failed.get_job_ids(cleanup=False) == [killed_worker_job.id]
    job = Job.fetch(killed_worker_job.id, connection=redis_client)
    assert job.get_status() == JobStatus.FAILED
    assert "pod pod-a is gone" in (job.latest_result().exc_string or "")


def test_job_with_retries_left_is_retried(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    job = Queue("work", connection=redis_client).enqueue(SLEEP, 60, retry=Retry(max=2))
    worker = start_worker(redis_server.url, "work", "pod-r")
    try:
        deadline = time.monotonic() + 20
        while job.get_status(refresh=True) != JobStatus.STARTED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    abandoned = find_abandoned(observe(redis_server.url, ["work"]).workers, set(), {"pod-r"})
    assert [r.action for r in recover(redis_client, abandoned, "fail")] == ["retried"]
    job.refresh()
    assert job.retries_left == 1
    assert redis_client.lrange("rq:queue:work", 0, -1) == [job.id.encode()]


def test_other_key_prefix_recovers_in_a_subprocess(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    env_prefix = "myapp"
    enqueue = (
        "import os, sys, redis; from rq import Queue; "
        "q = Queue('work', connection=redis.Redis.from_url(sys.argv[1])); "
        "print(q.enqueue('taskqueue_worker.examples.basic.sleep', 60).id)"
    )
    job_id = subprocess.run(
        [sys.executable, "-c", enqueue, redis_server.url],
        capture_output=True,
        text=True,
        env={**os.environ, "RQ_KEY_PREFIX": env_prefix},
        check=True,
    ).stdout.strip()
    worker = start_worker(redis_server.url, "work", "pod-p", prefix=env_prefix)
    try:
        deadline = time.monotonic() + 20
        while observe(redis_server.url, ["work"], env_prefix).running == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    workers = observe(redis_server.url, ["work"], env_prefix).workers
    abandoned = find_abandoned(workers, set(), {"pod-p"})
    results = recover_with_prefix(redis_server.url, env_prefix, abandoned, "requeue")
    assert [(r.job_id, r.action) for r in results] == [(job_id, "requeued")]
    assert redis_client.lrange("myapp:queue:work", 0, -1) == [job_id.encode()]
