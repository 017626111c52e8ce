"""Dead-letter selection: durations, exclusive selectors, matching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from taskqueue_plugin.errors import EXIT_USAGE, UsageError
from taskqueue_plugin.records import JobRecord
from taskqueue_plugin.selectors import Selector, build_selector, parse_age

NOW = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h30m", 5400),
        ("7d", 7 * 86400),
        ("2w", 14 * 86400),
        ("500ms", 0.5),
        ("1.5h", 5400),
        (" 10m ", 600),
    ],
)
def test_parse_age(text: str, seconds: float) -> None:
    assert parse_age(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "-5m", "1h 30m", "7 days", "1e3s"])
def test_malformed_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration") as caught:
        parse_age(text)
    assert caught.value.code == EXIT_USAGE


def test_a_selection_is_required_and_exclusive() -> None:
    with pytest.raises(UsageError, match="say which failed jobs"):
        build_selector(False, [], None, None)
    with pytest.raises(UsageError, match="one of"):
        build_selector(True, ["a"], None, None)
    with pytest.raises(UsageError, match="one of"):
        build_selector(True, [], "1h", None)
    with pytest.raises(UsageError, match="one of"):
        build_selector(False, ["a"], None, "Timeout")
    with pytest.raises(UsageError, match="non-empty"):
        build_selector(False, [], None, "")
    assert build_selector(False, ["a", "b", "a"], None, None).ids == ("a", "b")
    both = build_selector(False, [], "1h", "Timeout")
    assert both.older_than == 3600 and both.exception == "Timeout"


def record(job_id: str, failed_ago: float | None, exc: str | None) -> JobRecord:
    ended = NOW - timedelta(seconds=failed_ago) if failed_ago is not None else None
    return JobRecord(id=job_id, exists=True, ended_at=ended, exc_text=exc)


def test_filters_are_anded() -> None:
    old_timeout = record("a", 7200, "Traceback...\nJobTimeoutException: took too long")
    new_timeout = record("b", 60, "Traceback...\nJobTimeoutException: took too long")
    old_other = record("c", 7200, "Traceback...\nValueError: bad")
    unknown_time = record("d", None, "JobTimeoutException")
    selector = Selector(older_than=3600, exception="JobTimeoutException")
    assert [
        r.id
        for r in (old_timeout, new_timeout, old_other, unknown_time)
        if selector.matches(r, NOW)
    ] == ["a"]


def test_exception_matches_the_whole_traceback_case_sensitively() -> None:
    r = record("a", 10, 'File "tasks/ingest.py", line 3\nRuntimeError: upstream 503')
    assert Selector(exception="tasks/ingest.py").matches(r, NOW)
    assert not Selector(exception="runtimeerror").matches(r, NOW)
    assert not Selector(exception="x").matches(record("b", 10, None), NOW)


def test_all_and_ids() -> None:
    r = record("a", None, None)
    assert Selector(all=True).matches(r, NOW)
    assert Selector(ids=("a",)).matches(r, NOW)
    assert not Selector(ids=("b",)).matches(r, NOW)


def test_describe() -> None:
    assert Selector(all=True).describe() == "all failed jobs"
    assert Selector(ids=("a", "b")).describe() == "2 job id(s)"
    text = Selector(older_than=60, exception="Boom").describe()
    assert "60s" in text and "'Boom'" in text
