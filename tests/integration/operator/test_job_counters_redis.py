"""Job counters from a real Redis and real `rq worker` processes: jobs with result_ttl=0,
an expiring finished registry, a worker restarted between observations and one that
stops (SIGTERM, warm shutdown) after finishing jobs the previous observation missed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from rq import Queue
from taskqueue_operator.adapters.redis_stats import connect, read_stats
from taskqueue_operator.observation import RedisObservation
from taskqueue_operator.rates import JobCounters
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration
NOOP = "taskqueue_worker.examples.basic.noop"
FAIL = "taskqueue_worker.examples.basic.fail"


def read(url: str, counters: JobCounters) -> RedisObservation:
    """One observation as the loop makes it: asking again for the workers seen last time."""

    async def run() -> RedisObservation:
        client = connect(url)
        try:
            return await read_stats(client, "rq", ["work"], departed=counters.workers)
        finally:
            await client.aclose()

    return asyncio.run(run())


def start_worker(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rq.cli", "worker", "--url", url, "-w", "rq.SimpleWorker", "work"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_counts_every_job_once_across_restarts_expiry_and_a_stop(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("work", connection=redis_client)
    counters = JobCounters()

    def observe() -> RedisObservation:
        observation = read(redis_server.url, counters)
        counters.update(observation)
        return observation

    observe()
    first = start_worker(redis_server.url)
    wait_until(lambda: len(observe().workers) == 1)
    for _ in range(3):
        queue.enqueue(NOOP, result_ttl=0)  # never in the finished registry
    for _ in range(2):
        queue.enqueue(NOOP, result_ttl=1)  # expires from it a second later
    queue.enqueue(FAIL)
    wait_until(lambda: queue.count == 0 and observe().queues[0].running == 0)
    time.sleep(1.5)
    observation = observe()
    assert observation.queues[0].finished == 0  # the registry holds none of the 5
    assert counters.finished == {"work": 5} and counters.failed == {"work": 1}

    # The pod restarts: a new worker (a new hash) runs 2 more jobs before we look again.
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    second = start_worker(redis_server.url)
    try:
        queue.enqueue(NOOP)
        queue.enqueue(NOOP)
        wait_until(lambda: queue.count == 0 and len(queue.finished_job_registry) == 2)
        wait_until(lambda: any(w.successful_job_count == 2 for w in observe().workers))
        assert counters.finished == {"work": 7}
        (restarted,) = [w.name for w in observe().workers if w.successful_job_count == 2]
        # Two more jobs, then a warm stop before the next observation: the worker left
        # the queue's worker set, its hash (kept 60 s) still counts them.
        queue.enqueue(NOOP)
        queue.enqueue(FAIL)
        wait_until(lambda: queue.count == 0 and len(queue.failed_job_registry) == 2)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)
    observation = observe()
    # (The SIGKILLed worker's hash stays listed until it expires: it counts no more.)
    assert restarted not in [w.name for w in observation.workers]
    assert [w.name for w in observation.departed] == [restarted]
    assert counters.finished == {"work": 8} and counters.failed == {"work": 2}
    assert observe().departed == ()  # asked once: forgotten
    assert counters.finished == {"work": 8}
