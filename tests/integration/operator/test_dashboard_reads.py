"""The dashboard's Redis side against real RQ data: the saved timeline, running jobs,
dead letters (with their tracebacks and total), without importing the jobs' code."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from rq import Queue, SimpleWorker
from taskqueue_contract.keys import Keys
from taskqueue_operator.adapters import job_views
from taskqueue_operator.adapters.redis_stats import connect
from taskqueue_operator.adapters.timeline import SAVE_EVERY, STREAM_LENGTH, Timeline
from taskqueue_operator.observation import (
    DeploymentObservation,
    Observation,
    QueueStats,
    RedisObservation,
    WorkerInfo,
)
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration
KEY = Keys("rq").dashboard_history("team", "backtests")


def fail_job(message: str, api_token: str = "") -> None:
    raise RuntimeError(message)


def run(coroutine_function: Any, url: str) -> Any:
    async def go() -> Any:
        client = connect(url)
        try:
            return await coroutine_function(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def observation_at(t: float, pending: int) -> Observation:
    stats = RedisObservation(time=t, queues=(QueueStats(name="default", pending=pending),))
    return Observation(
        time=t, redis=stats, redis_error=None, deployment=DeploymentObservation(ready_replicas=1)
    )


def test_the_timeline_is_saved_capped_and_read_back_by_a_new_loop(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    now = time.time()
    first = Timeline()

    async def record_and_save(client: Any) -> None:
        for second in range(0, 61):  # a minute of ticks: a save every 5 s
            t = now - 60 + second
            scales = [(0, 3, "backlog 12 > 0 x 5")] if second == 10 else []
            first.record(observation_at(t, pending=second), 3, (second, 0), scales)
            assert await first.sync(client, KEY, t) is None

    run(record_and_save, redis_server.url)
    saved = redis_client.xlen(KEY)
    assert 61 // SAVE_EVERY <= saved <= 61 // SAVE_EVERY + 2, saved
    assert 0 < redis_client.ttl(KEY) <= 7200

    second = Timeline()  # the next leader, or the restarted operator
    second.record(observation_at(now + 1, pending=99), 3, (0, 0), [])
    assert run(lambda client: second.sync(client, KEY, now + 1), redis_server.url) is None
    points = list(second.points)
    assert points[-1]["pending"] == 99, "its own point stays the newest"
    assert len(points) >= 12 and points[0]["t"] <= now - 55
    assert [p["t"] for p in points] == sorted(p["t"] for p in points)
    assert list(second.scale_events) == [
        {"t": round(now - 50, 3), "from": 0, "to": 3, "reason": "backlog 12 > 0 x 5"}
    ]
    # Throughput from the job totals: 1 job a second is 60 a minute.
    assert first.points[-1]["finishedPerMinute"] == 60.0

    # Capped: a long run keeps at most about STREAM_LENGTH entries.
    async def flood(client: Any) -> None:
        timeline = Timeline()
        for index in range(STREAM_LENGTH + 500):
            t = now + 10 + index * SAVE_EVERY
            timeline.record(observation_at(t, pending=1), 1, (0, 0), [])
            await timeline.sync(client, KEY, t)

    run(flood, redis_server.url)
    assert redis_client.xlen(KEY) <= STREAM_LENGTH + 200


def test_a_failing_save_is_reported_once_per_streak(redis_server: RedisServer) -> None:
    timeline = Timeline()
    client = redis.Redis.from_url(redis_server.url)
    client.set(KEY, "not a stream")  # every XADD now fails with WRONGTYPE
    now = time.time()

    async def ticks(aclient: Any) -> list[str | None]:
        errors = []
        for second in range(12):
            timeline.record(observation_at(now + second, 1), 1, (0, 0), [])
            errors.append(await timeline.sync(aclient, KEY, now + second))
        return errors

    errors = run(ticks, redis_server.url)
    assert errors[0] and "WRONGTYPE" in errors[0] and not any(errors[1:]), errors
    assert timeline.save_error and len(timeline.points) == 12, "the charts go on from memory"
    client.delete(KEY)
    client.close()


def test_running_jobs_and_dead_letters_with_redacted_arguments(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("default", connection=redis_client)
    secret = "redis://:hunter22@cache:6379/0"
    for index in range(3):
        queue.enqueue(fail_job, f"cannot reach {secret} ({index})", api_token="tok-123")
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    now = time.time()

    letters, total = run(
        lambda client: job_views.dead_letters(client, "rq", ["default", "empty"], now),
        redis_server.url,
    )
    assert total == 3 and len(letters) == 3
    newest = letters[0]
    assert newest["function"].endswith("test_dashboard_reads.fail_job")
    assert "api_token=***" in newest["call"] and "redis://:***@cache:6379/0" in newest["call"]
    assert newest["exception"].startswith("RuntimeError: cannot reach redis://:***@cache")
    assert "Traceback (most recent call last)" in newest["traceback"]
    assert "hunter22" not in repr(letters) and "tok-123" not in repr(letters)

    # A running job: what a worker hash and the job hash say, read the same way.
    running_queue = Queue("slow", connection=redis_client)
    job = running_queue.enqueue("myapp.tasks.crunch", "AAPL", window=30, password="pw1")
    redis_client.hset(f"rq:job:{job.id}", mapping={"started_at": "2026-01-01T00:00:00.000000Z"})
    redis_client.hset(f"rq:job:{job.id}", "meta", job.serializer.dumps({"progress": 0.25}))

    worker = WorkerInfo(name="w1", state="busy", hostname="pod-1", executions=(f"{job.id}:e1",))
    jobs, count = run(
        lambda client: job_views.running_jobs(client, "rq", (worker,), now), redis_server.url
    )
    assert count == 1
    (shown,) = jobs
    assert shown["function"] == "myapp.tasks.crunch" and shown["queue"] == "slow"
    assert shown["call"] == "myapp.tasks.crunch('AAPL', window=30, password=***)"
    assert shown["progress"] == 0.25 and shown["elapsedSeconds"] > 0 and shown["pod"] == "pod-1"
