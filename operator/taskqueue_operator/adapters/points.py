"""The dashboard's points of one TaskQueue, kept in columns of doubles.

An hour of 1 s points as dicts cost 1.2 MB per TaskQueue (a thousand TaskQueues: 1.2 GB
after an hour, bench/many_taskqueues.py); eight `array('d')` columns hold the same in
230 KB. A point goes in and comes out as the dict the dashboard serves; `None` is kept as
NaN (no figure here is NaN otherwise), whole numbers come back as ints.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

FIELDS = (
    "t",
    "pending",
    "running",
    "workers",
    "desired",
    "ready",
    "finishedPerMinute",
    "failedPerMinute",
)
_FLOATS = frozenset({"t", "finishedPerMinute", "failedPerMinute"})
_MISSING = math.nan


def _stored(value: Any) -> float:
    return _MISSING if value is None else float(value)


def _served(field: str, value: float) -> float | int | None:
    if math.isnan(value):
        return None
    return value if field in _FLOATS else int(value)


class PointLog:
    """At most `maxlen` points, oldest first; the oldest go when it is full."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._columns = {field: array("d") for field in FIELDS}

    def __len__(self) -> int:
        return len(self._columns["t"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {field: _served(field, column[index]) for field, column in self._columns.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[index] for index in range(len(self)))

    def append(self, point: dict[str, Any]) -> None:
        for field, column in self._columns.items():
            column.append(_stored(point.get(field)))
        excess = len(self) - self.maxlen
        if excess > 0:
            for column in self._columns.values():
                del column[:excess]

    def extendleft(self, points: Iterable[dict[str, Any]]) -> None:
        """As deque.extendleft: each point goes in front of the previous one (pass them
        newest first); the newest points are kept when it overflows."""
        older = list(points)[::-1]
        for field, column in self._columns.items():
            column[:0] = array("d", (_stored(p.get(field)) for p in older))
        excess = len(self) - self.maxlen
        if excess > 0:
            for column in self._columns.values():
                del column[:excess]
