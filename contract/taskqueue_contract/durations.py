"""Durations: parsed as Kubernetes users write them, printed as kubectl prints ages.

Go style (``90s``, ``1m30s``, ``500ms``, ``2h``) is what the CRD accepts
(`DURATION_PATTERN`); command lines also take bare seconds (``90``) and days (``7d``).
"""

from __future__ import annotations

import math
import re

# Go's time.ParseDuration units we accept (no ns/us: nobody schedules jobs in them).
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
"""The CRD's pattern: Go's units from ms to h, concatenated."""
_DURATION = re.compile(DURATION_PATTERN)
_COMMAND_LINE = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$")
_BARE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
HINT = "use forms like 30s, 5m, 1h30m, 500ms"


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string (the CRD's form); ValueError names the input."""
    if not _DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}: {HINT}")
    return _sum(text)


def parse_seconds(text: str) -> float:
    """Command-line form: a Go-style duration, ``7d``, or bare seconds (``90``)."""
    raw = text.strip()
    if _BARE.match(raw):
        return float(raw)
    if not _COMMAND_LINE.match(raw):
        raise ValueError(f"invalid duration {text!r}: seconds or {HINT}, 7d")
    return _sum(raw)


def whole_seconds(seconds: float) -> int:
    """Rounded up: a timeout or TTL of 1.5 s must not become 1 s."""
    return math.ceil(seconds)


def _sum(text: str) -> float:
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest Go-style string that parses back to `seconds` (messages, defaults)."""
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


def human_duration(seconds: float) -> str:
    """kubectl's age format: 45s, 12m, 3h5m, 2d4h, 400d (negative counts as 0)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 10:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    if days < 8:
        return f"{days}d{hours}h" if hours else f"{days}d"
    return f"{days}d"
