"""Every rule of the scaling policy, one scenario at a time (times are seconds after T0)."""

from __future__ import annotations

import pytest
from scaling_helpers import T0, obs, run, spec, worker
from taskqueue_operator.observation import WorkerInfo
from taskqueue_operator.scaling.policy import (
    Recommendation,
    ScaleDecision,
    ScalerState,
    decide,
    push,
)


def test_fresh_state_is_constructible_without_arguments() -> None:
    state = ScalerState()
    assert state.window == ()
    assert state.estimates.time is None


# ------------------------------------------------------------------- the backlog cap


def test_load_counts_pending_and_running() -> None:
    decision = decide(spec(target_backlog_per_worker=10), obs(12, 25), 3, ScalerState(), T0)
    assert decision.replicas == 4  # ceil(37 / 10)
    assert decision.changed
    assert decision.mode == "backlog"
    assert decision.demand == 4
    assert "load 37 (12 pending + 25 running)" in decision.reason
    assert "scale up 3 -> 4" in decision.reason
    assert decision.limited is None


def test_running_jobs_alone_keep_the_pool_after_the_delay() -> None:
    # KEDA counts the list only and shrinks under running jobs; we count them.
    scaling = spec(target_backlog_per_worker=5)
    decisions = run(scaling, [(t, obs(0, 20)) for t in range(0, 200, 5)], current=4)
    assert [d.replicas for d in decisions] == [4] * len(decisions)


@pytest.mark.parametrize(("load", "target", "expected"), [(1, 10, 1), (10, 10, 1), (11, 10, 2)])
def test_desired_is_the_ceiling_of_load_over_target(load: int, target: int, expected: int) -> None:
    scaling = spec(target_backlog_per_worker=target)
    assert decide(scaling, obs(load), 0, ScalerState(), T0).replicas == expected


def test_scale_up_is_immediate_and_clamped_to_max() -> None:
    decision = decide(
        spec(max_replicas=5, target_backlog_per_worker=10), obs(145), 1, ScalerState(), T0
    )
    assert decision.replicas == 5
    assert decision.demand == 15
    assert decision.limited == "at maxReplicas 5"
    assert "at maxReplicas 5" in decision.reason


def test_not_limited_when_demand_fits_max_exactly() -> None:
    decision = decide(
        spec(max_replicas=5, target_backlog_per_worker=10), obs(50), 1, ScalerState(), T0
    )
    assert (decision.replicas, decision.limited) == (5, None)


def test_min_replicas_is_kept_without_load() -> None:
    scaling = spec(min_replicas=2)
    decisions = run(scaling, [(t, obs()) for t in range(0, 300, 10)], current=2)
    assert {d.replicas for d in decisions} == {2}


def test_raised_min_applies_at_once() -> None:
    decision = decide(spec(min_replicas=3), obs(), 1, ScalerState(), T0)
    assert (decision.replicas, decision.changed) == (3, True)


def test_lowered_max_applies_at_once_when_no_worker_is_busy() -> None:
    decision = decide(spec(max_replicas=2), obs(0, 0, idle=6), 6, ScalerState(), T0)
    assert decision.replicas == 2


def test_wake_from_zero_on_the_first_pending_job() -> None:
    decision = decide(
        spec(min_replicas=0, target_backlog_per_worker=100), obs(1), 0, ScalerState(), T0
    )
    assert (decision.replicas, decision.changed) == (1, True)


def test_max_scale_up_step_bounds_each_decision() -> None:
    scaling = spec(max_replicas=20, target_backlog_per_worker=1, max_scale_up_step=3)
    decisions = run(scaling, [(t, obs(12)) for t in range(4)], current=1)
    assert [d.replicas for d in decisions] == [4, 7, 10, 12]
    assert decisions[0].limited == "scale-up step 3: wants 12"
    assert decisions[-1].limited is None


def test_step_does_not_delay_reaching_min() -> None:
    decision = decide(spec(min_replicas=6, max_scale_up_step=2), obs(), 0, ScalerState(), T0)
    assert decision.replicas == 6


