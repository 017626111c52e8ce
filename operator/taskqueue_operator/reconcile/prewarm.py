"""Workers up before a schedule fires. Pure.

We own the schedules, so we know every slot. A schedule's batch would otherwise wait a
pod start (the pool at minReplicas 0 wakes only on the first job), so each schedule
holds `prewarmWorkers` workers from one lead before its slot until the slot's run has
succeeded (its CronJob's `lastSuccessfulTime` reaches the slot), at most
`HOLD_AFTER_SLOT_SECONDS` after the slot. Then the jobs it enqueued keep the workers they
need and the usual scale-down lets the others go.

lead = measured pod start (median; `DEFAULT_POD_START_SECONDS` until one is measured)
+ the poll interval (the tick that sees the window open may come that late) + a margin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from taskqueue_contract import timestamps

from taskqueue_operator.api.models import ScheduleSpec
from taskqueue_operator.reconcile.slots import DEFAULT_TIME_ZONE, next_slot

DEFAULT_POD_START_SECONDS = 5.0
"""Assumed until a pod start is measured. Longer than the policy's estimate on purpose:
a worker up a few seconds early costs seconds of a pod, one up late costs the batch a
pod start."""
MARGIN_SECONDS = 1.0
HOLD_AFTER_SLOT_SECONDS = 60.0
"""A slot whose run never succeeds (skipped, failed, the controller late) lets go then."""
_MAX_SLOTS = 1000
"""Slots one schedule's window may hold (`@every 1s`: about 70)."""


@dataclass(frozen=True)
class ScheduleRuns:
    """What a schedule's CronJob tells of its runs (epoch seconds)."""

    created: float | None = None
    last_schedule: float | None = None
    last_successful: float | None = None

    @property
    def anchor(self) -> float | None:
        """Where `@every` counts from, as the CronJob controller does."""
        return self.last_schedule if self.last_schedule is not None else self.created


def schedule_runs(cronjob: Mapping[str, Any] | None) -> ScheduleRuns:
    if cronjob is None:
        return ScheduleRuns()
    status = cronjob.get("status") or {}
    return ScheduleRuns(
        created=timestamps.epoch((cronjob.get("metadata") or {}).get("creationTimestamp")),
        last_schedule=timestamps.epoch(status.get("lastScheduleTime")),
        last_successful=timestamps.epoch(status.get("lastSuccessfulTime")),
    )


@dataclass(frozen=True)
class Prewarm:
    workers: int = 0
    """Workers to hold now, the sum over the schedules whose window is open."""
    reason: str | None = None
    wake_at: float | None = None
    """The next moment the answer changes (a window opens or closes), if any."""


def lead_seconds(pod_start: float | None, poll_interval: float) -> float:
    start = DEFAULT_POD_START_SECONDS if pod_start is None else pod_start
    return start + poll_interval + MARGIN_SECONDS


def _at(slot: float, time_zone: str | None) -> str:
    zone = time_zone or DEFAULT_TIME_ZONE
    return f"{datetime.fromtimestamp(slot, ZoneInfo(zone)):%H:%M:%S} {zone}"


def _window(
    schedule: ScheduleSpec, runs: ScheduleRuns, now: float, lead: float
) -> tuple[float | None, float | None]:
    """(the slot whose window is open now, or None; when this schedule's answer changes)."""
    slot = next_slot(
        schedule.schedule, schedule.time_zone, now - HOLD_AFTER_SLOT_SECONDS, runs.anchor
    )
    for _ in range(_MAX_SLOTS):
        if slot is None:
            return None, None
        if slot > now:  # the next slot: open one lead before it
            opens = slot - lead
            return (slot, slot + HOLD_AFTER_SLOT_SECONDS) if opens <= now else (None, opens)
        succeeded = runs.last_successful is not None and runs.last_successful >= slot
        if not succeeded:
            return slot, slot + HOLD_AFTER_SLOT_SECONDS
        slot = next_slot(schedule.schedule, schedule.time_zone, slot, runs.anchor)
    return None, None


def prewarm(
    schedules: Iterable[ScheduleSpec],
    runs: Mapping[str, ScheduleRuns],
    now: float,
    pod_start: float | None,
    poll_interval: float,
) -> Prewarm:
    """How many workers the schedules need held at `now`, and why. `runs` is keyed by
    schedule name."""
    lead = lead_seconds(pod_start, poll_interval)
    workers, reasons, changes = 0, [], []
    for schedule in schedules:
        if schedule.suspend or not schedule.prewarm_workers:
            continue
        slot, change = _window(schedule, runs.get(schedule.name, ScheduleRuns()), now, lead)
        if change is not None:
            changes.append(change)
        if slot is not None:
            workers += schedule.prewarm_workers
            reasons.append(
                f"pre-warm for schedule {schedule.name} at {_at(slot, schedule.time_zone)}"
            )
    return Prewarm(
        workers=workers,
        reason="; ".join(reasons) or None,
        wake_at=min(changes, default=None),
    )
