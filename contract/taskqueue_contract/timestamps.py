"""Timestamps as RQ and Kubernetes write them, parsed to aware UTC datetimes.

RQ writes ``utcformat``: ``2024-05-01T10:00:00.123456Z`` (older rq: no ``Z``, naive UTC).
Kubernetes writes RFC 3339: ``2024-05-01T10:00:00Z`` (Time) and
``2024-05-01T10:00:00.123456Z`` (MicroTime, e.g. a Lease's renewTime); its Python client
hands out datetimes. Everything without a zone is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse(value: str | bytes | datetime | None) -> datetime | None:
    """An aware UTC datetime; None for None, ``""`` and anything unparsable."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raw = value.decode(errors="replace") if isinstance(value, bytes) else value
    raw = raw.strip()
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def epoch(value: str | bytes | datetime | None) -> float | None:
    """Seconds since the epoch, or None (as `parse`)."""
    moment = parse(value)
    return None if moment is None else moment.timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def now() -> datetime:
    return datetime.now(UTC)


def format_kubernetes(moment: datetime | float) -> str:
    """Kubernetes' Time (whole seconds, ``Z``): conditions, status times."""
    value = from_epoch(moment) if isinstance(moment, int | float) else moment
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro(moment: datetime | float) -> str:
    """Microseconds and ``Z``: RQ's utcformat, and Kubernetes' MicroTime (Leases)."""
    value = from_epoch(moment) if isinstance(moment, int | float) else moment
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
