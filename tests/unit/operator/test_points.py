"""The dashboard's point columns give back the dicts they were given, in order, capped."""

from __future__ import annotations

import tracemalloc
from typing import Any

from taskqueue_operator.adapters.points import FIELDS, PointLog


def point(t: float, pending: int | None = 3, finished: float | None = 1.5) -> dict[str, Any]:
    return {
        "t": t,
        "pending": pending,
        "running": 1,
        "workers": 2,
        "desired": 4,
        "ready": 0,
        "finishedPerMinute": finished,
        "failedPerMinute": 0.0,
    }


def test_points_come_back_as_given_with_none_and_ints_kept() -> None:
    log = PointLog(maxlen=10)
    log.append(point(1.125))
    log.append(point(2.5, pending=None, finished=None))
    assert list(log) == [point(1.125), point(2.5, pending=None, finished=None)]
    assert log[-1]["pending"] is None and isinstance(log[0]["pending"], int)
    assert list(log[0]) == list(FIELDS)


def test_the_oldest_go_when_full() -> None:
    log = PointLog(maxlen=3)
    for t in range(5):
        log.append(point(float(t)))
    assert len(log) == 3 and [p["t"] for p in log] == [2.0, 3.0, 4.0]


def test_extendleft_puts_older_points_in_front_in_order() -> None:
    log = PointLog(maxlen=5)
    log.append(point(10.0))
    older = [point(7.0), point(8.0), point(9.0)]
    log.extendleft(reversed(older))  # as the deque it replaces: newest first
    assert [p["t"] for p in log] == [7.0, 8.0, 9.0, 10.0]
    log.extendleft(reversed([point(5.0), point(6.0)]))
    assert [p["t"] for p in log] == [6.0, 7.0, 8.0, 9.0, 10.0], "the newest are kept"


def test_an_hour_of_points_costs_a_fifth_of_the_dicts() -> None:
    def cost(store: Any) -> int:
        tracemalloc.start()
        for second in range(3600):
            store.append(point(1_800_000_000.0 + second, second % 50, float(second % 7) + 0.5))
        used = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return used

    assert cost(PointLog(maxlen=3600)) * 4 < cost([])
