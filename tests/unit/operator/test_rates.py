"""Failure ratio over a window from RQ's per-worker counters."""

from __future__ import annotations

from taskqueue_operator.observation import QueueStats, RedisObservation, WorkerInfo
from taskqueue_operator.rates import OutcomeWindow


def observe(t: float, *workers: tuple[str, int, int, str]) -> RedisObservation:
    return RedisObservation(
        t,
        (QueueStats("q"),),
        tuple(
            WorkerInfo(
                name, "busy", "pod", successful_job_count=ok, failed_job_count=bad, birth=birth
            )
            for name, ok, bad, birth in workers
        ),
    )


OLD = "2020-01-01T00:00:00Z"


def test_deltas_not_lifetime_totals() -> None:
    window = OutcomeWindow()
    window.update(observe(1000.0, ("a", 500, 500, OLD)))  # history before us: ignored
    assert window.failure_ratio() is None
    window.update(observe(1001.0, ("a", 509, 501, OLD)))
    assert window.failure_ratio() == 0.1


def test_new_worker_counts_from_zero_and_resets_are_baselines() -> None:
    window = OutcomeWindow()
    window.update(observe(1000.0, ("a", 0, 0, OLD)))
    window.update(observe(1001.0, ("a", 3, 0, OLD), ("b", 0, 1, "2027-01-01T00:00:00Z")))
    assert window.failure_ratio() == 0.25
    window.update(observe(1002.0, ("a", 1, 0, OLD)))  # counter went back: no negative counts
    assert window.failure_ratio() == 0.25


def test_old_outcomes_leave_the_window() -> None:
    window = OutcomeWindow(window=60)
    window.update(observe(1000.0, ("a", 0, 0, OLD)))
    window.update(observe(1001.0, ("a", 0, 2, OLD)))
    window.update(observe(1100.0, ("a", 4, 2, OLD)))
    assert window.failure_ratio() == 0.0
