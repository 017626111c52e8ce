"""`status` (queues, workers, the TaskQueue's status and scaling history) and `progress`.

Queue and worker counts come from the operator's own reader (adapters/redis_stats.py),
so the plugin and the TaskQueue's status never disagree on what "running" means.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from taskqueue_contract.keys import Keys
from taskqueue_operator.adapters.redis_stats import connect as connect_async
from taskqueue_operator.adapters.redis_stats import read_stats
from taskqueue_operator.observation import RedisObservation

from taskqueue_plugin import render
from taskqueue_plugin.context import Context
from taskqueue_plugin.errors import CliError
from taskqueue_plugin.forward import async_client
from taskqueue_plugin.records import (
    JobRecord,
    decode_meta,
    fetch_records,
    live_entries,
    parse_rq_time,
    text,
)

SCALING_HISTORY = 10


def observe(
    url: str,
    prefix: str,
    queues: Sequence[str],
    now: float,
    dial: Callable[[], socket.socket] | None = None,
) -> RedisObservation:
    """The operator's reader; with `dial`, over the port-forward."""

    async def run() -> RedisObservation:
        client = connect_async(url, max_connections=2) if dial is None else async_client(url, dial)
        try:
            return await read_stats(client, prefix, queues, now=now)
        finally:
            await client.aclose()

    return asyncio.run(run())


# ---------------------------------------------------------------- TaskQueue status


def event_time(event: dict[str, Any]) -> datetime | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        moment = parse_rq_time(event.get(key))
        if moment:
            return moment
    return parse_rq_time((event.get("metadata") or {}).get("creationTimestamp"))


def scaling_history(
    events: Sequence[dict[str, Any]], limit: int = SCALING_HISTORY
) -> list[dict[str, Any]]:
    """The operator's `Scaled` events, newest first. Pure."""
    scaled = [e for e in events if e.get("reason") == "Scaled"]
    oldest = datetime.min.replace(tzinfo=UTC)
    scaled.sort(key=lambda e: event_time(e) or oldest, reverse=True)
    return scaled[:limit]


def taskqueue_lines(
    taskqueue: dict[str, Any], events: Sequence[dict[str, Any]], now: datetime
) -> list[str]:
    """The cluster's half of `status`: replicas, last scale, conditions, history. Pure."""
    spec = taskqueue.get("spec") or {}
    status = taskqueue.get("status") or {}
    lines: list[str] = []
    if not status:
        lines.append("Status:       <none yet: is the operator running?>")
    mode = "autoscaling" if spec.get("scaling") else f"fixed ({spec.get('replicas', 1)})"
    scaling = spec.get("scaling") or {}
    if scaling:
        mode += (
            f" {scaling.get('minReplicas', 0)}..{scaling.get('maxReplicas', 10)}, "
            f"jobs start within {scaling.get('targetQueueSeconds', 10.0):g}s"
        )
        if scaling.get("targetBacklogPerWorker"):
            mode += f", at most 1 worker per {scaling['targetBacklogPerWorker']} jobs"
    lines.append(f"Scaling:      {mode}")
    lines.append(
        "Replicas:     desired {d}, current {c}, ready {r}".format(
            d=_value(status.get("desiredReplicas")),
            c=_value(status.get("replicas")),
            r=_value(status.get("readyReplicas")),
        )
    )
    last_time = parse_rq_time(status.get("lastScaleTime"))
    if last_time or status.get("lastScaleReason"):
        lines.append(
            f"Last scale:   {render.ago(last_time, now) or '?'}: "
            f"{status.get('lastScaleReason') or '-'}"
        )
    requeue = status.get("requeue") or {}
    if requeue:
        lines.append(
            f"Last requeue: token {requeue.get('token')!r}: {requeue.get('requeued', 0)} jobs"
            f" ({render.ago(parse_rq_time(requeue.get('time')), now) or '?'})"
        )
    conditions = status.get("conditions") or []
    if conditions:
        lines.append("")
        lines.append(
            render.table(
                ["condition", "status", "reason", "since", "message"],
                [
                    [
                        c.get("type"),
                        c.get("status"),
                        c.get("reason"),
                        render.ago(parse_rq_time(c.get("lastTransitionTime")), now) or "-",
                        render.truncate(c.get("message") or "", 80),
                    ]
                    for c in conditions
                ],
            )
        )
    history = scaling_history(events)
    if history:
        lines.append("")
        lines.append("Scaling history (newest first):")
        lines.append(
            render.table(
                ["when", "event"],
                [[render.ago(event_time(e), now) or "?", e.get("message") or ""] for e in history],
            )
        )
    return lines


def _value(value: Any) -> str:
    return "?" if value is None else str(value)


# -------------------------------------------------------------------- Redis status


# The counts of a queue, in the order of `status`'s table and JSON.
QUEUE_COUNTS = ("pending", "running", "scheduled", "deferred", "failed", "finished")


def queue_rows(observation: RedisObservation) -> list[list[Any]]:
    return [[q.name, *(getattr(q, count) for count in QUEUE_COUNTS)] for q in observation.queues]


QUEUE_HEADERS = ["queue", *QUEUE_COUNTS]
WORKER_HEADERS = ["worker", "pod", "state", "current job", "queues", "ok", "failed"]


def worker_rows(observation: RedisObservation, jobs: dict[str, JobRecord]) -> list[list[Any]]:
    rows = []
    for worker in observation.live_workers:
        current = ", ".join(
            f"{job_id} ({jobs[job_id].label})" if job_id in jobs else job_id
            for job_id in worker.job_ids
        )
        rows.append(
            [
                worker.name,
                worker.hostname or "-",
                worker.state,
                current or "-",
                ",".join(worker.queues),
                worker.successful_job_count,
                worker.failed_job_count,
            ]
        )
    return rows