# -------------------------------------------------------------------------- scale-down


def test_scale_down_waits_for_the_whole_delay_of_lower_demand() -> None:
    scaling = spec(target_backlog_per_worker=10, scale_down_delay="60s")
    ticks = [(0.0, obs(50))] + [(float(t), obs(10)) for t in range(1, 70)]
    decisions = run(scaling, ticks, current=0)
    replicas = {t: d.replicas for (t, _), d in zip(ticks, decisions, strict=True)}
    # Demand 5 was last recommended at t=0 and replaced at t=1: down at t=61, not before.
    assert replicas[0] == 5
    assert replicas[60] == 5
    assert replicas[61] == 1
    assert "stabilizing: 5 needed within 60s" in decisions[30].reason
    assert "scale down 5 -> 1" in decisions[61].reason


def test_stabilization_takes_the_max_recommendation_of_the_window() -> None:
    # One low sample must not shrink the pool: the window's highest recent need wins.
    scaling = spec(target_backlog_per_worker=1, scale_down_delay="30s")
    loads = {0: 8, 10: 2, 20: 6, 30: 1, 40: 3}
    ticks = [(float(t), obs(loads.get(t, 0) or _last(loads, t))) for t in range(0, 90)]
    decisions = run(scaling, ticks, current=0)
    at = {t: d.replicas for (t, _), d in zip(ticks, decisions, strict=True)}
    assert at[0] == 8
    assert at[39] == 8  # 8 was needed until t=10, so it counts until t=40
    assert at[40] == 6  # then the highest still in the window: 6 (from t=20..30)
    assert at[59] == 6
    assert at[60] == 3  # 6 left the window; 3 (t=40..) is the highest now
    assert at[89] == 3


def _last(loads: dict[int, int], t: int) -> int:
    return loads[max(k for k in loads if k <= t)]


def test_a_single_high_sample_is_enough_to_scale_up() -> None:
    scaling = spec(target_backlog_per_worker=1)
    decisions = run(scaling, [(0, obs(1)), (1, obs(7)), (2, obs(1))], current=1)
    assert [d.replicas for d in decisions] == [1, 7, 7]


def test_scale_to_zero_after_the_delay_of_zero_load_only() -> None:
    scaling = spec(min_replicas=0, scale_down_delay="60s")
    ticks = [(0.0, obs(3))] + [(float(t), obs()) for t in range(1, 100)]
    decisions = run(scaling, ticks, current=0)
    assert decisions[0].replicas == 3  # no service time yet: one worker per job
    assert all(d.replicas == 3 for d in decisions[1:61])
    assert decisions[61].replicas == 0


def test_one_job_during_the_delay_restarts_it() -> None:
    scaling = spec(min_replicas=0, scale_down_delay="60s")
    ticks = [(float(t), obs(1 if t in (0, 50) else 0)) for t in range(0, 150)]
    decisions = run(scaling, ticks, current=0)
    first_zero = next(t for (t, _), d in zip(ticks, decisions, strict=True) if d.replicas == 0)
    assert first_zero == 111


def test_zero_delay_scales_down_on_the_next_tick() -> None:
    scaling = spec(target_backlog_per_worker=1, scale_down_delay="0s")
    decisions = run(scaling, [(0, obs(5)), (1, obs(2)), (2, obs())], current=0)
    assert [d.replicas for d in decisions] == [5, 2, 0]


def test_a_restarted_operator_does_not_shrink_the_pool_at_once() -> None:
    scaling = spec(scale_down_delay="60s")
    decisions = run(scaling, [(float(t), obs()) for t in range(0, 70)], current=5)
    assert decisions[59].replicas == 5
    assert decisions[60].replicas == 0


def test_irregular_ticks_still_need_the_full_delay() -> None:
    scaling = spec(target_backlog_per_worker=1, scale_down_delay="60s")
    decisions = run(scaling, [(0, obs(4)), (45, obs()), (100, obs()), (106, obs())], current=0)
    # The 4 was replaced at t=45, so zero load is proven from t=45: down at t>=105 only.
    assert [d.replicas for d in decisions] == [4, 4, 4, 0]


