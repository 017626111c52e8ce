"""The cron expressions Kubernetes CronJobs accept, as one pattern plus one range rule.

The API server only parses a schedule when it validates a CronJob, which happens after
our TaskQueue was accepted. So the CRD carries the same grammar as kube-apiserver 1.34
(`cron.ParseStandard` of github.com/robfig/cron/v3 v3.0.1):

- five fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of
  week 0-6 or SUN-SAT (robfig's bounds: `7` is refused), names case-insensitive, numbers
  may carry leading zeros;
- each field a comma list of `*`, `?` (robfig takes it as `*` in any field), `N` or `N-M`,
  each optionally `/step` with step >= 1 (`N/step` means N to the field's maximum);
- a range must not be reversed: `30-10` is refused ("beginning of range beyond end");
- or a descriptor, case-sensitive: @yearly @annually @monthly @weekly @daily @midnight
  @hourly, and `@every <Go duration>` (e.g. `@every 1h30m`).

Stricter than robfig on purpose (kept simple, never looser): separators are spaces/tabs,
empty list items (`1,,2`) and `*-5` are refused, `@every` takes no sign.

`CRON_PATTERN` and `REVERSED_RANGE_PATTERN` run in Python and in the API server's RE2
(the same subset); `_ranges_ascend` states what the second one means, by value.
"""

from __future__ import annotations

import re

_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
NAME_VALUES = {name: i + 1 for i, name in enumerate(_MONTH_NAMES)} | {
    name: i for i, name in enumerate(_DAY_NAMES)
}
_MONTHS = "(?i:" + "|".join(_MONTH_NAMES) + ")"
_WEEKDAYS = "(?i:" + "|".join(_DAY_NAMES) + ")"
_STEP = r"/0*[1-9][0-9]{0,8}"


def _field(value: str) -> str:
    item = rf"(\*|\?|({value})(-({value}))?)({_STEP})?"
    return rf"{item}(,{item})*"


_FIELDS = [
    _field(r"0*[1-5]?[0-9]"),  # minute
    _field(r"0*(1?[0-9]|2[0-3])"),  # hour
    _field(r"0*([1-9]|[12][0-9]|3[01])"),  # day of month
    _field(rf"0*([1-9]|1[0-2])|{_MONTHS}"),  # month
    _field(rf"0*[0-6]|{_WEEKDAYS}"),  # day of week
]
_GO_DURATION = r"(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+"
_MACROS = rf"@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every {_GO_DURATION}"

CRON_PATTERN = "^(" + _MACROS + "|[ \t]*" + "[ \t]+".join(_FIELDS) + "[ \t]*)$"
_CRON = re.compile(CRON_PATTERN)
_RANGE = re.compile(r"[0-9A-Za-z]+-[0-9A-Za-z]+")


def _below(n: int) -> str:
    """A regex for the numbers 0..n (n < 100), without leading zeros."""
    if n < 10:
        return f"[0-{n}]"
    tens, ones = divmod(n, 10)
    parts = ["[0-9]"]
    if tens > 1:
        parts.append(f"[1-{tens - 1}][0-9]")
    parts.append(f"{tens}[0-{ones}]")
    return "|".join(parts)


def _names(value_range: range) -> list[str]:
    return [name for name, value in NAME_VALUES.items() if value in value_range]


def _reversed_pattern() -> str:
    """A range `a-b` with a > b, by value: every a (a number 1..59 or a name) followed by
    any b of a smaller value. Field bounds and where names may stand are the shape
    pattern's job; values agree across fields, so one pattern serves all five."""
    alternatives = []
    for value in range(1, 60):
        high = [f"0*{value}", *_names(range(value, value + 1))]
        low = [f"0*({_below(value - 1)})", *_names(range(value))]
        alternatives.append(f"({'|'.join(high)})-({'|'.join(low)})")
    return r"(?i)(^|[ \t,])(" + "|".join(alternatives) + r")([ \t,/]|$)"


# A regex rather than CEL arithmetic over the tokens: the API server's cost estimate of
# a comprehension over 64 schedules' tokens exceeds its budget; a match does not.
REVERSED_RANGE_PATTERN = _reversed_pattern()
CRON_RANGE_RULE = f"!self.matches(r'{REVERSED_RANGE_PATTERN}')"
_REVERSED = re.compile(REVERSED_RANGE_PATTERN)


def _value(token: str) -> int:
    return int(token) if token.isdigit() else NAME_VALUES[token.lower()]


def _ranges_ascend(expression: str) -> bool:
    """By token values (the rule's meaning, checked against the pattern by a unit test)."""
    if expression.startswith("@"):
        return True
    for found in _RANGE.findall(expression):
        low, high = found.split("-")
        if _value(low) > _value(high):
            return False
    return True


def cron_error(expression: str) -> str | None:
    """Why a CronJob would refuse this schedule, or None when it is accepted."""
    if not _CRON.match(expression):
        return (
            "must be a cron expression with 5 fields (minute 0-59, hour 0-23, day 1-31, "
            "month 1-12 or JAN-DEC, weekday 0-6 or SUN-SAT, e.g. '0 9 * * *') or a macro "
            "such as @daily or @every 1h"
        )
    if _REVERSED.search(expression):
        return "has a range whose start is after its end (e.g. 30-10): write it low-high"
    return None


def is_valid_cron(expression: str) -> bool:
    """True for a schedule the CronJob controller will accept."""
    return cron_error(expression) is None
