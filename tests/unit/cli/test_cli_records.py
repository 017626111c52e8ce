"""Decoding job hashes and result streams as RQ 3 writes them."""

from __future__ import annotations

import base64
import pickle
import zlib
from datetime import UTC, datetime

from taskqueue_plugin.records import (
    decode_call,
    decode_meta,
    exception_summary,
    job_id_of_entry,
    parse_result,
    parse_rq_time,
    record_from_hash,
)

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "tasks.py", line 3, in fail\n'
    "    raise RuntimeError(message)\n"
    "RuntimeError: planted 3\n"
)


def result_entry(millis: int, exc: str | None, kind: int = 2) -> tuple[bytes, dict[bytes, bytes]]:
    payload = {b"type": str(kind).encode(), b"worker_name": b"w-1"}
    if exc is not None:
        payload[b"exc_string"] = base64.b64encode(zlib.compress(exc.encode()))
    return (f"{millis}-0".encode(), payload)


def job_hash(**extra: bytes) -> dict[bytes, bytes]:
    data = zlib.compress(pickle.dumps(("tasks.fail", None, ("planted 3",), {"n": 1})))
    fields = {
        b"status": b"failed",
        b"origin": b"high",
        b"description": b"tasks.fail('planted 3')",
        b"data": data,
        b"created_at": b"2025-01-01T10:00:00.000001Z",
        b"enqueued_at": b"2025-01-01T10:00:01.000000Z",
        b"started_at": b"2025-01-01T10:00:02.000000Z",
        b"ended_at": b"2025-01-01T10:00:04.500000Z",
        b"worker_name": b"w-1",
        b"retries_left": b"0",
        b"timeout": b"180",
        b"meta": pickle.dumps({"progress": 0.25}),
        b"group_id": b"",
    }
    fields.update({k.encode(): v for k, v in extra.items()})
    return fields


def test_times_and_summaries() -> None:
    assert parse_rq_time(b"2025-01-01T10:00:00.5Z") == datetime(2025, 1, 1, 10, 0, 0, 500000, UTC)
    assert parse_rq_time("2025-01-01T10:00:00Z") == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert parse_rq_time(b"") is None and parse_rq_time(None) is None
    assert parse_rq_time("yesterday") is None
    assert exception_summary(TRACEBACK) == "RuntimeError: planted 3"
    assert exception_summary("\n\n") is None and exception_summary(None) is None


def test_result_entries() -> None:
    failure = parse_result(*result_entry(1_735_725_604_500, TRACEBACK))
    assert failure.kind == 2 and failure.worker == "w-1"
    assert failure.exc_string == TRACEBACK
    assert failure.at == datetime(2025, 1, 1, 10, 0, 4, 500000, UTC)


def test_a_failed_job_hash() -> None:
    record = record_from_hash("j1", job_hash(), [result_entry(1_735_725_604_500, TRACEBACK)])
    assert record.exists and record.id == "j1"
    assert record.status == "failed" and record.queue == "high"
    assert record.function == "tasks.fail" and record.label == "tasks.fail"
    assert record.exception == "RuntimeError: planted 3"
    assert record.failed_at == datetime(2025, 1, 1, 10, 0, 4, 500000, UTC)
    assert record.retries_left == 0 and record.worker == "w-1" and record.timeout == "180"
    args, kwargs, decoded = decode_call(record)
    assert args == ("planted 3",) and kwargs == {"n": 1} and decoded.error is None
    assert decode_meta(record).value == {"progress": 0.25}


def test_the_newest_result_with_an_exception_wins_and_old_hashes_still_work() -> None:
    results = [result_entry(2000, None, kind=4), result_entry(1000, TRACEBACK)]
    record = record_from_hash("j", job_hash(ended_at=b""), results)
    assert record.exception == "RuntimeError: planted 3"
    assert record.failed_at == datetime.fromtimestamp(1.0, UTC)  # no ended_at: the result's time
    legacy = record_from_hash("j", job_hash(exc_info=zlib.compress(b"Trace\nKeyError: 'x'")))
    assert legacy.exception == "KeyError: 'x'"


def test_missing_and_odd_hashes() -> None:
    assert not record_from_hash("gone", {}).exists
    odd = record_from_hash("j", {b"data": b"\x80\x05junk", b"description": b"my.task(1, 2)"})
    assert odd.function is None and odd.label == "my.task"
    assert odd.retries_left is None and odd.failed_at is None
    args, kwargs, decoded = decode_call(odd)
    assert args is None and kwargs is None and decoded.error
    assert record_from_hash("j", {b"status": b"queued"}).label == "?"


def test_started_entries_carry_an_execution_id() -> None:
    assert job_id_of_entry(b"job:with:colons:exec123", started=True) == "job:with:colons"
    assert job_id_of_entry(b"plain-id") == "plain-id"
