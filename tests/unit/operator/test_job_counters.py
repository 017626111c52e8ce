"""Finished / failed job counters per queue: monotonic whatever the workers and registries do."""

from __future__ import annotations

from dataclasses import replace

from taskqueue_contract import timestamps
from taskqueue_operator.observation import QueueStats, RedisObservation, WorkerInfo
from taskqueue_operator.rates import JobCounters

OLD = "1970-01-01T00:00:00Z"  # long before the observations (t = 1000 s)


def iso(t: float) -> str:
    return timestamps.format_micro(t)


def worker(
    name: str, ok: int, bad: int, birth: str = OLD, queues: tuple[str, ...] = ("q",), **kw: object
) -> WorkerInfo:
    return WorkerInfo(
        name,
        "idle",
        "pod",
        queues=queues,
        successful_job_count=ok,
        failed_job_count=bad,
        birth=birth,
        **kw,  # type: ignore[arg-type]
    )


def observe(
    t: float, *workers: WorkerInfo, departed: tuple[WorkerInfo, ...] = (), finished: int = 0
) -> RedisObservation:
    return RedisObservation(t, (QueueStats("q", finished=finished),), workers, departed=departed)


def totals(counters: JobCounters) -> tuple[dict[str, int], dict[str, int]]:
    return dict(counters.finished), dict(counters.failed)


def test_history_before_the_first_look_is_not_counted_but_the_series_start_at_zero() -> None:
    counters = JobCounters()
    counters.update(observe(1000.0, worker("a", 500, 7)))
    assert totals(counters) == ({"q": 0}, {"q": 0})
    counters.update(observe(1001.0, worker("a", 503, 8)))
    assert totals(counters) == ({"q": 3}, {"q": 1})


def test_a_restarted_worker_is_a_new_hash_counted_from_zero() -> None:
    counters = JobCounters()
    counters.update(observe(1000.0, worker("a", 10, 0)))
    counters.update(observe(1001.0, worker("a", 12, 0)))
    # a's pod restarted: a new worker, born after the last look, already ran 2 jobs.
    counters.update(observe(1002.0, worker("b", 2, 1, birth=iso(1001.5))))
    assert totals(counters) == ({"q": 4}, {"q": 1})
    # And one born before our first look, seen later, counts from its current value.
    counters.update(observe(1003.0, worker("b", 3, 1, birth=iso(1001.5)), worker("c", 99, 9)))
    assert totals(counters) == ({"q": 5}, {"q": 1})


def test_a_worker_reusing_a_name_restarts_from_zero() -> None:
    counters = JobCounters()
    counters.update(observe(1000.0, worker("pod-0", 0, 0)))
    counters.update(observe(1001.0, worker("pod-0", 5, 0)))
    counters.update(observe(1002.0, worker("pod-0", 1, 0, birth=iso(1001.5))))  # lower
    counters.update(observe(1003.0, worker("pod-0", 8, 0, birth=iso(1002.5))))  # other birth
    assert totals(counters) == ({"q": 5 + 1 + 8}, {"q": 0})


def test_registry_expiry_changes_nothing() -> None:
    """The finished registry emptying (result_ttl) or never filling (result_ttl=0) is not
    a count: only the workers' counters are."""
    counters = JobCounters()
    counters.update(observe(1000.0, worker("a", 0, 0), finished=400))
    counters.update(observe(1001.0, worker("a", 3, 0), finished=0))
    assert counters.finished == {"q": 3}


def test_a_departed_worker_is_counted_a_last_time_then_forgotten() -> None:
    counters = JobCounters()
    counters.update(observe(1000.0, worker("a", 0, 0), worker("b", 0, 0)))
    counters.update(observe(1001.0, worker("a", 1, 0), worker("b", 1, 0)))
    # b was scaled down: its warm shutdown finished two more jobs, then it unregistered.
    last = replace(worker("b", 3, 0), dead=True)
    counters.update(observe(1002.0, worker("a", 1, 0), departed=(last,)))
    assert counters.finished == {"q": 1 + 1 + 2}
    assert set(counters.workers) == {"a"}
    counters.update(observe(1003.0, worker("a", 1, 0), departed=(last,)))  # still in Redis
    assert counters.finished == {"q": 4}


def test_a_dead_worker_still_listed_counts_once() -> None:
    counters = JobCounters()
    counters.update(observe(1000.0, worker("a", 0, 0)))
    dead = replace(worker("a", 2, 1), dead=True)
    counters.update(observe(1001.0, dead))
    counters.update(observe(1002.0, dead))
    assert totals(counters) == ({"q": 2}, {"q": 1})


def test_per_queue_and_multi_queue_workers() -> None:
    counters = JobCounters()
    counters.update(
        observe(
            1000.0, worker("a", 0, 0, queues=("high",)), worker("b", 0, 0, queues=("high", "low"))
        )
    )
    counters.update(
        observe(
            1001.0, worker("a", 4, 1, queues=("high",)), worker("b", 2, 0, queues=("high", "low"))
        )
    )
    assert totals(counters) == ({"high": 4, "high,low": 2}, {"high": 1, "high,low": 0})
    assert counters.queues() == ["high", "high,low"]


def test_never_decreases() -> None:
    """Whatever the workers report, in any order, no total ever goes down."""
    import random

    rng = random.Random(7)
    counters = JobCounters()
    previous = 0
    for step in range(300):
        t = 1000.0 + step
        workers = tuple(
            worker(
                f"w{rng.randrange(5)}",
                rng.randrange(20),
                rng.randrange(5),
                birth=iso(t - rng.random() * 3),
            )
            for _ in range(rng.randrange(4))
        )
        counters.update(observe(t, *workers))
        now = sum(counters.finished.values()) + sum(counters.failed.values())
        assert now >= previous
        previous = now


def test_workers_born_after_the_loop_started_count_from_their_first_job() -> None:
    """A new TaskQueue: Redis was first read after its worker had run a job."""
    counters = JobCounters(last_time=1000.0)
    counters.update(observe(1010.0, worker("new", 1, 0, birth=iso(1005.0)), worker("old", 9, 9)))
    assert totals(counters) == ({"q": 1}, {"q": 0})


def test_the_taskqueues_own_label_exists_at_zero_before_any_worker() -> None:
    counters = JobCounters(last_time=1000.0)
    counters.declare("high,low")
    counters.update(observe(1001.0))
    assert totals(counters) == ({"high,low": 0}, {"high,low": 0})
    counters.update(observe(1002.0, worker("w", 1, 0, birth=iso(1001.5), queues=("high", "low"))))
    assert totals(counters) == ({"high,low": 1}, {"high,low": 0})
