"""`jobs export`: the job history of a TaskQueue as a Parquet file (pandas + pyarrow).

Sources per queue: the queue list (queued), and the started, scheduled, deferred,
finished, failed and canceled registries. A job's status is its hash's `status` (the
registry it sits in when the hash has none). Finished and failed entries whose score
(expiry) has passed are skipped: their hashes are gone or going.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from taskqueue_contract.keys import Keys

from taskqueue_plugin.context import Context
from taskqueue_plugin.errors import CliError, UsageError
from taskqueue_plugin.records import JobRecord, fetch_records, live_entries, text

if TYPE_CHECKING:
    import pandas as pd

EXPORT_EXTRA = "pip install 'kubectl-taskqueue[export]'"


def _pandas() -> ModuleType:
    """pandas (with pyarrow) is the plugin's `export` extra: only `jobs export` needs it."""
    try:
        import pandas
        import pyarrow  # noqa: F401 - to_parquet's engine
    except ImportError as error:
        raise CliError(f"jobs export needs pandas and pyarrow: {EXPORT_EXTRA} ({error})") from None
    return pandas


# Every status RQ 3 writes, in lifecycle order: the categories of the `status` column.
STATUSES = (
    "created",
    "deferred",
    "scheduled",
    "queued",
    "started",
    "finished",
    "failed",
    "stopped",
    "canceled",
)
# Where each status lives (stopped jobs are kept in the failed registry).
SOURCE_OF_STATUS = {
    "queued": "queued",
    "started": "started",
    "scheduled": "scheduled",
    "deferred": "deferred",
    "finished": "finished",
    "failed": "failed",
    "stopped": "failed",
    "canceled": "canceled",
    "created": "queued",
}
SOURCES = ("started", "queued", "scheduled", "deferred", "failed", "finished", "canceled")
COLUMNS = {
    "job_id": "string",
    "queue": "category",
    "function": "string",
    "description": "string",
    "status": "category",
    "created_at": "datetime64[ns, UTC]",
    "enqueued_at": "datetime64[ns, UTC]",
    "started_at": "datetime64[ns, UTC]",
    "ended_at": "datetime64[ns, UTC]",
    "duration_seconds": "float64",
    "worker": "string",
    "retries_left": "Int64",
    "exception": "string",
}


def parse_statuses(values: Sequence[str] | None) -> tuple[str, ...]:
    """`--status failed --status finished,started` -> the statuses; all when none given."""
    chosen: dict[str, None] = {}
    for value in values or ():
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in STATUSES:
                raise UsageError(f"unknown status {name!r}: use {', '.join(STATUSES)}")
            chosen.setdefault(name, None)
    return tuple(chosen) or STATUSES


@dataclass(frozen=True)
class Row:
    record: JobRecord
    source: str  # the registry (or queue list) the job was found in

    @property
    def status(self) -> str:
        """The hash's status, else the registry's (the `status` column)."""
        return self.record.status if self.record.status in STATUSES else self.source


def build_frame(rows: Iterable[Row], queues: Sequence[str]) -> pd.DataFrame:
    """One row per job with fixed dtypes (also when empty). Pure."""
    data: dict[str, list[object]] = {name: [] for name in COLUMNS}
    for row in rows:
        r = row.record
        duration = (
            (r.ended_at - r.started_at).total_seconds() if r.ended_at and r.started_at else None
        )
        values = {
            "job_id": r.id,
            "queue": r.queue,
            "function": r.label,
            "description": r.description,
            "status": row.status,
            "created_at": r.created_at,
            "enqueued_at": r.enqueued_at,
            "started_at": r.started_at,
            "ended_at": r.ended_at,
            "duration_seconds": duration,
            "worker": r.worker,
            "retries_left": r.retries_left,
            "exception": r.exception,
        }
        for name in COLUMNS:
            data[name].append(values[name])
    pd = _pandas()
    frame = pd.DataFrame(data)
    for name, dtype in COLUMNS.items():
        if dtype == "category":
            continue
        if dtype.startswith("datetime64"):
            frame[name] = pd.to_datetime(frame[name], utc=True).astype(dtype)
        else:
            frame[name] = frame[name].astype(dtype)
    # Fixed categories: files of one TaskQueue concatenate without dtype surprises.
    extra_queues = sorted({q for q in data["queue"] if isinstance(q, str) and q not in queues})
    frame["queue"] = pd.Categorical(data["queue"], categories=[*queues, *extra_queues])
    frame["status"] = pd.Categorical(data["status"], categories=list(STATUSES))
    return frame


def collect(ctx: Context, statuses: Sequence[str]) -> tuple[list[Row], int]:
    """(rows, entries whose job hash is gone), each job once, in SOURCES order."""
    wanted_sources = {SOURCE_OF_STATUS[s] for s in statuses}
    client, prefix, now_ts = ctx.client, ctx.prefix, ctx.now.timestamp()
    keys = Keys(prefix)
    found: dict[str, str] = {}
    for queue in ctx.queues:
        for source in SOURCES:
            if source not in wanted_sources:
                continue
            if source == "queued":
                ids = [text(m) or "" for m in client.lrange(keys.queue(queue), 0, -1)]
            elif source == "started":
                key = keys.started(queue)
                ids = [job_id for job_id, _ in live_entries(client, key, now_ts, started=True)]
            elif source in ("finished", "failed"):
                key = getattr(keys, source)(queue)
                ids = [job_id for job_id, _ in live_entries(client, key, now_ts)]
            else:  # scheduled (score = run time), deferred, canceled: every entry counts
                key = getattr(keys, source)(queue)
                members = client.zrange(key, 0, -1)  # no scores: members only
                ids = [text(m) or "" for m in members if isinstance(m, bytes | str)]
            for job_id in ids:
                found.setdefault(job_id, source)
    records = fetch_records(client, prefix, list(found))
    rows = [Row(r, found[r.id]) for r in records if r.exists]
    gone = len(records) - len(rows)
    return [row for row in rows if row.status in statuses], gone


def cmd_export(ctx: Context, destination: str, statuses: Sequence[str]) -> int:
    path = Path(destination)
    if not path.parent.exists():
        raise CliError(f"cannot write {path}: directory {path.parent} does not exist")
    rows, gone = collect(ctx, statuses)
    frame = build_frame(rows, ctx.queues)
    try:
        frame.to_parquet(path, engine="pyarrow", index=False)
    except OSError as error:
        raise CliError(f"cannot write {path}: {error.strerror or error}") from None
    counts = frame["status"].value_counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s, 0))
    line = f"wrote {len(frame)} jobs of TaskQueue {ctx.target.title} to {path}"
    line += f" ({summary})" if summary else ""
    if gone:
        line += f"; {gone} registry entries had no job hash (expired) and were left out"
    ctx.emit(line)
    return 0
