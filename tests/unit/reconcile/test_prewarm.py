"""The pre-warm window of a schedule: from one lead before its slot to its run's success."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from taskqueue_operator.api.models import ScheduleSpec
from taskqueue_operator.reconcile.prewarm import (
    DEFAULT_POD_START_SECONDS,
    HOLD_AFTER_SLOT_SECONDS,
    MARGIN_SECONDS,
    Prewarm,
    ScheduleRuns,
    lead_seconds,
    prewarm,
    schedule_runs,
)

SLOT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
POLL = 1.0
POD_START = 1.5
LEAD = POD_START + POLL + MARGIN_SECONDS


def schedule(name: str = "ingest", cron: str = "0 9 * * *", **fields: Any) -> ScheduleSpec:
    return ScheduleSpec(name=name, schedule=cron, function="tasks.ingest.run", **fields)


def warm(
    now: float,
    *schedules: ScheduleSpec,
    runs: dict[str, ScheduleRuns] | None = None,
    pod_start: float | None = POD_START,
) -> Prewarm:
    return prewarm(schedules or (schedule(),), runs or {}, now, pod_start, POLL)


def stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_lead_is_a_pod_start_a_poll_and_a_margin() -> None:
    assert lead_seconds(POD_START, POLL) == LEAD
    assert lead_seconds(None, 2.0) == DEFAULT_POD_START_SECONDS + 2.0 + MARGIN_SECONDS


def test_before_the_window_nothing_is_held_and_the_loop_wakes_when_it_opens() -> None:
    result = warm(SLOT - LEAD - 10)
    assert result.workers == 0 and result.reason is None
    assert result.wake_at == SLOT - LEAD


def test_one_lead_before_the_slot_the_workers_are_held_and_the_reason_names_the_slot() -> None:
    result = warm(SLOT - LEAD, schedule(prewarm_workers=3))
    assert result.workers == 3
    assert result.reason == "pre-warm for schedule ingest at 09:00:00 UTC"
    assert result.wake_at == SLOT + HOLD_AFTER_SLOT_SECONDS


def test_the_reason_tells_the_slot_in_the_schedules_time_zone() -> None:
    berlin = schedule(time_zone="Europe/Berlin", cron="0 10 * * *")  # 09:00 UTC in March
    assert warm(SLOT - 1, berlin).reason == "pre-warm for schedule ingest at 10:00:00 Europe/Berlin"


def test_the_window_lasts_until_the_slots_run_succeeded() -> None:
    running = {"ingest": ScheduleRuns(last_schedule=SLOT)}
    assert warm(SLOT + 5, runs=running).workers == 1
    done = {"ingest": ScheduleRuns(last_schedule=SLOT, last_successful=SLOT + 3)}
    result = warm(SLOT + 5, runs=done)
    assert result.workers == 0
    assert result.wake_at == SLOT + 86400 - LEAD, "the next day's window"


def test_a_success_of_an_earlier_run_does_not_close_the_window() -> None:
    earlier = {"ingest": ScheduleRuns(last_schedule=SLOT - 86400, last_successful=SLOT - 86390)}
    assert warm(SLOT + 5, runs=earlier).workers == 1


def test_a_run_that_never_succeeds_lets_go_a_bounded_time_after_the_slot() -> None:
    assert warm(SLOT + HOLD_AFTER_SLOT_SECONDS - 0.1).workers == 1
    assert warm(SLOT + HOLD_AFTER_SLOT_SECONDS).workers == 0


def test_without_a_measured_pod_start_the_lead_is_the_default() -> None:
    default_lead = lead_seconds(None, POLL)
    assert warm(SLOT - default_lead, pod_start=None).workers == 1
    assert warm(SLOT - default_lead - 0.1, pod_start=None).workers == 0


def test_zero_turns_it_off_and_a_suspended_schedule_needs_no_workers() -> None:
    assert warm(SLOT - 1, schedule(prewarm_workers=0)) == Prewarm()
    assert warm(SLOT - 1, schedule(suspend=True)) == Prewarm()


def test_schedules_due_together_add_up_and_the_earliest_change_wakes_the_loop() -> None:
    a = schedule("a", prewarm_workers=2)
    b = schedule("b", cron="1 9 * * *")
    result = warm(SLOT - 1, a, b)
    assert result.workers == 2
    assert result.wake_at == SLOT + 60 - LEAD, "b's window opens before a's closes"
    both = warm(SLOT + 60 - 1, a, b)
    assert both.workers == 3
    assert both.reason == (
        "pre-warm for schedule a at 09:00:00 UTC; pre-warm for schedule b at 09:01:00 UTC"
    )


def test_every_counts_from_the_cronjob_and_waits_for_one() -> None:
    every = schedule(cron="@every 30s")
    assert warm(SLOT, every) == Prewarm(), "no CronJob yet: no anchor, no slot"
    created = {"ingest": ScheduleRuns(created=SLOT)}
    assert warm(SLOT + 30 - LEAD, every, runs=created).workers == 1
    assert warm(SLOT + 30 - LEAD - 0.1, every, runs=created).workers == 0
    ran = {"ingest": ScheduleRuns(created=SLOT, last_schedule=SLOT + 30, last_successful=SLOT + 32)}
    result = warm(SLOT + 33, every, runs=ran)
    assert result.workers == 0 and result.wake_at == SLOT + 60 - LEAD


def test_runs_are_read_from_the_cronjobs_metadata_and_status() -> None:
    cronjob = {
        "metadata": {"creationTimestamp": stamp(SLOT - 100)},
        "status": {"lastScheduleTime": stamp(SLOT), "lastSuccessfulTime": stamp(SLOT + 2)},
    }
    assert schedule_runs(cronjob) == ScheduleRuns(
        created=SLOT - 100, last_schedule=SLOT, last_successful=SLOT + 2
    )
    assert schedule_runs({"metadata": {}}) == ScheduleRuns()
    assert schedule_runs(None) == ScheduleRuns()
    assert schedule_runs(cronjob).anchor == SLOT
    assert ScheduleRuns(created=SLOT - 100).anchor == SLOT - 100
