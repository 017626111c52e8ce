"""Plain-text tables and JSON, the way kubectl prints them. Pure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, three spaces apart, upper-case headers; '' for no rows."""
    cells = [[str(h).upper() for h in headers]] + [
        ["<none>" if value is None else str(value) for value in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def truncate(value: str | None, width: int) -> str | None:
    if value is None or len(value) <= width:
        return value
    return value[: max(1, width - 3)] + "..."


def human_duration(seconds: float) -> str:
    """kubectl's age format: 45s, 12m, 3h5m, 2d4h, 400d."""
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


def ago(moment: datetime | None, now: datetime) -> str | None:
    if moment is None:
        return None
    return f"{human_duration((now - moment).total_seconds())} ago"


def iso(moment: datetime | None) -> str | None:
    """UTC with microseconds and a Z, as RQ writes its timestamps."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def progress_bar(fraction: float | None, width: int = 10) -> str:
    if fraction is None:
        return "-"
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction * 100:5.1f}%"


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)
