"""Jobs a worker took off its queue (into RQ's intermediate list) and died before
starting: the operator sees them and puts them back, on a real Redis with real RQ."""

from __future__ import annotations

import asyncio

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from taskqueue_operator.adapters.recovery import return_in_transit
from taskqueue_operator.adapters.redis_stats import connect, read_stats
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration
NOOP = "taskqueue_worker.examples.noop"


def take_like_a_dying_worker(client: redis.Redis, queue: Queue) -> str:
    """What rq's single-queue dequeue does (LMOVE into the intermediate list), and then
    nothing: the worker died before the job started."""
    job_id = client.lmove(queue.key, queue.intermediate_queue_key)
    assert job_id is not None
    return job_id.decode()


def observe(url: str, queues: list[str]) -> dict[str, tuple[str, ...]]:
    async def run() -> dict[str, tuple[str, ...]]:
        client = connect(url)
        try:
            observation = await read_stats(client, "rq", queues)
        finally:
            await client.aclose()
        return {q.name: q.in_transit for q in observation.queues}

    return asyncio.run(run())


def test_a_job_stuck_in_transit_is_seen_put_back_first_and_run_once(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("transit", connection=redis_client)
    stuck = queue.enqueue(NOOP)
    later = queue.enqueue(NOOP)
    assert take_like_a_dying_worker(redis_client, queue) == stuck.id
    assert observe(redis_server.url, ["transit"]) == {"transit": (stuck.id,)}
    assert queue.get_job_ids() == [later.id]

    returned = return_in_transit(redis_server.url, "rq", [("transit", stuck.id)])

    assert returned == [stuck.id]
    assert queue.get_job_ids() == [stuck.id, later.id], "back at the head, where it was"
    assert redis_client.llen(queue.intermediate_queue_key) == 0
    assert return_in_transit(redis_server.url, "rq", [("transit", stuck.id)]) == []  # idempotent
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    for job in (stuck, later):
        assert Job.fetch(job.id, connection=redis_client).get_status() == "finished"
    assert len(queue.finished_job_registry) == 2  # each ran once


def test_an_id_whose_job_is_gone_is_only_dropped(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("transit", connection=redis_client)
    redis_client.rpush(queue.intermediate_queue_key, "deleted-job")
    assert return_in_transit(redis_server.url, "rq", [("transit", "deleted-job")]) == []
    assert redis_client.llen(queue.intermediate_queue_key) == 0
    assert queue.get_job_ids() == []


def test_another_key_prefix(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    # Raw keys as rq writes them under RQ_KEY_PREFIX=myapp (rq reads it once, at import).
    redis_client.hset("myapp:job:j1", mapping={"status": "queued", "origin": "q"})
    redis_client.rpush("myapp:queue:q:intermediate", "j1")
    assert return_in_transit(redis_server.url, "myapp", [("q", "j1")]) == ["j1"]
    assert redis_client.lrange("myapp:queue:q", 0, -1) == [b"j1"]
