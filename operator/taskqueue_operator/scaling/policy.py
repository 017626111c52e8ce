"""The autoscaling policy: pure and deterministic, its memory in an explicit `ScalerState`.

The operator's loop calls `decide` once per tick with what it observed and the
Deployment's current replicas, stores `decision.state` for the next tick, and patches
the Deployment only when `decision.changed`. No I/O and no clock reads: `now` is given.

Per tick:

1. Demand. Backlog mode: ceil((pending + running) / targetBacklogPerWorker). Queue-time
   mode (`targetQueueSeconds` set, once a service time has been measured):
   ceil(arrival_rate x service_time + drain), where drain = pending x min(1, S / T) is
   the extra workers that start the whole backlog within T (Little's law plus a drain
   term). Any load keeps >= 1 worker (wake on the first job); so do scheduled jobs,
   because only a running worker's scheduler moves them back to the queue.
2. Clamp to [min, max] and record it in the stabilization window.
3. Up at once to the recommendation (at most `maxScaleUpStep` more, except to reach
   minReplicas, which like the HPA's is applied directly); down only to the
   highest recommendation of the last `scaleDownDelay` (the HPA's stabilization), so
   one low sample does not shrink the pool and zero needs a whole delay of zero load.
4. Busy floor: never below the busy workers (protectBusyWorkers), which can hold the
   pool above maxReplicas after max was lowered, but never raises it above the current
   replicas: the floor only refuses to remove pods, it never adds them.
5. Redis unreadable (observation None): hold the current replicas, whatever they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from taskqueue_operator.api.models import ScalingSpec
from taskqueue_operator.observation import RedisObservation
from taskqueue_operator.scaling import estimator
from taskqueue_operator.scaling.estimator import Estimates

_EPSILON = 1e-9  # ceil(2.0000000001) must be 2: rates are floats


@dataclass(frozen=True)
class Recommendation:
    """One tick's clamped recommendation, valid from `since` until the next tick."""

    since: float
    replicas: int
    until: float | None = None
    """When the next recommendation replaced it; None for the latest."""


@dataclass(frozen=True)
class ScalerState:
    """The policy's memory between ticks; `ScalerState()` is the start."""

    window: tuple[Recommendation, ...] = ()
    """Recommendations of the last scaleDownDelay that may still be its maximum, strictly
    decreasing: a sample lower than or equal to a later one can never be the max again,
    so at most one entry per distinct level is kept (a monotonic queue)."""
    estimates: Estimates = field(default_factory=Estimates)


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    """Desired replicas of the worker Deployment."""
    reason: str
    """Human-readable, for status.lastScaleReason and the Event."""
    limited: str | None
    """Why scaling is limited (condition ScalingLimited), else None."""
    state: ScalerState
    """Pass it to the next `decide`."""
    changed: bool
    """replicas != current_replicas."""
    mode: str = "backlog"
    """One of "backlog", "queue-time", or "hold" (no observation)."""
    demand: int | None = None
    """Workers the load asks for, before clamping, stabilization and the busy floor."""


@dataclass(frozen=True)
class _Demand:
    workers: int
    why: str
    mode: str


def _clamp(value: int, spec: ScalingSpec) -> int:
    return max(spec.min_replicas, min(spec.max_replicas, value))


def _seconds(value: float) -> str:
    return f"{value:.3g}s"


def push(
    window: tuple[Recommendation, ...], now: float, replicas: int, horizon: float
) -> tuple[Recommendation, ...]:
    """Record `replicas` at `now`; keep what can still be the max over (now - horizon, now]."""
    items = list(window)
    if items and items[-1].until is None:
        items[-1] = replace(items[-1], until=now)
    while items and items[-1].replicas <= replicas:
        items.pop()
    items.append(Recommendation(since=now, replicas=replicas))
    cutoff = now - horizon
    return tuple(r for r in items if r.until is None or r.until > cutoff)


