"""Read a TaskQueue's queue statistics from Redis in two pipelined round trips.

Only raw Redis commands: rq's registry helpers (`count`, `get_job_ids`) run cleanup, which
runs job callbacks that need the application's code, and the operator has none of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

import redis.asyncio as aioredis
import redis.exceptions
from taskqueue_contract import registries
from taskqueue_contract.keys import Keys

from taskqueue_operator.observation import QueueStats, RedisObservation, WorkerInfo

# Per queue in the first round trip, in this order.
_QUEUE_COMMANDS = 9
IN_TRANSIT_READ = 100
_WORKER_FIELDS = (
    "state",
    "hostname",
    "queues",
    "death",
    "successful_job_count",
    "failed_job_count",
    "total_working_time",
    "birth",
)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_stats(
    client: aioredis.Redis,
    key_prefix: str,
    queues: Sequence[str],
    now: float | None = None,
    departed: Iterable[str] = (),
) -> RedisObservation:
    """Counts per queue and the workers listening on them. Raises redis errors as they come.

    `departed`: worker names seen before; those no longer in the queues' worker sets are
    read too (a stopped worker's hash outlives it by 60 s) into `departed`."""
    now = time.time() if now is None else now
    keys = Keys(key_prefix)
    first = client.pipeline(transaction=False)
    for queue in queues:
        first.llen(keys.queue(queue))
        # Started/failed/finished entries expire by score: count the live ones only.
        registries.count_live(first, keys.started(queue), now)
        first.zcard(keys.scheduled(queue))
        first.zcard(keys.deferred(queue))
        registries.count_live(first, keys.failed(queue), now)
        registries.count_live(first, keys.finished(queue), now)
        first.smembers(keys.queue_workers(queue))
        first.lindex(keys.queue(queue), 0)  # the oldest pending job
        # RQ moves a dequeued job here (single-queue workers) until the job starts.
        first.lrange(keys.intermediate(queue), 0, IN_TRANSIT_READ - 1)
    first.exists(keys.suspended)  # `rq suspend`: workers take no new jobs
    replies = await first.execute()
    suspended = bool(replies.pop())

    stats: list[QueueStats] = []
    oldest_ids: list[str | None] = []
    worker_names: set[str] = set()
    for index, queue in enumerate(queues):
        reply = replies[index * _QUEUE_COMMANDS : (index + 1) * _QUEUE_COMMANDS]
        pending, running, scheduled, deferred, failed, finished, members, oldest, transit = reply
        stats.append(
            QueueStats(
                queue,
                int(pending),
                int(running),
                int(scheduled),
                int(deferred),
                int(failed),
                int(finished),
                in_transit=tuple(t for t in (_text(job) for job in transit) if t),
            )
        )
        oldest_ids.append(_text(oldest))
        # The per-queue sets hold whole worker keys.
        worker_names.update(keys.worker_name(name) for name in (_text(m) for m in members) if name)

    listed = sorted(worker_names)
    names = listed + sorted(set(departed) - worker_names)
    workers: list[WorkerInfo] = []
    waiting = [(i, job_id) for i, job_id in enumerate(oldest_ids) if job_id]
    if names or waiting:
        second = client.pipeline(transaction=False)
        for _, job_id in waiting:
            second.hget(keys.job(job_id), "enqueued_at")
        for name in names:
            second.hmget(keys.worker(name), *_WORKER_FIELDS)
            second.smembers(keys.worker_executions(name))
        worker_replies = await second.execute()
        for (position, _), enqueued_at in zip(waiting, worker_replies, strict=False):
            stats[position] = replace(stats[position], oldest_enqueued_at=_text(enqueued_at))
        worker_replies = worker_replies[len(waiting) :]
        for position, name in enumerate(names):
            state, hostname, worker_queues, death, successes, failures, working, birth = (
                _text(v) for v in worker_replies[2 * position]
            )
            executions = worker_replies[2 * position + 1]
            if state is None and hostname is None:
                continue  # the hash expired: the worker is gone, its set entry is stale
            workers.append(
                WorkerInfo(
                    name=name,
                    state=state or "?",
                    hostname=hostname,
                    queues=tuple(q for q in (worker_queues or "").split(",") if q),
                    executions=tuple(sorted(_text(e) or "" for e in executions)),
                    dead=death is not None,
                    successful_job_count=int(successes or 0),
                    failed_job_count=int(failures or 0),
                    total_working_time=float(working or 0.0),
                    birth=birth or "",
                )
            )
    return RedisObservation(
        time=now,
        queues=tuple(stats),
        workers=tuple(w for w in workers if w.name in worker_names),
        suspended=suspended,
        departed=tuple(w for w in workers if w.name not in worker_names),
    )


async def read_memory_policy(client: aioredis.Redis) -> tuple[str | None, int | None]:
    """(maxmemory-policy, maxmemory), or (None, None) where CONFIG is disabled."""
    try:
        config = await client.config_get("maxmemory*")
    except redis.exceptions.RedisError:
        return None, None
    # Keys are bytes unless the client decodes responses (redis-py types them as str).
    values = {_text(key): value for key, value in config.items()}
    return _text(values.get("maxmemory-policy")), int(values.get("maxmemory") or 0)


def connect(url: str, max_connections: int = 32) -> aioredis.Redis:
    """A client that fails fast: an unreachable Redis must show up within a tick or two.

    Many TaskQueues share one client per URL; a blocking pool makes them take turns on a
    bounded number of connections instead of failing with "too many connections".
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=2.0,
        socket_connect_timeout=2.0,
        socket_timeout=2.0,
        health_check_interval=10,
    )
    return aioredis.Redis(connection_pool=pool)
