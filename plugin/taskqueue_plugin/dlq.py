"""`dlq list|show|requeue|purge`: the failed-job registries of a TaskQueue's queues.

Reads are raw (records.py); writes go through RQ's own APIs, `FailedJobRegistry.requeue`
and `Job.delete`, which move or delete a job without running its callbacks, so the
plugin never needs the application's code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rq.defaults import RQ_KEY_PREFIX
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from taskqueue_contract import registries
from taskqueue_contract.keys import Keys

from taskqueue_plugin import render
from taskqueue_plugin.context import Context
from taskqueue_plugin.errors import CliError, NotFound
from taskqueue_plugin.records import (
    JobRecord,
    decode_call,
    decode_meta,
    fetch_records,
    live_entries,
    text,
)
from taskqueue_plugin.selectors import Selector

EXCEPTION_WIDTH = 70
FUNCTION_WIDTH = 45


def failed_key(prefix: str, queue: str) -> str:
    return Keys(prefix).failed(queue)


# ------------------------------------------------------------------------------ list


def list_rows(records: list[JobRecord], now: datetime) -> list[list[Any]]:
    """Table rows for `dlq list`, newest failure first. Pure."""
    return [
        [
            r.id,
            r.queue,
            render.truncate(r.label, FUNCTION_WIDTH),
            render.truncate(r.exception, EXCEPTION_WIDTH) or "-",
            render.ago(r.failed_at, now) or "-",
            "-" if r.retries_left is None else r.retries_left,
        ]
        for r in records
    ]


LIST_HEADERS = ["job id", "queue", "function", "exception", "failed", "retries left"]


def record_summary(record: JobRecord) -> dict[str, Any]:
    """The JSON shape of one dead letter (`dlq list -o json`)."""
    return {
        "id": record.id,
        "queue": record.queue,
        "function": record.label,
        "description": record.description,
        "status": record.status,
        "exception": record.exception,
        "failedAt": render.iso(record.failed_at),
        "retriesLeft": record.retries_left,
        "worker": record.worker,
    }


def newest_first(records: list[JobRecord]) -> list[JobRecord]:
    """Newest failure first; jobs without a known failure time last. Pure."""

    def key(record: JobRecord) -> tuple[bool, float, str]:
        moment = record.failed_at
        return (moment is not None, moment.timestamp() if moment else 0.0, record.id)

    return sorted(records, key=key, reverse=True)


def cmd_list(ctx: Context, limit: int) -> int:
    client, now_ts = ctx.client, ctx.now.timestamp()
    with client.pipeline(transaction=False) as pipe:
        for queue in ctx.queues:
            key = failed_key(ctx.prefix, queue)
            registries.count_live(pipe, key, now_ts)  # as the status's DEAD column counts
            registries.live_entries(pipe, key, now_ts, newest_first=True, limit=limit)
        replies = pipe.execute()
    total = sum(int(count) for count in replies[0::2])
    candidates = [text(m) or "" for members in replies[1::2] for m, _score in members]
    records = [r for r in fetch_records(client, ctx.prefix, candidates) if r.exists]
    records = newest_first(records)
    if limit > 0:
        records = records[:limit]
    if ctx.json:
        ctx.emit(render.to_json({"total": total, "items": [record_summary(r) for r in records]}))
        return 0
    if not records:
        queues = ", ".join(ctx.queues) or "none found"
        ctx.emit(f"No failed jobs in TaskQueue {ctx.target.title} (queues: {queues}).")
        return 0
    ctx.emit(render.table(LIST_HEADERS, list_rows(records, ctx.now)))
    if len(records) < total:
        ctx.emit(f"\nShowing {len(records)} of {total} failed jobs (--limit 0 shows all).")
    return 0


# ------------------------------------------------------------------------------ show


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def find_job(ctx: Context, job_id: str) -> JobRecord:
    [record] = fetch_records(ctx.client, ctx.prefix, [job_id])
    if not record.exists:
        raise NotFound(f'no job "{job_id}" in Redis (key prefix "{ctx.prefix}")')
    if record.queue not in ctx.queues:
        raise NotFound(
            f'job "{job_id}" is on queue "{record.queue}", not on a queue of '
            f"TaskQueue {ctx.target.title} ({', '.join(ctx.queues)})"
        )
    return record


def show_document(record: JobRecord, failed_score: float | None) -> dict[str, Any]:
    """Everything `dlq show` knows about a job, as plain data. Pure."""
    args, kwargs, call = decode_call(record)
    meta = decode_meta(record)
    unresolved = sorted(call.unresolved | meta.unresolved)
    notes = []
    if call.error:
        notes.append(f"arguments not shown: {call.error}")
    if unresolved:
        notes.append(
            "the job's data refers to code the plugin does not import (shown as <...> "
            "placeholders): " + ", ".join(unresolved)
        )
    if meta.error:
        notes.append(f"meta not shown: {meta.error}")
    return {
        "id": record.id,
        "queue": record.queue,
        "status": record.status,
        "inFailedRegistry": failed_score is not None,
        "function": record.label,
        "description": record.description,
        "args": None if args is None else [_jsonable(a) for a in args],
        "kwargs": None if kwargs is None else {str(k): _jsonable(v) for k, v in kwargs.items()},
        "meta": {str(k): _jsonable(v) for k, v in (meta.value or {}).items()},
        "createdAt": render.iso(record.created_at),
        "enqueuedAt": render.iso(record.enqueued_at),
        "startedAt": render.iso(record.started_at),
        "endedAt": render.iso(record.ended_at),
        "failedAt": render.iso(record.failed_at),
        "worker": record.worker,
        "retriesLeft": record.retries_left,
        "retriesDone": record.number_of_retries,
        "timeout": record.timeout,
        "exception": record.exception,
        "traceback": record.exc_text,
        "notes": notes,
    }


def show_text(document: dict[str, Any], args_repr: str, kwargs_repr: str) -> str:
    """`kubectl describe`-style text of a show document. Pure."""
    fields = [
        ("Job", document["id"]),
        ("Queue", document["queue"]),
        (
            "Status",
            (document["status"] or "?")
            + (" (in the failed registry)" if document["inFailedRegistry"] else ""),
        ),
        ("Function", document["function"]),
        ("Description", document["description"]),
        ("Args", args_repr),
        ("Kwargs", kwargs_repr),
        ("Meta", json.dumps(document["meta"], default=str) if document["meta"] else "{}"),
        ("Created", document["createdAt"]),
        ("Enqueued", document["enqueuedAt"]),
        ("Started", document["startedAt"]),
        ("Ended", document["endedAt"]),
        ("Worker", document["worker"]),
        ("Retries left", "-" if document["retriesLeft"] is None else document["retriesLeft"]),
        ("Retries done", document["retriesDone"] or 0),
        ("Timeout", f"{document['timeout']}s" if document["timeout"] else None),
        ("Exception", document["exception"]),
    ]
    width = max(len(name) for name, _ in fields) + 2
    lines = [
        f"{name + ':':<{width}}{'<none>' if value is None else value}" for name, value in fields
    ]
    lines.append("Traceback:")
    traceback_text = document["traceback"] or "<none recorded>"
    lines.extend("  " + line for line in traceback_text.rstrip().splitlines())
    for note in document["notes"]:
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def cmd_show(ctx: Context, job_id: str) -> int:
    record = find_job(ctx, job_id)
    score = ctx.client.zscore(failed_key(ctx.prefix, record.queue or ""), job_id)
    document = show_document(record, score)
    if ctx.json:
        ctx.emit(render.to_json(document))
        return 0
    args, kwargs, _ = decode_call(record)
    args_repr = "<not decoded>" if args is None else repr(tuple(args))
    kwargs_repr = "<not decoded>" if kwargs is None else repr(dict(kwargs))
    ctx.emit(show_text(document, args_repr, kwargs_repr))
    return 0


# ---------------------------------------------------------------- requeue and purge


@dataclass(frozen=True)
class Selected:
    queue: str
    record: JobRecord


def select(ctx: Context, selector: Selector) -> list[Selected]:
    """The dead letters the selector names, in the selected queues' failed registries.

    Explicit ids must all be dead letters of this TaskQueue, or nothing is done.
    """
    client = ctx.client
    if selector.ids:
        with client.pipeline(transaction=False) as pipe:
            for job_id in selector.ids:
                for queue in ctx.queues:
                    pipe.zscore(failed_key(ctx.prefix, queue), job_id)
            scores = pipe.execute()
        found: list[tuple[str, str]] = []
        problems: list[str] = []
        for index, job_id in enumerate(selector.ids):
            row = scores[index * len(ctx.queues) : (index + 1) * len(ctx.queues)]
            owner = next((q for q, s in zip(ctx.queues, row, strict=True) if s is not None), None)
            if owner is None:
                problems.append(job_id)
            else:
                found.append((owner, job_id))
        if problems:
            raise NotFound(_not_dead_letters(ctx, problems))
        records = fetch_records(client, ctx.prefix, [job_id for _, job_id in found])
        return [Selected(q, r) for (q, _), r in zip(found, records, strict=True)]
    now_ts = ctx.now.timestamp()
    chosen: list[Selected] = []
    for queue in ctx.queues:
        ids = [job_id for job_id, _ in live_entries(client, failed_key(ctx.prefix, queue), now_ts)]
        for record in fetch_records(client, ctx.prefix, ids):
            # A hash that expired under its entry still matches --all (its entry is stale).
            if (not record.exists and selector.all) or (
                record.exists and selector.matches(record, ctx.now)
            ):
                chosen.append(Selected(queue, record))
    return chosen


def _not_dead_letters(ctx: Context, job_ids: list[str]) -> str:
    records = fetch_records(ctx.client, ctx.prefix, job_ids)
    parts = []
    for record in records:
        if not record.exists:
            parts.append(f'no job "{record.id}"')
        else:
            parts.append(
                f'job "{record.id}" is not a dead letter of TaskQueue {ctx.target.title} '
                f"(status {record.status}, queue {record.queue})"
            )
    return "; ".join(parts)


def _check_prefix(ctx: Context) -> None:
    # RQ's APIs use the prefix rq was imported with; main re-executes when it differs.
    if ctx.prefix != RQ_KEY_PREFIX:
        raise CliError(f"internal error: key prefix {ctx.prefix!r} but rq uses {RQ_KEY_PREFIX!r}")


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _settle(
    ctx: Context, chosen: list[Selected], act: Callable[[FailedJobRegistry, str], bool]
) -> Outcome:
    """`act` on each job: done when it returns True, skipped when False (no longer a dead
    letter); a job whose hash expired before its registry entry loses the entry (stale)."""
    _check_prefix(ctx)
    outcome = Outcome()
    for item in chosen:
        registry = FailedJobRegistry(item.queue, connection=ctx.client)
        job_id = item.record.id
        try:
            acted = act(registry, job_id)
        except NoSuchJobError:
            registry.remove(job_id)
            outcome.stale.append(job_id)
            continue
        (outcome.done if acted else outcome.skipped).append(job_id)
    return outcome


def requeue(ctx: Context, chosen: list[Selected]) -> Outcome:
    def act(registry: FailedJobRegistry, job_id: str) -> bool:
        try:
            registry.requeue(job_id)
        except InvalidJobOperation:  # someone else requeued or removed it meanwhile
            return False
        return True

    return _settle(ctx, chosen, act)


def purge(ctx: Context, chosen: list[Selected]) -> Outcome:
    def act(registry: FailedJobRegistry, job_id: str) -> bool:
        job = Job.fetch(job_id, connection=ctx.client)
        if job.get_status(refresh=False) not in (JobStatus.FAILED, JobStatus.STOPPED):
            return False  # requeued meanwhile: it is no dead letter now
        with ctx.client.pipeline() as pipe:
            job.delete(pipeline=pipe)  # hash, results, executions, and its registry entry
            registry.remove(job_id, pipeline=pipe)
            pipe.execute()
        return True

    return _settle(ctx, chosen, act)


def confirm(ctx: Context, question: str) -> bool:
    ctx.out.write(f"{question} [y/N]: ")
    ctx.out.flush()
    answer = ctx.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _report(ctx: Context, verb: str, outcome: Outcome) -> None:
    if ctx.json:
        ctx.emit(
            render.to_json({verb: outcome.done, "stale": outcome.stale, "skipped": outcome.skipped})
        )
        return
    line = f"{verb} {len(outcome.done)} failed job(s) of TaskQueue {ctx.target.title}"
    extras = []
    if outcome.stale:
        extras.append(f"{len(outcome.stale)} stale registry entries without a job removed")
    if outcome.skipped:
        extras.append(f"{len(outcome.skipped)} skipped (no longer failed)")
    ctx.emit(line + (f"; {'; '.join(extras)}" if extras else ""))


def _dry_run(ctx: Context, verb: str, chosen: list[Selected]) -> int:
    if ctx.json:
        ctx.emit(render.to_json({"dryRun": True, verb: [s.record.id for s in chosen]}))
        return 0
    ctx.emit(f"would {verb} {len(chosen)} failed job(s) of TaskQueue {ctx.target.title}")
    if chosen:
        ctx.emit(render.table(LIST_HEADERS, list_rows([s.record for s in chosen], ctx.now)))
    return 0


def cmd_requeue(ctx: Context, selector: Selector, dry_run: bool) -> int:
    chosen = select(ctx, selector)
    if dry_run:
        return _dry_run(ctx, "requeue", chosen)
    _report(ctx, "requeued", requeue(ctx, chosen))
    return 0


def cmd_purge(ctx: Context, selector: Selector, dry_run: bool, yes: bool, interactive: bool) -> int:
    chosen = select(ctx, selector)
    if dry_run:
        return _dry_run(ctx, "purge", chosen)
    if not chosen:
        _report(ctx, "purged", Outcome())
        return 0
    if not yes:
        if not interactive:
            raise CliError("refusing to purge without confirmation: pass --yes (stdin is no TTY)")
        question = (
            f"Delete {len(chosen)} failed job(s) ({selector.describe()}) of TaskQueue "
            f"{ctx.target.title}, with their results? This cannot be undone."
        )
        if not confirm(ctx, question):
            ctx.emit("nothing purged")
            return 1
    _report(ctx, "purged", purge(ctx, chosen))
    return 0
