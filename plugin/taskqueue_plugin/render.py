"""Plain-text tables and JSON, the way kubectl prints them. Pure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from taskqueue_contract import timestamps
from taskqueue_contract.durations import human_duration

__all__ = ["ago", "human_duration", "iso", "table", "to_json", "truncate"]


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


def ago(moment: datetime | None, now: datetime) -> str | None:
    if moment is None:
        return None
    return f"{human_duration((now - moment).total_seconds())} ago"


def iso(moment: datetime | None) -> str | None:
    """UTC with microseconds and a Z, as RQ writes its timestamps."""
    if moment is None:
        return None
    return timestamps.format_micro(moment)


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
