"""Schedule slots as Kubernetes' CronJob controller (robfig/cron v3) computes them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from taskqueue_operator.reconcile.slots import every_seconds, next_slot

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def at(text: str, zone: str = "UTC") -> float:
    """Epoch seconds of a local time `YYYY-MM-DD HH:MM[:SS]` in `zone` (first if repeated)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def slots(expression: str, start: str, count: int, zone: str | None = None) -> list[str]:
    """The next `count` slots after `start`, as local times with the zone's abbreviation."""
    where = ZoneInfo(zone or "UTC")
    moment = at(start, zone or "UTC")
    found = []
    for _ in range(count):
        slot = next_slot(expression, zone, moment, anchor=None)
        assert slot is not None
        found.append(datetime.fromtimestamp(slot, where).strftime("%a %Y-%m-%d %H:%M %Z"))
        moment = slot
    return found


# 2026-03-02 is a Monday.
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@hourly", ["Mon 2026-03-02 01:00 UTC", "Mon 2026-03-02 02:00 UTC"]),
        ("@daily", ["Tue 2026-03-03 00:00 UTC", "Wed 2026-03-04 00:00 UTC"]),
        ("@midnight", ["Tue 2026-03-03 00:00 UTC", "Wed 2026-03-04 00:00 UTC"]),
        ("@weekly", ["Sun 2026-03-08 00:00 UTC", "Sun 2026-03-15 00:00 UTC"]),
        ("@monthly", ["Wed 2026-04-01 00:00 UTC", "Fri 2026-05-01 00:00 UTC"]),
        ("@yearly", ["Fri 2027-01-01 00:00 UTC", "Sat 2028-01-01 00:00 UTC"]),
        ("@annually", ["Fri 2027-01-01 00:00 UTC", "Sat 2028-01-01 00:00 UTC"]),
    ],
)
def test_descriptors_are_robfigs(expression: str, expected: list[str]) -> None:
    assert slots(expression, "2026-03-02 00:00", 2) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Neither field has the star bit: a day matching either runs (OR).
        (
            "0 0 1,15 * 1",
            ["Mon 2026-03-09 00:00 UTC", "Sun 2026-03-15 00:00 UTC", "Mon 2026-03-16 00:00 UTC"],
        ),
        # A full range is no star: OR with every day is every day.
        (
            "0 0 1-31 * 1",
            ["Tue 2026-03-03 00:00 UTC", "Wed 2026-03-04 00:00 UTC", "Thu 2026-03-05 00:00 UTC"],
        ),
        (
            "0 0 15 * 0-6",
            ["Tue 2026-03-03 00:00 UTC", "Wed 2026-03-04 00:00 UTC", "Thu 2026-03-05 00:00 UTC"],
        ),
        # A step above 1 clears the star bit: OR (every other day of month, or Monday).
        (
            "0 0 */2 * 1",
            ["Tue 2026-03-03 00:00 UTC", "Thu 2026-03-05 00:00 UTC", "Sat 2026-03-07 00:00 UTC"],
        ),
        # `*/1`, `*,5` and `?` keep the star bit: AND, so Mondays only (croniter ORs `*/1`).
        (
            "0 0 */1 * 1",
            ["Mon 2026-03-09 00:00 UTC", "Mon 2026-03-16 00:00 UTC", "Mon 2026-03-23 00:00 UTC"],
        ),
        (
            "0 0 *,5 * 1",
            ["Mon 2026-03-09 00:00 UTC", "Mon 2026-03-16 00:00 UTC", "Mon 2026-03-23 00:00 UTC"],
        ),
        (
            "0 0 ? * MON",
            ["Mon 2026-03-09 00:00 UTC", "Mon 2026-03-16 00:00 UTC", "Mon 2026-03-23 00:00 UTC"],
        ),
        (
            "0 0 5 * ?",
            ["Thu 2026-03-05 00:00 UTC", "Sun 2026-04-05 00:00 UTC", "Tue 2026-05-05 00:00 UTC"],
        ),
        (
            "0 0 5 * */1",
            ["Thu 2026-03-05 00:00 UTC", "Sun 2026-04-05 00:00 UTC", "Tue 2026-05-05 00:00 UTC"],
        ),
    ],
)
def test_day_of_month_and_day_of_week_follow_robfigs_star_bit(
    expression: str, expected: list[str]
) -> None:
    assert slots(expression, "2026-03-02 00:00", 3) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("05 09 * * *", ["Mon 2026-03-02 09:05 UTC", "Tue 2026-03-03 09:05 UTC"]),
        ("30/10 * * * *", ["Mon 2026-03-02 00:30 UTC", "Mon 2026-03-02 00:40 UTC"]),
        ("0 0 * jan-MAR wed", ["Wed 2026-03-04 00:00 UTC", "Wed 2026-03-11 00:00 UTC"]),
        ("? ? * * *", ["Mon 2026-03-02 00:01 UTC", "Mon 2026-03-02 00:02 UTC"]),
        ("0\t12 * * *", ["Mon 2026-03-02 12:00 UTC", "Tue 2026-03-03 12:00 UTC"]),
    ],
)
def test_field_forms_the_crd_accepts(expression: str, expected: list[str]) -> None:
    assert slots(expression, "2026-03-02 00:00", 2) == expected


