"""The arrival-rate / service-time estimator and the latency-first demand built on it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scaling_helpers import T0, iso, obs, run, spec, worker
from taskqueue_operator.observation import RedisObservation
from taskqueue_operator.scaling.estimator import (
    ARRIVAL_TAU_SECONDS,
    SERVICE_MEMORY_JOBS,
    Estimates,
    update,
)
from taskqueue_operator.scaling.policy import ScalerState, decide


def steady(
    rate: float, service: float, ticks: int, *, pending: int = 0, workers: int = 4
) -> list[tuple[float, RedisObservation]]:
    """A queue in steady state: `rate` jobs/s complete (and arrive), each taking `service`."""
    steps = []
    for k in range(ticks):
        done = math.floor(rate * k)
        team = [
            worker(
                f"w{i}",
                busy=True,
                completed=len(range(i, done, workers)),
                working=service * len(range(i, done, workers)),
            )
            for i in range(workers)
        ]
        steps.append((float(k), obs(pending, workers, workers=team)))
    return steps


def fold(steps: list[tuple[float, RedisObservation]]) -> Estimates:
    estimates = Estimates()
    for offset, observation in steps:
        estimates = update(estimates, observation, T0 + offset)
    return estimates


# ----------------------------------------------------------------------------- estimator


def test_first_observation_is_only_a_baseline() -> None:
    estimates = update(
        Estimates(), obs(50, 3, workers=[worker("a", completed=900, working=1e4)]), T0
    )
    assert estimates.arrival_rate == 0.0
    assert estimates.service_time is None
    assert not estimates.ready
    assert estimates.load == 53


def test_per_worker_deltas_give_the_service_time() -> None:
    before = obs(workers=[worker("a", completed=10, working=100.0), worker("b", completed=5)])
    after = obs(
        workers=[
            worker("a", completed=12, failed=1, working=106.0),  # 3 jobs, 6 s
            worker("b", completed=5),
        ]
    )
    estimates = update(update(Estimates(), before, T0), after, T0 + 1)
    assert estimates.service_time == pytest.approx(2.0)
    assert estimates.completions == 3
    assert estimates.ready


def test_arrivals_are_completions_plus_load_growth() -> None:
    before = obs(4, 2, workers=[worker("a", completed=0)])
    after = obs(10, 2, workers=[worker("a", completed=3, working=3.0)])  # 3 done, load +6
    estimates = update(update(Estimates(), before, T0), after, T0 + 10)
    weight = 1 - math.exp(-10 / ARRIVAL_TAU_SECONDS)
    assert estimates.arrival_rate == pytest.approx(weight * 9 / 10)


def test_worker_born_since_the_last_poll_counts_in_full() -> None:
    before = obs(workers=[])
    after = obs(workers=[worker("new", completed=4, working=8.0, born=T0 + 0.5)])
    estimates = update(update(Estimates(), before, T0), after, T0 + 1)
    assert (estimates.completions, estimates.service_time) == (4, pytest.approx(2.0))


def test_worker_first_seen_but_born_earlier_is_only_a_baseline() -> None:
    before = obs(workers=[])
    after = obs(workers=[worker("old", completed=400, working=800.0, born=T0 - 600)])
    estimates = update(update(Estimates(), before, T0), after, T0 + 1)
    assert estimates.completions == 0
    assert estimates.arrival_rate == 0.0


def test_vanished_worker_never_makes_a_negative_rate() -> None:
    before = obs(5, 1, workers=[worker("gone", completed=10, working=10.0)])
    after = obs(0, 0, workers=[])  # its completions left with it
    estimates = update(update(Estimates(), before, T0), after, T0 + 1)
    assert estimates.arrival_rate == 0.0
    assert estimates.service_time is None


def test_counter_reset_under_the_same_name() -> None:
    before = obs(workers=[worker("a", completed=50, working=500.0)])
    reborn = obs(workers=[worker("a", completed=2, working=1.0, born=T0 + 0.2)])
    estimates = update(update(Estimates(), before, T0), reborn, T0 + 1)
    assert (estimates.completions, estimates.service_time) == (2, pytest.approx(0.5))
    stale = obs(workers=[worker("a", completed=2, working=1.0, born=T0 - 99)])
    estimates = update(update(Estimates(), before, T0), stale, T0 + 1)
    assert estimates.completions == 0


def test_any_counter_going_back_means_a_new_hash() -> None:
    before = obs(workers=[worker("a", completed=50, working=5.0)])
    after = obs(workers=[worker("a", completed=2, working=9.0, born=T0 - 99)])
    estimates = update(update(Estimates(), before, T0), after, T0 + 1)
    assert estimates.completions == 0


def test_service_time_weighs_samples_by_jobs_not_ticks() -> None:
    one = obs(workers=[worker("a", completed=1, working=1.0)])
    estimates = fold([(0.0, obs(workers=[worker("a")])), (1.0, one)])
    assert estimates.service_time == pytest.approx(1.0)
    twenty = obs(workers=[worker("a", completed=21, working=61.0)])  # 20 jobs of 3 s
    after = update(estimates, twenty, T0 + 2)
    assert after.service_time == pytest.approx(
        1.0 + (1 - math.exp(-20 / SERVICE_MEMORY_JOBS)) * 2.0
    )


def test_unparseable_birth_is_a_baseline() -> None:
    before = obs(workers=[])
    odd = obs(workers=[worker("a", completed=3, working=3.0)])
    odd = RedisObservation(
        time=odd.time,
        queues=odd.queues,
        workers=tuple(w.__class__(**{**w.__dict__, "birth": "yesterday"}) for w in odd.workers),
    )
    estimates = update(update(Estimates(), before, T0), odd, T0 + 1)
    assert estimates.completions == 0


def test_time_going_back_only_rebaselines() -> None:
    first = update(Estimates(), obs(3, workers=[worker("a", completed=1, working=1.0)]), T0)
    second = update(first, obs(9, workers=[worker("a", completed=5, working=9.0)]), T0 - 5)
    assert (second.arrival_rate, second.service_time, second.completions) == (0.0, None, 0)
    assert second.time == T0 - 5


def test_service_time_is_kept_through_idle_periods() -> None:
    estimates = fold(steady(2.0, 3.0, 60))
    idle = update(estimates, obs(workers=[]), T0 + 5000)
    assert idle.service_time == pytest.approx(estimates.service_time)
    assert idle.arrival_rate < 1e-3


def test_steady_state_converges_to_the_true_rates() -> None:
    estimates = fold(steady(2.0, 3.0, 300))
    assert estimates.service_time == pytest.approx(3.0)
    assert estimates.arrival_rate == pytest.approx(2.0, rel=0.01)


@given(
    rate=st.floats(0.0, 50.0),
    gaps=st.lists(st.floats(0.01, 20.0), min_size=1, max_size=30),
)
def test_arrival_ewma_does_not_depend_on_how_time_is_sliced(rate: float, gaps: list[float]) -> None:
    # Load grows at exactly `rate`: the estimate after T seconds is rate x (1 - e^(-T/tau))
    # whatever the tick pattern (a plain per-sample EWMA would depend on the ticks).
    estimates = update(Estimates(), obs(0), T0)
    elapsed = 0.0
    for gap in gaps:
        elapsed += gap
        estimates = update(estimates, obs(round(rate * elapsed * 1000)), T0 + elapsed)
    expected = rate * 1000 * (1 - math.exp(-elapsed / ARRIVAL_TAU_SECONDS))
    # Rounding the load to whole jobs moves each interval by at most one job.
    assert estimates.arrival_rate == pytest.approx(expected, rel=1e-6, abs=1.0 / min(gaps))


# ------------------------------------------------------------------- the latency default


def test_before_any_completion_every_pending_job_gets_a_worker() -> None:
    decision = decide(spec(max_replicas=50), obs(7, 2), 0, ScalerState(), T0)
    assert (decision.replicas, decision.mode) == (9, "latency-cold")
    assert "7 pending + 2 running, no service time measured yet" in decision.reason


def test_the_backlog_target_caps_the_cold_start() -> None:
    decision = decide(spec(target_backlog_per_worker=5), obs(23), 0, ScalerState(), T0)
    assert (decision.replicas, decision.mode) == (5, "backlog")
    assert "capped: load 23 (23 pending + 0 running) / 5 per worker" in decision.reason


def test_littles_law_sizes_the_pool_in_steady_state() -> None:
    # 2 jobs/s x 3 s = 6 busy workers; no backlog, so no drain term.
    scaling = spec(max_replicas=50, scale_down_delay="0s")
    decisions = run(scaling, steady(2.0, 3.0, 300, workers=6), current=6)
    last = decisions[-1]
    assert last.mode == "latency"
    assert last.replicas == 6
    assert "jobs/s x 3s = 6 busy" in last.reason


def test_drain_starts_the_backlog_before_the_target_less_the_pod_start() -> None:
    # 6 busy + 20 pending x 3 s / (10 s - 0 s waited - 2 s assumed pod start) = 7.5 more.
    scaling = spec(max_replicas=50, scale_down_delay="0s")
    decisions = run(scaling, steady(2.0, 3.0, 300, pending=20, workers=6), current=6)
    assert decisions[-1].replicas == 14
    assert "20 pending, oldest waits 0s of 10s (pod start 2s)" in decisions[-1].reason


def test_the_measured_pod_start_and_the_oldest_wait_shrink_the_budget() -> None:
    scaling = spec(max_replicas=50, scale_down_delay="0s")
    state = run(scaling, steady(2.0, 3.0, 300, pending=20, workers=6), current=6)[-1].state
    quick = decide(scaling, obs(20, 6, busy=6, time=T0 + 300), 6, state, T0 + 300, pod_start=0.5)
    assert quick.replicas == 13  # 6 + 20 x 3 / 9.5 = 12.3
    now = T0 + 300
    late = obs(20, 6, busy=6, time=now)
    queue = replace(late.queues[0], oldest_enqueued_at=iso(now - 5.0))
    hurried = decide(scaling, replace(late, queues=(queue,)), 6, state, now, pod_start=0.5)
    assert hurried.replicas == 20  # 6 + 20 x 3 / (10 - 5 - 0.5) = 19.3
    assert "oldest waits 5s of 10s (pod start 0.5s)" in hurried.reason


def test_drain_never_asks_more_than_one_worker_per_pending_job() -> None:
    # Jobs of 30 s, target 10 s: 4 pending need 4 extra workers, not 12.
    scaling = spec(max_replicas=50, scale_down_delay="0s")
    decisions = run(scaling, steady(0.1, 30.0, 600, pending=4, workers=3), current=3)
    assert decisions[-1].replicas == 3 + 4


def test_the_backlog_target_caps_the_latency_demand() -> None:
    scaling = spec(max_replicas=50, scale_down_delay="0s", target_backlog_per_worker=10)
    decisions = run(scaling, steady(2.0, 3.0, 300, pending=20, workers=6), current=6)
    last = decisions[-1]
    assert (last.demand, last.mode) == (3, "backlog")  # 26 jobs / 10 per worker
    assert (last.replicas, last.limited) == (6, "held by 6 busy workers")


def test_latency_mode_still_scales_to_zero() -> None:
    # The arrival EWMA only decays; zero load must still mean zero demand.
    scaling = spec(scale_down_delay="30s")
    busy = steady(2.0, 3.0, 100, workers=6)
    quiet = [(100.0 + t, obs()) for t in range(0, 40)]
    decisions = run(scaling, busy + quiet, current=6)
    assert decisions[-1].state.estimates.arrival_rate > 0.1
    assert decisions[-1].replicas == 0


def test_latency_mode_wakes_even_with_zero_length_jobs() -> None:
    scaling = spec()
    state = run(scaling, steady(1.0, 0.0, 20), current=1)[-1].state
    assert state.estimates.service_time == 0.0
    decision = decide(scaling, obs(1), 0, state, T0 + 100)
    assert (decision.mode, decision.replicas) == ("latency", 1)
