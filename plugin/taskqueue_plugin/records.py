"""Jobs as the plugin sees them: RQ's job hashes and result streams, read raw.

`Job.fetch` would do, but reading hashes ourselves lets one pipeline fetch hundreds of
jobs, never triggers registry cleanup (which runs callbacks that need the app's code),
and works for any key prefix. Parsing is pure (`record_from_hash`), so it is tested on
synthetic hashes; the integration tests check it against hashes real workers wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from taskqueue_contract import job_data as safe_pickle
from taskqueue_contract import registries, timestamps
from taskqueue_contract.keys import Keys, job_id_of_execution

BATCH = 500
RESULTS_READ = 3  # the newest few results: the failure may not be the very last entry


def text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def parse_rq_time(value: bytes | str | None) -> datetime | None:
    """RQ's `utcformat` strings ('2024-05-01T10:00:00.123456Z'); '' and garbage -> None."""
    return timestamps.parse(value)


def exception_summary(traceback_text: str | None) -> str | None:
    """The last non-empty line of a traceback: 'RuntimeError: boom'."""
    if not traceback_text:
        return None
    lines = [line.strip() for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def _int(value: bytes | str | None) -> int | None:
    raw = text(value)
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Failure:
    """One entry of RQ's results stream (`<prefix>:results:<job id>`)."""

    kind: int
    exc_string: str | None
    worker: str | None
    at: datetime | None


def parse_result(entry_id: bytes | str, payload: Mapping[bytes, bytes]) -> Failure:
    """Decode a stream entry like rq.results.Result.restore, minus the return value
    (a pickle the plugin has no reason to load)."""
    fields = {text(k): v for k, v in payload.items()}
    exc = fields.get("exc_string")
    exc_string = safe_pickle.exception_text(exc)
    millis = (text(entry_id) or "0-0").split("-", 1)[0]
    at = datetime.fromtimestamp(int(millis) / 1000, tz=UTC) if millis.isdigit() else None
    kind = _int(fields.get("type")) or 0
    return Failure(kind, exc_string, text(fields.get("worker_name")) or None, at)


@dataclass(frozen=True)
class JobRecord:
    """A job hash, decoded without unpickling anything but the function name."""

    id: str
    exists: bool
    status: str | None = None
    queue: str | None = None
    description: str | None = None
    function: str | None = None
    created_at: datetime | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None
    exc_text: str | None = None
    retries_left: int | None = None
    number_of_retries: int | None = None
    timeout: str | None = None
    last_failure_at: datetime | None = None
    raw_data: bytes | None = field(default=None, repr=False)
    raw_meta: bytes | None = field(default=None, repr=False)

    @property
    def exception(self) -> str | None:
        return exception_summary(self.exc_text)

    @property
    def failed_at(self) -> datetime | None:
        """When it last failed: the job's end, else the failure result's time."""
        return self.ended_at or self.last_failure_at

    @property
    def label(self) -> str:
        """What to call the job in a table: its function, else RQ's description."""
        if self.function:
            return self.function
        if self.description:
            return self.description.split("(", 1)[0]
        return "?"


def record_from_hash(
    job_id: str,
    fields: Mapping[bytes, bytes] | None,
    results: Sequence[tuple[bytes | str, Mapping[bytes, bytes]]] = (),
) -> JobRecord:
    """One job from its HGETALL reply and its newest results (XREVRANGE)."""
    if not fields:
        return JobRecord(id=job_id, exists=False)
    get = {text(k): v for k, v in fields.items()}
    failures = [parse_result(entry_id, payload) for entry_id, payload in results]
    failure = next((f for f in failures if f.exc_string), None)
    exc_text = failure.exc_string if failure else None
    if exc_text is None and get.get("exc_info"):  # rq < 2 kept it in the hash
        exc_text = safe_pickle.decompress(get["exc_info"]).decode(errors="replace") or None
    raw_data = get.get("data")
    description = text(get.get("description")) or None
    return JobRecord(
        id=job_id,
        exists=True,
        status=text(get.get("status")) or None,
        queue=text(get.get("origin")) or None,
        description=description,
        function=safe_pickle.function_name(raw_data),
        created_at=parse_rq_time(get.get("created_at")),
        enqueued_at=parse_rq_time(get.get("enqueued_at")),
        started_at=parse_rq_time(get.get("started_at")),
        ended_at=parse_rq_time(get.get("ended_at")),
        worker=text(get.get("worker_name")) or (failure.worker if failure else None),
        exc_text=exc_text,
        retries_left=_int(get.get("retries_left")),
        number_of_retries=_int(get.get("number_of_retries")),
        timeout=text(get.get("timeout")) or None,
        last_failure_at=failure.at if failure else None,
        raw_data=raw_data,
        raw_meta=get.get("meta"),
    )


def fetch_records(client: redis.Redis, prefix: str, job_ids: Iterable[str]) -> list[JobRecord]:
    """Records in the order of `job_ids`, in pipelined batches (missing hashes: exists=False)."""
    ids = list(job_ids)
    records: list[JobRecord] = []
    keys = Keys(prefix)
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        with client.pipeline(transaction=False) as pipe:
            for job_id in chunk:
                pipe.hgetall(keys.job(job_id))
                pipe.xrevrange(keys.results(job_id), "+", "-", count=RESULTS_READ)
            replies = pipe.execute()
        for index, job_id in enumerate(chunk):
            records.append(record_from_hash(job_id, replies[2 * index], replies[2 * index + 1]))
    return records


def decode_meta(record: JobRecord) -> safe_pickle.Decoded:
    if not record.raw_meta:
        return safe_pickle.Decoded({})
    decoded = safe_pickle.loads(record.raw_meta)
    if decoded.error is None and not isinstance(decoded.value, dict):
        return safe_pickle.Decoded({}, decoded.unresolved, "meta is not a dict")
    return decoded


def decode_call(record: JobRecord) -> tuple[Any, Any, safe_pickle.Decoded]:
    """(args, kwargs, decoded) of the job's call, placeholders for classes not imported."""
    call = safe_pickle.decode_call(record.raw_data)
    return call.args, call.kwargs, call.decoded


# ------------------------------------------------------------------ registry entries


def job_id_of_entry(entry: bytes | str, started: bool = False) -> str:
    """Started-registry entries are '<job id>:<execution id>' (job ids may contain ':')."""
    value = text(entry) or ""
    return job_id_of_execution(value) if started else value


def live_entries(
    client: redis.Redis, key: str, now: float, started: bool = False
) -> list[tuple[str, float]]:
    """(job id, score) of a registry's unexpired entries, oldest score first.

    Expired entries are left to RQ's own cleanup (it runs callbacks the plugin must not).
    """
    return [
        (job_id_of_entry(member, started), float(score))
        for member, score in registries.live_entries(client, key, now)
    ]
