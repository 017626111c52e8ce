"""The operator's Redis reader against real RQ data structures."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rq import Queue, Retry, SimpleWorker
from taskqueue_operator.adapters.redis_stats import connect, read_stats
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration


def fail_job() -> None:
    raise RuntimeError("boom")


def read(url: str, queues: list[str], prefix: str = "rq"):
    async def run():
        client = connect(url)
        try:
            return await read_stats(client, prefix, queues)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_pending_failed_and_scheduled_per_queue(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    high = Queue("high", connection=redis_client)
    default = Queue("default", connection=redis_client)
    for _ in range(3):
        high.enqueue("time.sleep", 0)
    for _ in range(20):
        default.enqueue("time.sleep", 0)
    for _ in range(2):
        default.enqueue(fail_job)
    default.enqueue("time.sleep", 0, retry=Retry(max=1))
    # Run the failing jobs only: a burst worker on a third queue would not see them,
    # so move them through a dedicated queue instead.
    failing = Queue("failing", connection=redis_client)
    for _ in range(2):
        failing.enqueue(fail_job)
    SimpleWorker([failing], connection=redis_client).work(burst=True)
    failing.enqueue_in(__import__("datetime").timedelta(hours=1), "time.sleep", 0)

    observation = read(redis_server.url, ["high", "default", "failing"])
    by_name = {q.name: q for q in observation.queues}
    assert by_name["high"].pending == 3
    assert by_name["default"].pending == 23
    assert by_name["failing"].pending == 0
    assert by_name["failing"].failed == 2
    assert by_name["failing"].scheduled == 1
    assert observation.pending == 26
    assert observation.failed == 2
    assert observation.workers == ()


def test_key_prefix_is_honoured(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    redis_client.rpush("myapp:queue:jobs", "a", "b")
    assert read(redis_server.url, ["jobs"], prefix="myapp").pending == 2
    assert read(redis_server.url, ["jobs"], prefix="rq").pending == 0


def test_busy_worker_is_seen_with_its_pod_and_job(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A real `rq worker` process: its hash names the host, its job is running."""
    queue = Queue("busy", connection=redis_client)
    job = queue.enqueue("time.sleep", 30)
    rq_bin = Path(sys.executable).with_name("rq")
    process = subprocess.Popen(
        [
            str(rq_bin),
            "worker",
            "--url",
            redis_server.url,
            "--worker-class",
            "rq.SimpleWorker",
            "busy",
        ],
        env={**os.environ, "HOSTNAME": "pod-a"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        observation = read(redis_server.url, ["busy"])
        while time.monotonic() < deadline and observation.running == 0:
            time.sleep(0.1)
            observation = read(redis_server.url, ["busy"])
        assert observation.running == 1
        assert observation.pending == 0
        assert len(observation.workers) == 1
        worker = observation.workers[0]
        assert worker.busy and worker.state == "busy"
        assert worker.queues == ("busy",)
        assert job.id in worker.job_ids
        assert worker.hostname  # rq records socket.gethostname(); our worker records the pod
        assert observation.busy_workers == 1 and observation.idle_workers == 0
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


def test_unreachable_redis_raises_quickly() -> None:
    server = RedisServer()  # never started: nothing listens on its port
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):
        read(server.url, ["default"])
    assert time.monotonic() - started < 5


def test_oldest_pending_job_age(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    queue = Queue("aging", connection=redis_client)
    queue.enqueue("time.sleep", 0)
    queue.enqueue("time.sleep", 0)
    observation = read(redis_server.url, ["aging"])
    age = observation.queues[0].oldest_age(time.time() + 10)
    assert 9.0 < age < 12.0
    assert read(redis_server.url, ["aging", "empty"]).queues[1].oldest_age(time.time()) == 0.0


def test_memory_policy_is_read_from_a_real_redis() -> None:
    """The controller's CONFIG GET parsing, against Redis with seed 004's settings."""
    from taskqueue_operator.adapters.redis_observer import RedisConnections, RedisObserver

    server = RedisServer(extra_args=["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"])
    server.start()
    try:
        observer = RedisObserver(None, "ns", RedisConnections())  # type: ignore[arg-type]

        async def run():
            client = connect(server.url)
            try:
                base = await read_stats(client, "rq", ["q"])
                return await observer.with_memory_policy(client, base, time.time())
            finally:
                await client.aclose()

        observation = asyncio.run(run())
        assert observation.maxmemory_policy == "allkeys-lru"
        assert observation.maxmemory == 256 * 1024 * 1024
    finally:
        server.cleanup()
