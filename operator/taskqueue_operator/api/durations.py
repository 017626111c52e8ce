"""Durations as Kubernetes users write them (Go style: ``90s``, ``1m30s``, ``500ms``, ``2h``).

The CRD accepts the same strings with a pattern; parsing here gives seconds as float.
"""

from __future__ import annotations

import re

# Go's time.ParseDuration units we accept (no ns/us: nobody schedules jobs in them).
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string; ValueError names the bad input."""
    if not _DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}: use forms like 30s, 5m, 1h30m, 500ms")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest Go-style string for whole seconds (used in messages and defaults)."""
    whole = int(seconds)
    if whole != seconds:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"
