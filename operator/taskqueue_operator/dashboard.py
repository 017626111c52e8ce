"""A small read-only web dashboard served by the operator (no CDN: one page, inline JS).

`/` is the page; `/api/taskqueues` gives, per TaskQueue, the last hour of pending /
running / workers / desired replicas (kept by each loop, one point per tick), the
scaling decisions on the same time axis, the dead-letter list and the workers with
their current job and its `meta['progress']`.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import redis.exceptions
from aiohttp import web
from taskqueue_contract import registries
from taskqueue_contract.job_data import decompress, exception_text, loads
from taskqueue_contract.keys import Keys

from taskqueue_operator.registry import LoopRegistry

DLQ_LIMIT = 50


async def _dead_letters(
    client: Any, prefix: str, queues: list[str], now: float | None = None
) -> list[dict[str, Any]]:
    """The newest live dead letters: the entries the status's DEAD column counts."""
    keys = Keys(prefix)
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        registries.live_entries(pipe, keys.failed(queue), now, newest_first=True, limit=DLQ_LIMIT)
    found: list[dict[str, Any]] = []
    for queue, entries in zip(queues, await pipe.execute(), strict=True):
        for job_id, _score in entries:
            found.append({"queue": queue, "id": job_id.decode()})
    if not found:
        return []
    pipe = client.pipeline(transaction=False)
    for job in found:
        pipe.hmget(keys.job(job["id"]), "description", "ended_at")
        pipe.xrevrange(keys.results(job["id"]), count=1)
    replies = await pipe.execute()
    for index, job in enumerate(found):
        description, ended = replies[2 * index]
        results = replies[2 * index + 1]
        exception = ""
        if results:
            fields = results[0][1]
            text = (exception_text(fields.get(b"exc_string")) or "").strip()
            exception = text.splitlines()[-1] if text else ""
        job.update(
            description=(description or b"").decode(errors="replace"),
            failed_at=(ended or b"").decode(),
            exception=exception,
        )
    return found[:DLQ_LIMIT]


async def _progress(client: Any, prefix: str, job_ids: list[str]) -> dict[str, float | None]:
    if not job_ids:
        return {}
    keys = Keys(prefix)
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(keys.job(job_id), "meta")
    progress: dict[str, float | None] = {}
    for job_id, raw in zip(job_ids, await pipe.execute(), strict=True):
        meta = loads(decompress(raw)).value if raw else None
        value = meta.get("progress") if isinstance(meta, dict) else None
        progress[job_id] = float(value) if isinstance(value, int | float) else None
    return progress


async def snapshot(registry: LoopRegistry) -> list[dict[str, Any]]:
    """Everything the page shows, read from the loops (and Redis for DLQ and progress)."""
    pages = []
    for (namespace, name), loop in sorted(registry.loops.items()):
        taskqueue = loop.parse()
        observation = loop.last_observation
        workers: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        if taskqueue is not None and observation is not None and observation.redis is not None:
            prefix = taskqueue.spec.redis.key_prefix
            try:
                client = await loop.redis_client(taskqueue, observation.time)
                busy = [w for w in observation.redis.live_workers]
                progress = await _progress(client, prefix, [j for w in busy for j in w.job_ids])
                workers = [
                    {
                        "name": w.name,
                        "pod": w.hostname,
                        "state": w.state,
                        "jobs": [{"id": j, "progress": progress.get(j)} for j in w.job_ids],
                    }
                    for w in busy
                ]
                dead = await _dead_letters(client, prefix, list(taskqueue.spec.queues))
            except (TimeoutError, redis.exceptions.RedisError, OSError):
                pass  # the charts still show; the condition says Redis is down
        pages.append(
            {
                "namespace": namespace,
                "name": name,
                "history": list(loop.history),
                "scaleEvents": list(loop.scale_events),
                "workers": workers,
                "deadLetters": dead,
            }
        )
    return pages


def application(registry: LoopRegistry) -> web.Application:
    page = resources.files("taskqueue_operator").joinpath("static/dashboard.html").read_text()

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def api(_: web.Request) -> web.Response:
        return web.json_response(await snapshot(registry))

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/taskqueues", api)
    return app


async def serve(registry: LoopRegistry, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    runner = web.AppRunner(application(registry))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