def _demand(spec: ScalingSpec, observation: RedisObservation, estimates: Estimates) -> _Demand:
    pending, running = observation.pending, observation.running
    load = pending + running
    target_seconds = spec.target_queue_seconds
    if target_seconds is not None and estimates.ready:
        service = estimates.service_time or 0.0
        rate = estimates.arrival_rate
        # Workers busy at this arrival rate, plus those that start every pending job
        # within the target (a worker frees up every S seconds; none is needed beyond
        # one per job).
        busy = rate * service
        drain = pending * min(1.0, service / target_seconds)
        # No load at all: the EWMA's decaying tail must not keep a worker forever.
        workers = math.ceil(busy + drain - _EPSILON) if load else 0
        why = (
            f"{rate:.3g} jobs/s x {_seconds(service)} = {busy:.3g} busy"
            f" + {pending} pending within {_seconds(target_seconds)}"
        )
        mode = "queue-time"
    else:
        workers = math.ceil(load / spec.target_backlog_per_worker)
        target = spec.target_backlog_per_worker
        why = f"load {load} ({pending} pending + {running} running) / {target} per worker"
        if target_seconds is not None:
            why += " (queue-time mode: no service time measured yet)"
        mode = "backlog"
    if load and workers < 1:
        workers = 1
    if not load and observation.scheduled:
        # Workers run RQ's scheduler: at zero replicas delayed retries never come back.
        workers = max(workers, 1)
        why += f", {observation.scheduled} scheduled need a scheduler"
    return _Demand(workers, why, mode)


def decide(
    spec: ScalingSpec,
    observation: RedisObservation | None,
    current_replicas: int,
    state: ScalerState,
    now: float,
) -> ScaleDecision:
    """Desired replicas for this tick, and the state for the next one."""
    current = max(0, current_replicas)
    delay = spec.scale_down_delay_seconds
    window = state.window
    if not window:
        # A fresh state (operator start) has seen no demand: treat the current size as
        # the recent recommendation, so a restart cannot shrink the pool at once.
        window = (Recommendation(since=now, replicas=_clamp(current, spec)),)

    if observation is None:
        # Unknown demand counts as the current size: no scale-down right after an outage.
        window = push(window, now, _clamp(current, spec), delay)
        return ScaleDecision(
            replicas=current,
            reason=f"Redis unreachable: holding {current} replicas",
            limited=None,
            state=replace(state, window=window),
            changed=False,
            mode="hold",
        )

    estimates = estimator.update(state.estimates, observation, now)
    demand = _demand(spec, observation, estimates)
    recommended = _clamp(demand.workers, spec)
    window = push(window, now, recommended, delay)
    highest = window[0].replicas  # the max over the stabilization window

    # Both candidates are clamped, so a lowered max or a raised min applies at once.
    if recommended > current:
        replicas = recommended  # up at once
    elif highest < current:
        replicas = highest  # lower demand has lasted the whole delay
    else:
        replicas = current  # within [recommended, highest], hence within [min, max]

    limited: str | None = None
    step = spec.max_scale_up_step
    if step is not None and replicas - current > step:
        limited = f"scale-up step {step}: wants {replicas}"
        replicas = max(current + step, spec.min_replicas)  # minReplicas is not rate-limited
    if spec.protect_busy_workers and replicas < current:
        busy = observation.busy_workers
        floor = min(busy, current)
        if replicas < floor:
            limited = f"held by {busy} busy workers"
            replicas = floor
    if limited is None and demand.workers > spec.max_replicas and replicas >= spec.max_replicas:
        limited = f"at maxReplicas {spec.max_replicas}"

    reason = f"{demand.why} -> {demand.workers}"
    if replicas > current:
        reason += f": scale up {current} -> {replicas}"
    elif replicas < current:
        reason += f": scale down {current} -> {replicas}"
        if highest < current and delay:
            reason += f" (at most {highest} needed for {_seconds(delay)})"
    else:
        reason += f": hold {current}"
        if highest > recommended and highest >= current:
            reason += f" (stabilizing: {highest} needed within {_seconds(delay)})"
    if limited:
        reason += f"; {limited}"
    return ScaleDecision(
        replicas=replicas,
        reason=reason,
        limited=limited,
        state=ScalerState(window=window, estimates=estimates),
        changed=replicas != current,
        mode=demand.mode,
        demand=demand.workers,
    )
