"""The autoscaling policy: pure and deterministic, its memory in an explicit `ScalerState`.

The operator's loop calls `decide` once per tick with what it observed and the
Deployment's current replicas, stores `decision.state` for the next tick, and patches
the Deployment only when `decision.changed`. No I/O and no clock reads: `now` is given.

Per tick:

1. Demand, latency first: every job should start within `targetQueueSeconds` (T,
   default 10 s). Once a service time S has been measured:
   ceil(max(running, arrival_rate x S + drain)), where arrival_rate x S is Little's law
   (the workers the inflow keeps busy) and drain = pending x S / max(T - oldest - P, S)
   the workers that start the whole backlog before the oldest pending job's wait reaches
   T (`oldest` is its age now, P the measured median pod start: a new worker helps only
   once it is up; every worker, busy ones included, frees up every S seconds; never more
   than one worker per pending job); never fewer than the jobs running. Until a first
   job has completed, S is unknown and every pending job may be long: running + pending
   ("latency-cold"). No load is zero demand (the arrival rate's decaying tail must not
   keep a worker). Any load keeps >= 1 worker (wake on the first job); so do scheduled
   jobs, because only a running worker's scheduler moves them back to the queue. The
   optional `targetBacklogPerWorker` B caps it at ceil((pending + running) / B): spend
   less, accept longer waits ("backlog").
2. Clamp to [min, max] and record it in the stabilization window.
3. Up at once to the recommendation (at most `maxScaleUpStep` more, except to reach
   minReplicas, which like the HPA's is applied directly); down only to the
   highest recommendation of the last `scaleDownDelay` (the HPA's stabilization), so
   one low sample does not shrink the pool and zero needs a whole delay of zero load.
   With `processes` work loops per pod (spec.worker.processes) the demand is in loops
   ("workers") and the pool in pods: ceil(workers / processes), then clamped to [min, max]
   pods.
4. Busy floor: never below the busy workers (protectBusyWorkers; with several loops per
   pod, the pods holding a busy one), which can hold the
   pool above maxReplicas after max was lowered, but never raises it above the current
   replicas: the floor only refuses to remove pods, it never adds them.
5. Redis unreadable (observation None): hold the current replicas, whatever they are.

A schedule's pre-warm (`prewarm=`, from reconcile/prewarm.py) is a floor on the demand of
step 1: it goes through the same clamp and stabilization, so it never exceeds maxReplicas
and its workers leave scaleDownDelay after the window closes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from taskqueue_operator.api.models import ScalingSpec
from taskqueue_operator.observation import RedisObservation
from taskqueue_operator.scaling import estimator
from taskqueue_operator.scaling.estimator import Estimates

_EPSILON = 1e-9  # ceil(2.0000000001) must be 2: rates are floats
DEFAULT_POD_START_SECONDS = 2.0
"""Assumed until a pod start has been measured (the real node's median is 1.3 s)."""


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
    mode: str = "latency"
    """"latency", "latency-cold" (no service time measured yet), "backlog" (the
    targetBacklogPerWorker cap decided), "prewarm" (a schedule's pre-warm floor decided)
    or "hold" (no observation)."""
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


def _demand(
    spec: ScalingSpec,
    observation: RedisObservation,
    estimates: Estimates,
    pod_start: float | None,
) -> _Demand:
    pending, running = observation.pending, observation.running
    load = pending + running
    target = spec.target_queue_seconds
    if not load:
        # No load at all: the arrival EWMA's decaying tail must not keep a worker forever
        # (the stabilization window keeps the recent pool for scaleDownDelay).
        workers, why, mode = 0, "no load", "latency"
    elif estimates.service_time is None:
        # Nothing has completed yet, so no job's length is known: each pending job may be
        # long, and the latency target says start it now. The first completion corrects it.
        workers = running + pending
        why = f"{pending} pending + {running} running, no service time measured yet"
        mode = "latency-cold"
    else:
        service = estimates.service_time
        start = DEFAULT_POD_START_SECONDS if pod_start is None else pod_start
        oldest = observation.oldest_age()
        # The oldest job has `budget` seconds left once a new worker is up; a worker frees
        # up every `service` seconds, so starting the whole backlog within it takes
        # pending x service / budget workers, and no more than one per pending job.
        budget = target - oldest - start
        drain = pending * service / max(budget, service) if service > 0 else 0.0
        # Little's law: the workers the inflow keeps busy; what they have left over in the
        # budget drains the backlog. The busy workers count in both (they free up every
        # S seconds too): adding `running` to the drain instead asked for up to twice
        # the workers a backlog needs. No square-root staffing headroom on top: measured
        # in bench/policy_sim.py, it bought 0.1-0.3 s of p95 wait for 5-7 points of busy
        # share.
        offered = estimates.arrival_rate * service
        workers = math.ceil(max(running, offered + drain) - _EPSILON)
        why = (
            f"{estimates.arrival_rate:.3g} jobs/s x {_seconds(service)} = {offered:.3g} busy,"
            f" {pending} pending, oldest waits {_seconds(oldest)} of {_seconds(target)}"
            f" (pod start {_seconds(start)})"
        )
        mode = "latency"
        workers = max(workers, 1)
    cap = spec.target_backlog_per_worker
    if cap is not None and load and workers > math.ceil(load / cap):
        workers = math.ceil(load / cap)
        why += f"; capped: load {load} ({pending} pending + {running} running) / {cap} per worker"
        mode = "backlog"
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
    *,
    pod_start: float | None = None,
    prewarm: int = 0,
    prewarm_reason: str | None = None,
    processes: int = 1,
) -> ScaleDecision:
    """Desired replicas (pods of `processes` work loops each) for this tick, and the state
    for the next one. `prewarm` workers (reconcile/prewarm.py: a schedule's slot is near)
    are a floor on the demand."""
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
    demand = _demand(spec, observation, estimates, pod_start)
    if prewarm > demand.workers:
        why = f"{demand.why}; {prewarm_reason or f'pre-warm {prewarm}'}"
        demand = _Demand(prewarm, why, "prewarm")
    pods = math.ceil(demand.workers / processes)  # demand is in work loops ("workers")
    recommended = _clamp(pods, spec)
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
        # One loop per pod: every busy worker is a pod (its hash's hostname may be missing).
        # More: the pods that hold a busy loop, however many of their loops are busy.
        busy = observation.busy_workers if processes == 1 else len(observation.busy_pods())
        floor = min(busy, current)
        if replicas < floor:
            what = "busy workers" if processes == 1 else "pods with busy workers"
            limited = f"held by {busy} {what}"
            replicas = floor
    if limited is None and pods > spec.max_replicas and replicas >= spec.max_replicas:
        limited = f"at maxReplicas {spec.max_replicas}"

    reason = f"{demand.why} -> {demand.workers}"
    if processes > 1:
        reason += f" workers = {pods} pods of {processes}"
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