def test_window_keeps_only_what_can_still_be_its_max() -> None:
    scaling = spec(target_backlog_per_worker=1, scale_down_delay="600s")
    decisions = run(scaling, [(float(t), obs(t % 7)) for t in range(0, 500)], current=0)
    window = decisions[-1].state.window
    levels = [r.replicas for r in window]
    assert levels == sorted(set(levels), reverse=True)  # strictly decreasing
    assert len(window) <= 7


def test_push_drops_a_sample_once_replaced_longer_than_the_horizon_ago() -> None:
    window = push((), 0.0, 5, 10.0)
    window = push(window, 2.0, 1, 10.0)
    assert [r.replicas for r in window] == [5, 1]
    assert window[0] == Recommendation(since=0.0, replicas=5, until=2.0)
    assert [r.replicas for r in push(window, 11.9, 1, 10.0)] == [5, 1]
    assert [r.replicas for r in push(window, 12.0, 1, 10.0)] == [1]


# ---------------------------------------------------------------------------- busy floor


def test_never_below_the_busy_workers() -> None:
    scaling = spec(scale_down_delay="0s", protect_busy_workers=True, target_backlog_per_worker=10)
    decision = decide(scaling, obs(0, 3, busy=3, idle=2), 5, ScalerState(), T0)
    assert decision.replicas == 3  # demand 1 (3 running / 10), 3 busy
    assert decision.limited == "held by 3 busy workers"
    assert "held by 3 busy workers" in decision.reason


def test_busy_floor_is_off_when_not_protecting() -> None:
    scaling = spec(scale_down_delay="0s", protect_busy_workers=False, target_backlog_per_worker=10)
    decision = decide(scaling, obs(0, 3, busy=3, idle=2), 5, ScalerState(), T0)
    assert (decision.replicas, decision.limited) == (1, None)


def test_busy_floor_never_adds_pods() -> None:
    # Busy workers on terminating pods (already scaled away) must not scale back up.
    scaling = spec(scale_down_delay="0s", target_backlog_per_worker=100)
    decision = decide(scaling, obs(0, 6, busy=6), 2, ScalerState(), T0)
    assert decision.replicas == 2
    assert not decision.changed


def test_busy_floor_may_hold_above_a_lowered_max() -> None:
    # A lowered max must not interrupt jobs: we wait for them, then shrink.
    scaling = spec(max_replicas=2, scale_down_delay="0s")
    decision = decide(scaling, obs(0, 4, busy=4, idle=1), 5, ScalerState(), T0)
    assert decision.replicas == 4
    assert decision.limited == "held by 4 busy workers"
    later = decide(scaling, obs(15, 0, idle=4), 4, decision.state, T0 + 1)
    assert later.replicas == 2  # jobs done: down to the max at once


def test_dead_workers_do_not_count_as_busy() -> None:
    scaling = spec(scale_down_delay="0s")
    workers = [worker("a", busy=True, dead=True), worker("b", busy=True)]
    decision = decide(scaling, obs(0, 1, workers=workers), 4, ScalerState(), T0)
    assert decision.replicas == 1


# ---------------------------------------------------------------------- Redis failures


def test_no_observation_holds_the_current_replicas() -> None:
    decision = decide(spec(min_replicas=0), None, 3, ScalerState(), T0)
    assert (decision.replicas, decision.changed, decision.mode) == (3, False, "hold")
    assert decision.reason == "Redis unreachable: holding 3 replicas"
    assert decision.limited is None


def test_long_outage_never_scales_to_zero_nor_moves_replicas() -> None:
    scaling = spec(min_replicas=0, max_replicas=3, scale_down_delay="10s")
    for current in (0, 2, 7):  # 7: even outside [min, max] nothing moves without data
        decisions = run(scaling, [(float(t), None) for t in range(0, 300, 5)], current=current)
        assert {d.replicas for d in decisions} == {current}


