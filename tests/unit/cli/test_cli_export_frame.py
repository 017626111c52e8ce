"""The job-history DataFrame: one row per job, fixed dtypes, Parquet round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from taskqueue_plugin.errors import UsageError
from taskqueue_plugin.jobs import COLUMNS, STATUSES, Row, build_frame, parse_statuses
from taskqueue_plugin.records import JobRecord

T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
EXPECTED_DTYPES = {
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


def rows() -> list[Row]:
    finished = JobRecord(
        id="f1",
        exists=True,
        status="finished",
        queue="default",
        function="tasks.ingest",
        created_at=T0,
        enqueued_at=T0,
        started_at=T0 + timedelta(seconds=2),
        ended_at=T0 + timedelta(seconds=5, microseconds=250),
        worker="w-1",
    )
    failed = JobRecord(
        id="x1",
        exists=True,
        status="failed",
        queue="high",
        description="tasks.fail('x')",
        enqueued_at=T0,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=1),
        exc_text="Traceback\nRuntimeError: x",
        retries_left=0,
    )
    queued_without_status = JobRecord(id="q1", exists=True, queue="default", enqueued_at=T0)
    return [Row(finished, "finished"), Row(failed, "failed"), Row(queued_without_status, "queued")]


def check_dtypes(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(EXPECTED_DTYPES)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == EXPECTED_DTYPES


def test_rows_and_dtypes() -> None:
    frame = build_frame(rows(), ["high", "default"])
    check_dtypes(frame)
    assert list(frame["job_id"]) == ["f1", "x1", "q1"]
    assert list(frame["status"]) == ["finished", "failed", "queued"]  # the source as fallback
    assert list(frame["queue"].cat.categories) == ["high", "default"]
    assert list(frame["status"].cat.categories) == list(STATUSES)
    assert frame.loc[0, "duration_seconds"] == pytest.approx(3.00025)
    assert pd.isna(frame.loc[2, "duration_seconds"])
    assert frame.loc[0, "ended_at"] == pd.Timestamp("2025-01-01 09:00:05.000250", tz="UTC")
    assert pd.isna(frame.loc[2, "started_at"])
    assert frame.loc[1, "function"] == "tasks.fail"  # from the description
    assert frame.loc[1, "exception"] == "RuntimeError: x"
    assert frame.loc[1, "retries_left"] == 0 and pd.isna(frame.loc[0, "retries_left"])


def test_an_empty_history_keeps_the_dtypes() -> None:
    frame = build_frame([], ["default"])
    assert len(frame) == 0
    check_dtypes(frame)


def test_a_queue_outside_the_spec_gets_its_own_category() -> None:
    frame = build_frame(rows(), ["high"])
    assert list(frame["queue"].cat.categories) == ["high", "default"]


def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "jobs.parquet"
    build_frame(rows(), ["high", "default"]).to_parquet(path, engine="pyarrow", index=False)
    back = pd.read_parquet(path, engine="pyarrow")
    check_dtypes(back)
    assert list(back["job_id"]) == ["f1", "x1", "q1"]


def test_parse_statuses() -> None:
    assert parse_statuses(None) == STATUSES
    assert parse_statuses(["failed", "Finished,started", "failed"]) == (
        "failed",
        "finished",
        "started",
    )
    with pytest.raises(UsageError, match="unknown status 'done'"):
        parse_statuses(["done"])
    assert set(COLUMNS) == set(EXPECTED_DTYPES)
