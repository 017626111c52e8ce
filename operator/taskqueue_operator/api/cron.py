"""A strict pattern for the cron expressions Kubernetes CronJobs accept.

The API server only parses a schedule when it validates a CronJob, which happens after
our TaskQueue was accepted. So the CRD carries its own pattern: five fields with value
ranges per field (minute 0-59, hour 0-23, day 1-31, month 1-12 or JAN-DEC, weekday 0-7
or SUN-SAT), lists, ranges, steps, ``?`` in day fields, and the ``@daily``-style macros.
The same regular expression runs in Python (RE2 and Python agree on this subset).
"""

from __future__ import annotations

import re

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_WEEKDAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"


def _field(value: str, question_mark: bool = False) -> str:
    item = rf"(\*|({value})(-({value}))?)(/[1-9][0-9]?)?"
    listing = rf"{item}(,{item})*"
    return rf"(\?|{listing})" if question_mark else listing


_FIELDS = [
    _field(r"[0-5]?[0-9]"),  # minute
    _field(r"[01]?[0-9]|2[0-3]"),  # hour
    _field(r"0?[1-9]|[12][0-9]|3[01]", question_mark=True),  # day of month
    _field(rf"0?[1-9]|1[0-2]|{_MONTHS}"),  # month
    _field(rf"[0-7]|{_WEEKDAYS}", question_mark=True),  # day of week
]
_MACROS = "@(yearly|annually|monthly|weekly|daily|midnight|hourly)"

# Global flags first: Python requires it, and RE2 (the API server) accepts the same string.
CRON_PATTERN = "(?i)^(" + _MACROS + "|" + r"[ \t]+".join(_FIELDS) + ")$"
_CRON = re.compile(CRON_PATTERN)


def is_valid_cron(expression: str) -> bool:
    """True for a schedule the CronJob controller will accept."""
    return bool(_CRON.match(expression))