def test_after_an_outage_the_delay_starts_again() -> None:
    scaling = spec(scale_down_delay="60s", target_backlog_per_worker=10)
    ticks = [(0.0, obs(40))] + [(float(t), None) for t in range(1, 120)]
    ticks += [(float(t), obs()) for t in range(120, 200)]
    decisions = run(scaling, ticks, current=0)
    at = {t: d.replicas for (t, _), d in zip(ticks, decisions, strict=True)}
    assert at[0] == 4
    assert at[179] == 4
    assert at[180] == 0


def test_outage_keeps_the_estimates() -> None:
    scaling = spec()
    first = decide(scaling, obs(3), 0, ScalerState(), T0)
    held = decide(scaling, None, first.replicas, first.state, T0 + 1)
    assert held.state.estimates == first.state.estimates


# ------------------------------------------------------------------------- scheduled jobs


def test_scheduled_jobs_keep_one_worker_for_the_scheduler() -> None:
    scaling = spec(min_replicas=0, scale_down_delay="10s")
    decisions = run(scaling, [(float(t), obs(scheduled=2)) for t in range(0, 100)], current=3)
    assert decisions[-1].replicas == 1
    assert "2 scheduled need a scheduler" in decisions[-1].reason


def test_scheduled_jobs_wake_a_pool_at_zero() -> None:
    decision = decide(spec(min_replicas=0), obs(scheduled=1), 0, ScalerState(), T0)
    assert decision.replicas == 1


# ------------------------------------------------------------------------- the contract


def test_decision_reports_change_and_is_deterministic() -> None:
    scaling = spec(target_queue_seconds=5)
    observation = obs(7, 2, idle=1)
    state = decide(scaling, obs(1), 0, ScalerState(), T0).state
    one = decide(scaling, observation, 2, state, T0 + 1)
    two = decide(scaling, observation, 2, state, T0 + 1)
    assert one == two
    assert isinstance(one, ScaleDecision)
    assert one.changed == (one.replicas != 2)


# ------------------------------------------------------------ work loops per pod


@pytest.mark.parametrize(
    ("load", "processes", "pods"), [(7, 4, 2), (8, 4, 2), (9, 4, 3), (1, 8, 1)]
)
def test_demand_in_workers_becomes_pods_of_processes_loops(
    load: int, processes: int, pods: int
) -> None:
    scaling = spec(target_backlog_per_worker=1)
    decision = decide(scaling, obs(load), 0, ScalerState(), T0, processes=processes)
    assert decision.replicas == pods
    assert decision.demand == load  # still in workers
    assert f"{load} workers = {pods} pods of {processes}" in decision.reason


def test_max_replicas_counts_pods_not_workers() -> None:
    decision = decide(spec(max_replicas=2), obs(20), 0, ScalerState(), T0, processes=4)
    assert decision.replicas == 2
    assert decision.limited == "at maxReplicas 2"


def test_the_busy_floor_counts_pods_that_hold_a_busy_loop() -> None:
    def loop(pod: str, slot: int, busy: bool) -> WorkerInfo:
        executions = (f"j-{pod}-{slot}:e",) if busy else ()
        return WorkerInfo(f"{pod}-{slot}-ab", "busy" if busy else "idle", pod, executions)

    # Three busy loops in three pods of four loops: one pod would hold them, but each pod
    # has a running job, so none may go.
    workers = [loop(p, 0, True) for p in ("a", "b", "c")]
    workers += [loop(p, s, False) for p in ("a", "b", "c") for s in (1, 2, 3)]
    observation = obs(0, 3, workers=workers)
    decision = decide(spec(scale_down_delay="0s"), observation, 3, ScalerState(), T0, processes=4)
    assert decision.replicas == 3
    assert decision.limited == "held by 3 pods with busy workers"

    # The same three busy loops in one pod: two idle pods go.
    packed = [loop("a", s, s < 3) for s in range(4)] + [
        loop(p, s, False) for p in "bc" for s in range(4)
    ]
    decision = decide(
        spec(scale_down_delay="0s"), obs(0, 3, workers=packed), 3, ScalerState(), T0, processes=4
    )
    assert decision.replicas == 1
