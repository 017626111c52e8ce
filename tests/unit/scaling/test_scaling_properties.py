"""Properties of `decide` over random specs and random tick sequences (hypothesis).

Replicas mostly follow the decisions (as the operator applies them) but sometimes jump
(someone ran `kubectl scale`, a pod was evicted), and Redis sometimes fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from scaling_helpers import T0, obs, spec, worker
from taskqueue_operator.api.models import ScalingSpec
from taskqueue_operator.observation import RedisObservation
from taskqueue_operator.scaling.policy import ScalerState, decide


@dataclass(frozen=True)
class Tick:
    gap: float
    redis_up: bool
    pending: int
    running: int
    busy: int
    scheduled: int
    completions: tuple[int, ...]  # per worker w0..w3 this tick; -1: worker absent
    service: float
    reset: bool  # worker w0's hash recreated (counters back to zero)
    jump: int | None  # replicas changed behind our back


@st.composite
def specs(draw: st.DrawFn) -> ScalingSpec:
    low = draw(st.integers(0, 4))
    return spec(
        min_replicas=low,
        max_replicas=draw(st.integers(max(low, 1), 12)),
        target_backlog_per_worker=draw(st.none() | st.integers(1, 20)),
        target_queue_seconds=draw(st.floats(0.5, 60)),
        scale_down_delay=draw(st.sampled_from(["0s", "3s", "10s", "60s"])),
        max_scale_up_step=draw(st.none() | st.integers(1, 4)),
        protect_busy_workers=draw(st.booleans()),
    )


@st.composite
def ticks(draw: st.DrawFn) -> Tick:
    running = draw(st.integers(0, 15))
    return Tick(
        gap=draw(st.floats(0.1, 20)),
        redis_up=draw(st.integers(0, 9)) > 0,
        pending=draw(st.sampled_from([0, 0, 0, 1, 2, 5, 17, 60, 300])),
        running=running,
        busy=draw(st.integers(0, running + 3)),  # terminating pods may still be busy
        scheduled=draw(st.sampled_from([0, 0, 0, 1, 4])),
        completions=tuple(draw(st.lists(st.integers(-1, 6), min_size=4, max_size=4))),
        service=draw(st.floats(0.0, 40)),
        reset=draw(st.integers(0, 19)) == 0,
        jump=draw(st.none() | st.none() | st.none() | st.integers(0, 15)),
    )


def observe(tick: Tick, counters: dict[str, tuple[int, float]], now: float) -> RedisObservation:
    team = []
    for index, done in enumerate(tick.completions):
        name = f"w{index}"
        if index == 0 and tick.reset:
            counters[name] = (0, 0.0)
        if done < 0:
            continue
        completed, working = counters.get(name, (0, 0.0))
        counters[name] = (completed + done, working + done * tick.service)
        team.append(worker(name, completed=counters[name][0], working=counters[name][1], born=now))
    team += [worker(f"b{i}", busy=True) for i in range(tick.busy)]
    base = obs(tick.pending, tick.running, scheduled=tick.scheduled, workers=team)
    return base


def clamp(value: int, scaling: ScalingSpec) -> int:
    return max(scaling.min_replicas, min(scaling.max_replicas, value))


@settings(max_examples=300, deadline=None)
@given(scaling=specs(), start=st.integers(0, 15), sequence=st.lists(ticks(), max_size=60))
def test_decide_keeps_its_promises(scaling: ScalingSpec, start: int, sequence: list[Tick]) -> None:
    delay = scaling.scale_down_delay_seconds
    state, current, now = ScalerState(), start, T0
    counters: dict[str, tuple[int, float]] = {}
    samples: list[tuple[float, int]] = []  # a brute-force model of the stabilization window
    for tick in sequence:
        now += tick.gap
        if tick.jump is not None:
            current = tick.jump
        if not samples:
            samples.append((now, clamp(current, scaling)))  # the seed of a fresh state
        observation = observe(tick, counters, now) if tick.redis_up else None
        decision = decide(scaling, observation, current, state, now)
        replicas = decision.replicas

        assert decision.changed == (replicas != current)
        if observation is None:
            assert replicas == current
            samples.append((now, clamp(current, scaling)))
        else:
            load = observation.pending + observation.running
            busy = observation.busy_workers
            assert decision.demand is not None
            samples.append((now, clamp(decision.demand, scaling)))
            assert replicas >= scaling.min_replicas
            if replicas > scaling.max_replicas:  # only the busy floor holds above max
                assert decision.limited == f"held by {busy} busy workers"
                assert replicas <= current
            if load or observation.scheduled:
                assert replicas >= 1  # wake, and never zero under load
            if scaling.protect_busy_workers and replicas < current:
                assert replicas >= min(busy, current)
            if replicas > current:  # up only as far as demand (or min) asks
                assert replicas <= max(scaling.min_replicas, clamp(decision.demand, scaling))
                if scaling.max_scale_up_step is not None:
                    assert replicas <= max(
                        current + scaling.max_scale_up_step, scaling.min_replicas
                    )
            if replicas < current and not decision.limited:
                # Down only to the highest recommendation of the window (the model's).
                cutoff = now - delay
                valid = [
                    value
                    for i, (_, value) in enumerate(samples)
                    if i + 1 == len(samples) or samples[i + 1][0] > cutoff
                ]
                assert replicas == clamp(max(valid), scaling)
            if replicas == 0 and current > 0:
                # Zero needs a whole delay of zero recommendations.
                zero_since = now
                for since, value in reversed(samples):
                    if value:
                        break
                    zero_since = since
                assert now - zero_since >= delay
            estimates = decision.state.estimates
            assert estimates.arrival_rate >= 0
            assert estimates.service_time is None or estimates.service_time >= 0

        window = decision.state.window
        levels = [r.replicas for r in window]
        assert levels == sorted(set(levels), reverse=True)
        state, current = decision.state, replicas


@settings(max_examples=200, deadline=None)
@given(scaling=specs(), current=st.integers(0, 20), sequence=st.lists(st.floats(0, 1e4)))
def test_redis_errors_never_change_replicas(
    scaling: ScalingSpec, current: int, sequence: list[float]
) -> None:
    state = ScalerState()
    for offset in sorted(sequence):
        decision = decide(scaling, None, current, state, T0 + offset)
        assert (decision.replicas, decision.changed) == (current, False)
        state = decision.state


@settings(max_examples=200, deadline=None)
@given(scaling=specs(), current=st.integers(0, 20), pending=st.integers(1, 1000))
def test_never_zero_while_jobs_are_pending(
    scaling: ScalingSpec, current: int, pending: int
) -> None:
    decision = decide(scaling, obs(pending), current, ScalerState(), T0)
    assert decision.replicas >= 1
