"""Pure formatting of dead letters, job details, TaskQueue status and progress."""

from __future__ import annotations

import pickle
import zlib
from datetime import UTC, datetime, timedelta

from taskqueue_plugin import dlq, status
from taskqueue_plugin.records import JobRecord

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class Candle:  # an "application" class: shown as a placeholder, never imported
    def __init__(self, close: float) -> None:
        self.close = close


def failed(job_id: str, minutes_ago: float | None, **extra: object) -> JobRecord:
    ended = NOW - timedelta(minutes=minutes_ago) if minutes_ago is not None else None
    fields: dict[str, object] = {
        "id": job_id,
        "exists": True,
        "status": "failed",
        "queue": "high",
        "function": "tasks.fail",
        "ended_at": ended,
        "exc_text": "Traceback (most recent call last):\n  ...\nRuntimeError: " + "x" * 100,
    }
    fields.update(extra)
    return JobRecord(**fields)  # type: ignore[arg-type]


def test_list_rows_newest_first_with_truncated_exceptions() -> None:
    records = dlq.newest_first([failed("a", 30), failed("b", None), failed("c", 2, retries_left=1)])
    assert [r.id for r in records] == ["c", "a", "b"]
    rows = dlq.list_rows(records, NOW)
    assert rows[0][:3] == ["c", "high", "tasks.fail"]
    assert rows[0][3].startswith("RuntimeError: xxx") and rows[0][3].endswith("...")
    assert len(rows[0][3]) == dlq.EXCEPTION_WIDTH
    assert rows[0][4] == "2m ago" and rows[0][5] == 1
    assert rows[2][4] == "-" and rows[2][5] == "-"


def test_show_document_decodes_what_it_can_and_says_what_it_cannot() -> None:
    data = zlib.compress(pickle.dumps(("tasks.backtest", None, (Candle(1.5), "KRW-BTC"), {"n": 3})))
    record = failed(
        "j",
        1,
        raw_data=data,
        raw_meta=pickle.dumps({"progress": 0.5, "owner": Candle(2.0)}),
        description="tasks.backtest(...)",
        started_at=NOW - timedelta(minutes=2),
    )
    document = dlq.show_document(record, failed_score=123.0)
    assert document["inFailedRegistry"] is True
    assert document["args"][1] == "KRW-BTC" and document["kwargs"] == {"n": 3}
    assert document["args"][0].startswith(f"<{__name__}.Candle(")
    assert document["meta"]["progress"] == 0.5
    [note] = document["notes"]
    assert f"{__name__}.Candle" in note and "does not import" in note
    assert document["exception"].startswith("RuntimeError")
    text = dlq.show_text(document, "(...)", "{...}")
    assert "Traceback:\n  Traceback (most recent call last):" in text
    assert text.splitlines()[0] == "Job:          j"
    assert "Note: the job's data refers to code" in text


def test_show_document_without_data() -> None:
    document = dlq.show_document(failed("j", 1), failed_score=None)
    assert document["args"] is None and document["inFailedRegistry"] is False
    assert document["notes"] == ["arguments not shown: the job has no data"]


TASKQUEUE = {
    "spec": {"queues": ["high"], "scaling": {"minReplicas": 0, "maxReplicas": 8}},
    "status": {
        "desiredReplicas": 3,
        "replicas": 3,
        "readyReplicas": 2,
        "lastScaleTime": "2025-01-01T11:55:00Z",
        "lastScaleReason": "backlog 25 > 2 workers x 10",
        "conditions": [
            {
                "type": "RedisReachable",
                "status": "True",
                "reason": "Answered",
                "lastTransitionTime": "2025-01-01T10:00:00Z",
            }
        ],
    },
}


def event(minutes_ago: int, reason: str, message: str) -> dict[str, object]:
    moment = (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"reason": reason, "message": message, "lastTimestamp": moment}


def test_taskqueue_lines() -> None:
    events = [
        event(30, "Scaled", "scaled up from 0 to 2"),
        event(5, "Scaled", "scaled up from 2 to 3"),
        event(1, "RedisReachable", "Redis answers again"),
    ]
    lines = status.taskqueue_lines(TASKQUEUE, events, NOW)
    text = "\n".join(lines)
    assert "Scaling:      autoscaling 0..8, jobs start within 10s" in text
    assert "Replicas:     desired 3, current 3, ready 2" in text
    assert "Last scale:   5m ago: backlog 25 > 2 workers x 10" in text
    assert "RedisReachable   True" in text and "2h ago" in text
    history = text.split("Scaling history (newest first):\n", 1)[1].splitlines()
    assert history[1].startswith("5m ago") and history[2].startswith("30m ago")
    assert "Redis answers again" not in text


def test_taskqueue_lines_before_the_operator_wrote_status() -> None:
    lines = status.taskqueue_lines({"spec": {"replicas": 2}}, [], NOW)
    assert "is the operator running?" in lines[0]
    assert (
        "Scaling:      fixed (2)" in lines
        and "Replicas:     desired ?, current ?, ready ?" in lines
    )


def test_progress_row_with_eta() -> None:
    record = JobRecord(
        id="j",
        exists=True,
        queue="backtest-queue",
        function="tasks.backtest",
        started_at=NOW - timedelta(seconds=30),
        worker="w-1",
        raw_meta=pickle.dumps({"progress": 0.25, "progress_message": "symbol 1/4"}),
    )
    row = status.progress_row(record, {"w-1": "workers-abc"}, NOW)
    assert row["progress"] == 0.25 and row["message"] == "symbol 1/4"
    assert row["pod"] == "workers-abc" and row["elapsedSeconds"] == 30
    assert row["etaSeconds"] == 90
    [table_row] = status.progress_table_rows([row])
    assert table_row[3] == "[##........]  25.0%" and table_row[6:] == ["30s", "1m30s"]


def test_progress_without_progress_meta() -> None:
    record = JobRecord(id="j", exists=True, raw_meta=pickle.dumps({"progress": "half"}))
    row = status.progress_row(record, {}, NOW)
    assert row["progress"] is None and row["etaSeconds"] is None and row["elapsedSeconds"] is None
