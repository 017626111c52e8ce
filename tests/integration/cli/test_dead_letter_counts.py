"""The status, the plugin and the dashboard count the same dead letters (live entries)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from cli_helpers import Cli
from rq import Queue, SimpleWorker
from taskqueue_contract.keys import Keys
from taskqueue_operator.adapters.job_views import dead_letters
from taskqueue_operator.adapters.redis_stats import connect, read_stats
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration


def fail_job() -> None:
    raise RuntimeError("boom")


def test_an_expired_failed_entry_counts_nowhere(
    redis_server: RedisServer, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = Queue("dlq-count", connection=redis_client)
    jobs = [queue.enqueue(fail_job) for _ in range(3)]
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    # One entry whose failure TTL has passed (rq's cleanup has not run yet).
    redis_client.zadd(Keys().failed("dlq-count"), {jobs[0].id: time.time() - 10})

    async def read() -> tuple[int, list[dict], int]:
        client = connect(redis_server.url)
        try:
            stats = await read_stats(client, "rq", ["dlq-count"])
            dead, total = await dead_letters(client, "rq", ["dlq-count"], time.time())
        finally:
            await client.aclose()
        return stats.queues[0].failed, dead, total

    status_count, dashboard, dashboard_total = asyncio.run(read())
    assert status_count == 2 and dashboard_total == 2
    assert sorted(d["id"] for d in dashboard) == sorted(j.id for j in jobs[1:])
    ran = Cli(capsys, redis_server.url, ["dlq-count"])("dlq", "list", "tq", "-o", "json")
    assert ran.code == 0 and ran.json()["total"] == 2
    assert sorted(item["id"] for item in ran.json()["items"]) == sorted(j.id for j in jobs[1:])
