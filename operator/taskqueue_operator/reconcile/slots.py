"""When a schedule's CronJob fires: its next slot, as Kubernetes' CronJob controller
computes it (robfig/cron v3 `ParseStandard`, kube-controller-manager 1.34). Pure.

croniter iterates the five fields; what Kubernetes does differently is fixed here:

- descriptors are robfig's: @yearly/@annually `0 0 1 1 *`, @monthly `0 0 1 * *`,
  @weekly `0 0 * * 0`, @daily/@midnight `0 0 * * *`, @hourly `0 * * * *`;
- day of month and day of week: robfig ANDs them when either field carries its "star
  bit" (a list item `*` or `?` without a step above 1: `*`, `?`, `*/1`, `*,5`), and ORs
  them otherwise. croniter decides by its own reading (it ORs `*/1`), so the rule is
  given to it explicitly (`day_or`). `?` is robfig's `*` in any field;
- time zones: robfig walks the schedule's local wall clock in absolute time, so a slot is
  every instant whose local time matches. A local time that does not exist (the hour
  skipped when clocks go forward) is no slot: that day's run is skipped, as Kubernetes
  skips it. A local time that happens twice (clocks go back) is two slots. croniter runs
  on naive wall-clock times; the zone is applied here. Without `timeZone` the controller
  manager's zone applies, which is UTC on every cluster we know;
- `@every <Go duration>` is a fixed delay counted from the CronJob's
  `status.lastScheduleTime` (or its creationTimestamp before the first run), in whole
  seconds and at least 1 s, as robfig's `ConstantDelaySchedule`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

DEFAULT_TIME_ZONE = "UTC"
DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
EVERY = "@every "
_GO_DURATION_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,  # Go accepts both micro signs
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_FOLD_HORIZON = timedelta(hours=3)
"""Longer than any clock change: a slot hidden by one (a repeated local time) is this near."""
_MAX_CANDIDATES = 10_000
"""Wall-clock candidates one search may visit (a whole skipped hour of `* * * * *` is 60)."""


@dataclass(frozen=True)
class CronSchedule:
    """A five-field schedule in croniter's terms, with Kubernetes' day rule."""

    fields: str
    day_or: bool


def every_seconds(expression: str) -> int | None:
    """The delay of `@every <duration>` in whole seconds (at least 1), else None."""
    if not expression.startswith(EVERY):
        return None
    text = expression[len(EVERY) :]
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    seconds = sum(float(number) * _GO_UNIT_SECONDS[unit] for number, unit in parts)
    # robfig: `Every(d)` truncates to the second and raises anything shorter to 1 s.
    return max(1, math.floor(seconds + 1e-9))


def _has_star_bit(field: str) -> bool:
    """robfig's star bit: some list item is `*` or `?` with no step, or a step of 1."""
    for item in field.split(","):
        base, _, step = item.partition("/")
        if base in ("*", "?") and (not step or int(step) <= 1):
            return True
    return False


@lru_cache(maxsize=1024)
def cron_schedule(expression: str) -> CronSchedule:
    """The croniter form of a five-field schedule or a descriptor (not `@every`)."""
    expression = DESCRIPTORS.get(expression, expression)
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"not a five-field schedule: {expression!r}")
    day_or = not (_has_star_bit(fields[2]) or _has_star_bit(fields[4]))
    return CronSchedule(" ".join(f.replace("?", "*") for f in fields), day_or)


def _backward_jump(zone: ZoneInfo, moment: datetime) -> timedelta:
    """How far the local clock goes back within the horizon (0 when it does not)."""
    now_offset = moment.utcoffset() or timedelta(0)
    later = (moment + _FOLD_HORIZON).astimezone(zone).utcoffset() or timedelta(0)
    return max(timedelta(0), now_offset - later)


def _instants(wall: datetime, zone: ZoneInfo) -> list[float]:
    """The moments whose local time is `wall`: none in a gap, two in a repeated hour."""
    found = set()
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).timestamp()
        if datetime.fromtimestamp(instant, zone).replace(tzinfo=None, fold=0) == wall:
            found.add(instant)
    return sorted(found)


def next_cron_slot(expression: str, time_zone: str | None, after: float) -> float | None:
    """The first slot strictly after `after` (epoch seconds); None if there is none
    within croniter's search horizon (a date that never comes, like `0 0 31 2 *`)."""
    schedule = cron_schedule(expression)
    zone = ZoneInfo(time_zone or DEFAULT_TIME_ZONE)
    start = datetime.fromtimestamp(after, zone)
    # A slot in a repeated hour can lie ahead in time but behind on the wall clock: when
    # the clock is about to go back, start that far earlier and keep the earliest moment.
    margin = _backward_jump(zone, start)
    wall_start = start.replace(tzinfo=None, fold=0) - margin
    candidates = croniter(schedule.fields, wall_start, day_or=schedule.day_or)
    best: tuple[float, datetime] | None = None
    for _ in range(_MAX_CANDIDATES):
        try:
            wall: datetime = candidates.get_next(datetime)
        except CroniterBadDateError:
            return None if best is None else best[0]
        if best is not None and wall > best[1] + margin:
            break
        for instant in _instants(wall, zone):
            if instant > after and (best is None or instant < best[0]):
                best = (instant, wall)
        if best is not None and not margin:
            break
    return None if best is None else best[0]


def next_slot(
    expression: str, time_zone: str | None, after: float, anchor: float | None
) -> float | None:
    """The schedule's first slot strictly after `after`. `anchor` is the CronJob's
    lastScheduleTime, else its creationTimestamp (epoch seconds): only `@every` needs it,
    and without it (no CronJob yet) an `@every` schedule has no slot."""
    delay = every_seconds(expression)
    if delay is None:
        return next_cron_slot(expression, time_zone, after)
    if anchor is None:
        return None
    origin = float(math.floor(anchor))  # robfig drops the sub-second part
    steps = max(1, math.floor((after - origin) / delay) + 1)
    return origin + steps * delay
