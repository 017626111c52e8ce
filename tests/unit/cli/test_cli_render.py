"""Tables, ages, truncation and progress bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from taskqueue_plugin import render


def test_table_aligns_columns_and_marks_missing_values() -> None:
    text = render.table(["job id", "queue"], [["abc", None], ["a-much-longer-id", "high"]])
    assert text.splitlines() == [
        "JOB ID             QUEUE",
        "abc                <none>",
        "a-much-longer-id   high",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (61, "1m1s"),
        (600, "10m"),
        (3600, "1h"),
        (3660, "1h1m"),
        (86400, "1d"),
        (90000, "1d1h"),
        (30 * 86400, "30d"),
        (-5, "0s"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert render.human_duration(seconds) == text


def test_ago_iso_truncate_bar() -> None:
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert render.ago(now - timedelta(minutes=5), now) == "5m ago"
    assert render.ago(None, now) is None
    assert render.iso(now) == "2025-01-01T12:00:00.000000Z"
    assert render.truncate("abcdefghij", 6) == "abc..."
    assert render.truncate("abc", 6) == "abc"
    assert render.truncate(None, 6) is None
    assert render.progress_bar(0.5) == "[#####.....]  50.0%"
    assert render.progress_bar(None) == "-"
    assert render.progress_bar(1.0).startswith("[##########]")


def test_json_handles_datetimes_bytes_and_objects() -> None:
    text = render.to_json({"t": datetime(2025, 1, 1, tzinfo=UTC), "b": b"x", "s": {1}})
    assert '"2025-01-01T00:00:00.000000Z"' in text and '"x"' in text and "[\n" in text