def status_document(
    ctx: Context,
    observation: RedisObservation | None,
    jobs: dict[str, JobRecord],
    error: str | None,
) -> dict[str, Any]:
    taskqueue = ctx.target.taskqueue or {}
    return {
        "taskqueue": {
            "name": ctx.target.name,
            "namespace": ctx.target.namespace,
            "queues": list(ctx.target.queues),
            "keyPrefix": ctx.target.key_prefix,
        },
        "status": taskqueue.get("status"),
        "redisError": error,
        "queues": None
        if observation is None
        else [
            {"name": q.name, **{count: getattr(q, count) for count in QUEUE_COUNTS}}
            for q in observation.queues
        ],
        "workers": None
        if observation is None
        else [
            {
                "name": w.name,
                "pod": w.hostname,
                "state": w.state,
                "queues": list(w.queues),
                "currentJobs": [
                    {"id": job_id, "function": jobs[job_id].label if job_id in jobs else None}
                    for job_id in w.job_ids
                ],
                "successfulJobs": w.successful_job_count,
                "failedJobs": w.failed_job_count,
            }
            for w in observation.live_workers
        ],
        "scalingHistory": [
            {"time": render.iso(event_time(e)), "message": e.get("message")}
            for e in scaling_history(ctx.target.events)
        ],
    }


def cmd_status(ctx: Context) -> int:
    error: CliError | None = None
    observation: RedisObservation | None = None
    jobs: dict[str, JobRecord] = {}
    try:
        queues = ctx.queues
        ctx.client  # noqa: B018 - connect now: one clear error if Redis is down
        observation = observe(
            ctx.target.redis_url, ctx.prefix, queues, ctx.now.timestamp(), ctx.dial
        )
        ids = sorted({j for w in observation.live_workers for j in w.job_ids})
        jobs = {r.id: r for r in fetch_records(ctx.client, ctx.prefix, ids) if r.exists}
    except CliError as failure:
        if ctx.target.taskqueue is None:
            raise
        error = failure  # still show what the cluster knows (e.g. RedisReachable=False)
    if ctx.json:
        ctx.emit(
            render.to_json(status_document(ctx, observation, jobs, str(error) if error else None))
        )
    else:
        ctx.emit(f"TaskQueue:    {ctx.target.title}")
        seen = [q.name for q in observation.queues] if observation else []
        shown = ", ".join(ctx.target.queues or seen) or "none found"
        ctx.emit(f"Queues:       {shown}   (key prefix {ctx.prefix})")
        if ctx.target.taskqueue is not None:
            for line in taskqueue_lines(ctx.target.taskqueue, ctx.target.events, ctx.now):
                ctx.emit(line)
        if observation is not None:
            ctx.emit("")
            ctx.emit(render.table(QUEUE_HEADERS, queue_rows(observation)))
            ctx.emit("")
            rows = worker_rows(observation, jobs)
            ctx.emit(render.table(WORKER_HEADERS, rows) if rows else "No workers.")
    if error is not None:
        raise error
    return 0


# -------------------------------------------------------------------------- progress


def progress_row(record: JobRecord, worker_pods: dict[str, str], now: datetime) -> dict[str, Any]:
    """One running job's progress as plain data. Pure (given the decoded meta)."""
    meta = decode_meta(record).value or {}
    raw = meta.get("progress")
    fraction = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    elapsed = (now - record.started_at).total_seconds() if record.started_at else None
    eta = None
    if fraction and elapsed is not None and 0 < fraction < 1:
        eta = elapsed * (1 - fraction) / fraction
    return {
        "id": record.id,
        "queue": record.queue,
        "function": record.label,
        "progress": fraction,
        "message": meta.get("progress_message"),
        "worker": record.worker,
        "pod": worker_pods.get(record.worker or ""),
        "startedAt": render.iso(record.started_at),
        "elapsedSeconds": elapsed,
        "etaSeconds": eta,
    }


PROGRESS_HEADERS = ["job id", "queue", "function", "progress", "message", "pod", "elapsed", "eta"]


def progress_table_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            item["id"],
            item["queue"],
            render.truncate(item["function"], 40),
            render.progress_bar(item["progress"]),
            render.truncate(item["message"], 40) or "-",
            item["pod"] or item["worker"] or "-",
            "-"
            if item["elapsedSeconds"] is None
            else render.human_duration(item["elapsedSeconds"]),
            "-" if item["etaSeconds"] is None else render.human_duration(item["etaSeconds"]),
        ]
        for item in items
    ]


def cmd_progress(ctx: Context) -> int:
    client, prefix, now_ts = ctx.client, ctx.prefix, ctx.now.timestamp()
    ids = dict.fromkeys(
        job_id
        for queue in ctx.queues
        for job_id, _ in live_entries(client, Keys(prefix).started(queue), now_ts, started=True)
    )
    records = [r for r in fetch_records(client, prefix, ids) if r.exists]
    workers = sorted({r.worker for r in records if r.worker})
    pods: dict[str, str] = {}
    if workers:
        with client.pipeline(transaction=False) as pipe:
            for name in workers:
                pipe.hget(Keys(prefix).worker(name), "hostname")
            pods = {n: text(h) or "" for n, h in zip(workers, pipe.execute(), strict=True) if h}
    items = [progress_row(r, pods, ctx.now) for r in records]
    items.sort(key=lambda item: item["startedAt"] or "")
    if ctx.json:
        ctx.emit(render.to_json({"items": items}))
    elif not items:
        ctx.emit(f"No running jobs in TaskQueue {ctx.target.title}.")
    else:
        ctx.emit(render.table(PROGRESS_HEADERS, progress_table_rows(items)))
    return 0
