"""The operator's read-only web dashboard: one page, no CDN, reached by port-forward.

`/` is the page; `/api/taskqueues` gives, per TaskQueue: its health (the `Ready`
condition) and all conditions; per queue pending / running / scheduled / failed; the
throughput; the last hour of pending / running / workers / desired replicas with the
scaling decisions on the same time axis (adapters/timeline: saved in Redis, so it
survives a restart); the running jobs with their function, redacted arguments, elapsed
time and `meta['progress']`; the dead letters with their traceback and their total.

Read-only on purpose: it has no authentication, so it offers no action (requeue and
delete are the plugin's, under the user's own RBAC) and binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import redis.exceptions
from aiohttp import web

from taskqueue_operator.adapters import job_views
from taskqueue_operator.adapters.executor import effect_error
from taskqueue_operator.api.models import TaskQueue
from taskqueue_operator.controller import TaskQueueLoop
from taskqueue_operator.observation import RedisObservation
from taskqueue_operator.reconcile.status import condition_healthy
from taskqueue_operator.registry import LoopRegistry

CONDITION_FIELDS = ("type", "status", "reason", "message", "lastTransitionTime")


def _health(status: dict[str, Any]) -> dict[str, Any]:
    """The `Ready` condition, as `kubectl get tq` shows it in STATUS."""
    conditions = status.get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return {"ready": None, "reason": "NotObservedYet", "message": "no tick has run yet"}
    return {
        "ready": ready.get("status") == "True",
        "reason": ready.get("reason") or "",
        "message": ready.get("message") or "",
    }


def _queues(redis: RedisObservation | None, now: float) -> list[dict[str, Any]]:
    if redis is None:
        return []
    rows = []
    for queue in redis.queues:
        waiting = queue.pending and queue.oldest_enqueued_at is not None
        rows.append(
            {
                "name": queue.name,
                "pending": queue.pending,
                "running": queue.running,
                "scheduled": queue.scheduled + queue.deferred,
                "failed": queue.failed,
                "finished": queue.finished,
                "oldestWaitSeconds": round(queue.oldest_age(now), 1) if waiting else None,
            }
        )
    return rows


def _spec(taskqueue: TaskQueue | None) -> dict[str, Any]:
    if taskqueue is None:
        return {}
    spec = taskqueue.spec
    scaling = spec.scaling
    summary: dict[str, Any] = {"queues": list(spec.queues)}
    if scaling is None:
        summary["replicas"] = spec.fixed_replicas
    else:
        summary["scaling"] = {
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "targetBacklogPerWorker": scaling.target_backlog_per_worker,
            "targetQueueSeconds": scaling.target_queue_seconds,
        }
    return summary


async def _jobs(loop: TaskQueueLoop, taskqueue: TaskQueue | None) -> dict[str, Any]:
    """Running jobs and dead letters, read from Redis now (the loop observes counts only)."""
    observation = loop.last_observation
    empty: dict[str, Any] = {"jobs": [], "total": None}
    found: dict[str, Any] = {"running": empty, "deadLetters": empty, "jobsError": None}
    if taskqueue is None or observation is None or observation.redis is None:
        return found
    prefix = taskqueue.spec.redis.key_prefix
    now = observation.time
    try:
        client = await loop.redis_client(taskqueue, now)
        running, running_total = await job_views.running_jobs(
            client, prefix, observation.redis.live_workers, now
        )
        letters, dead_total = await job_views.dead_letters(
            client, prefix, list(taskqueue.spec.queues), now
        )
    except (TimeoutError, OSError, redis.exceptions.RedisError) as error:
        found["jobsError"] = effect_error(error).message[:500]
        return found
    found["running"] = {"jobs": running, "total": running_total}
    found["deadLetters"] = {"jobs": letters, "total": dead_total}
    return found


async def taskqueue_view(loop: TaskQueueLoop) -> dict[str, Any]:
    """Everything the page shows of one TaskQueue."""
    taskqueue = loop.parse()
    status = loop.state.status or {}
    observation = loop.last_observation
    redis = observation.redis if observation is not None else None
    points = loop.timeline.points
    last = points[-1] if points else {}
    return {
        "namespace": loop.namespace,
        "name": loop.name,
        "spec": _spec(taskqueue),
        "health": _health(status),
        "conditions": [
            {**{key: c.get(key) for key in CONDITION_FIELDS}, "healthy": condition_healthy(c)}
            for c in status.get("conditions") or []
        ],
        "summary": {
            "pending": redis.pending if redis else status.get("pending"),
            "running": redis.running if redis else status.get("running"),
            "dead": redis.failed if redis else status.get("deadLetters"),
            "workers": len(redis.live_workers) if redis else None,
            "desired": last.get("desired", status.get("desiredReplicas")),
            "ready": last.get("ready", status.get("readyReplicas")),
            "finishedPerMinute": last.get("finishedPerMinute"),
            "failedPerMinute": last.get("failedPerMinute"),
        },
        "observedAt": None if observation is None else observation.time,
        "redisError": None if observation is None else observation.redis_error,
        "queues": _queues(redis, observation.time if observation else 0.0),
        "history": list(points),
        "scaleEvents": list(loop.timeline.scale_events),
        "historySaveError": loop.timeline.save_error,
        **await _jobs(loop, taskqueue),
    }


async def snapshot(registry: LoopRegistry) -> list[dict[str, Any]]:
    """The page's data: every TaskQueue this operator runs (none on a standby)."""
    # Concurrently: each view reads its own Redis (two pipelined round trips).
    loops = [loop for _key, loop in sorted(registry.loops.items(), key=lambda item: item[0])]
    return list(await asyncio.gather(*(taskqueue_view(loop) for loop in loops)))


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


async def serve(registry: LoopRegistry, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    runner = web.AppRunner(application(registry))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