def test_the_next_slot_is_strictly_after_the_moment() -> None:
    assert next_slot("*/5 * * * *", None, at("2026-03-02 10:05"), None) == at("2026-03-02 10:10")
    assert next_slot("*/5 * * * *", None, at("2026-03-02 10:04:59.9"), None) == at(
        "2026-03-02 10:05"
    )


def test_a_date_that_never_comes_has_no_slot() -> None:
    assert next_slot("0 0 31 2 *", None, at("2026-03-02 00:00"), None) is None


def test_the_schedules_time_zone_is_used() -> None:
    assert slots("0 9 * * *", "2026-03-02 00:00", 1, BERLIN) == ["Mon 2026-03-02 09:00 CET"]
    assert next_slot("0 9 * * *", BERLIN, at("2026-03-02 00:00"), None) == at("2026-03-02 08:00")


def test_a_slot_in_the_skipped_hour_is_skipped_that_day() -> None:
    # Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
    assert slots("30 2 * * *", "2026-03-28 03:00", 2, BERLIN) == [
        "Mon 2026-03-30 02:30 CEST",
        "Tue 2026-03-31 02:30 CEST",
    ]
    # Every minute: 01:59 CET, then 03:00 CEST; nothing in between.
    assert slots("* * * * *", "2026-03-29 01:58", 3, BERLIN) == [
        "Sun 2026-03-29 01:59 CET",
        "Sun 2026-03-29 03:00 CEST",
        "Sun 2026-03-29 03:01 CEST",
    ]


def test_a_repeated_local_time_is_two_slots() -> None:
    # New York, 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
    assert slots("30 1 * * *", "2026-10-31 12:00", 3, NEW_YORK) == [
        "Sun 2026-11-01 01:30 EDT",
        "Sun 2026-11-01 01:30 EST",
        "Mon 2026-11-02 01:30 EST",
    ]
    assert slots("*/20 1 * * *", "2026-11-01 00:50", 6, NEW_YORK) == [
        "Sun 2026-11-01 01:00 EDT",
        "Sun 2026-11-01 01:20 EDT",
        "Sun 2026-11-01 01:40 EDT",
        "Sun 2026-11-01 01:00 EST",
        "Sun 2026-11-01 01:20 EST",
        "Sun 2026-11-01 01:40 EST",
    ]


def test_a_repeated_slot_behind_on_the_wall_clock_is_still_next() -> None:
    # 01:45 EDT: the next 01:05 is an hour and twenty minutes away (EST), not tomorrow.
    moment = datetime(2026, 11, 1, 5, 45, tzinfo=UTC).timestamp()  # 01:45 EDT
    assert (
        next_slot("5 1 * * *", NEW_YORK, moment, None)
        == datetime(2026, 11, 1, 6, 5, tzinfo=UTC).timestamp()
    )


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("@every 30s", 30),
        ("@every 1h30m", 5400),
        ("@every 1.5s", 1),  # robfig truncates to the second
        ("@every 500ms", 1),  # and never goes below 1 s
        ("@every .5m", 30),
        ("@every 90000000000ns", 90),
        ("@daily", None),
    ],
)
def test_every_takes_go_durations(expression: str, seconds: int | None) -> None:
    assert every_seconds(expression) == seconds


def test_every_counts_from_the_last_schedule_time_or_the_creation() -> None:
    created = at("2026-03-02 10:00:00.7")  # sub-seconds dropped, as robfig does
    assert next_slot("@every 30s", None, created, created) == at("2026-03-02 10:00:30")
    assert next_slot("@every 30s", None, at("2026-03-02 10:01:10"), created) == at(
        "2026-03-02 10:01:30"
    )
    assert next_slot("@every 30s", None, at("2026-03-02 10:01:30"), created) == at(
        "2026-03-02 10:02:00"
    )
    # Before the anchor: its first slot.
    assert next_slot("@every 30s", None, at("2026-03-02 09:00"), created) == at(
        "2026-03-02 10:00:30"
    )


def test_every_without_a_cronjob_has_no_slot() -> None:
    assert next_slot("@every 30s", None, at("2026-03-02 10:00"), None) is None
