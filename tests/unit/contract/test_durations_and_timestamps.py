"""One duration parser/formatter and one timestamp parser for every component."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from taskqueue_contract import durations, timestamps


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("1.5h", 5400), ("0s", 0)],
)
def test_go_style(text: str, seconds: float) -> None:
    assert durations.parse_duration(text) == seconds
    assert re.match(durations.DURATION_PATTERN, text)


@pytest.mark.parametrize("text", ["", "90", "7d", "1x", "-5s", "5 s"])
def test_go_style_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        durations.parse_duration(text)


def test_command_line_form_adds_bare_seconds_and_days() -> None:
    assert durations.parse_seconds(" 90 ") == 90
    assert durations.parse_seconds("7d") == 7 * 86400
    assert durations.parse_seconds("1h30m") == 5400
    with pytest.raises(ValueError):
        durations.parse_seconds("soon")
    assert durations.whole_seconds(0.2) == 1 and durations.whole_seconds(90.0) == 90


@pytest.mark.parametrize("seconds", [0, 1, 59, 60, 90, 3600, 3661, 0.25])
def test_format_round_trips(seconds: float) -> None:
    assert durations.parse_duration(durations.format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(-3, "0s"), (45, "45s"), (125, "2m5s"), (720, "12m"), (11100, "3h5m"), (187200, "2d4h")],
)
def test_human(seconds: float, shown: str) -> None:
    assert durations.human_duration(seconds) == shown


MOMENT = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T10:00:00.123456Z",  # rq's utcformat
        "2024-05-01T10:00:00.123456",  # older rq: naive UTC
        b"2024-05-01T10:00:00.123456Z",  # as Redis returns it
        "2024-05-01T12:00:00.123456+02:00",
        MOMENT.replace(tzinfo=None),  # the kubernetes client's naive datetimes
    ],
)
def test_parse(value: object) -> None:
    assert timestamps.parse(value) == MOMENT  # type: ignore[arg-type]


def test_parse_kubernetes_time_and_garbage() -> None:
    assert timestamps.parse("2024-05-01T10:00:00Z") == MOMENT.replace(microsecond=0)
    for garbage in (None, "", b"", "yesterday"):
        assert timestamps.parse(garbage) is None
        assert timestamps.epoch(garbage) is None
    assert timestamps.epoch("1970-01-01T00:01:00Z") == 60.0


def test_format() -> None:
    assert timestamps.format_kubernetes(MOMENT) == "2024-05-01T10:00:00Z"
    assert timestamps.format_kubernetes(0) == "1970-01-01T00:00:00Z"
    assert timestamps.format_micro(MOMENT) == "2024-05-01T10:00:00.123456Z"
    assert timestamps.parse(timestamps.format_micro(MOMENT)) == MOMENT
