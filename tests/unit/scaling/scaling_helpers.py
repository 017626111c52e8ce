"""Builders of observations and specs for the scaling tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from taskqueue_operator.api.models import ScalingSpec
from taskqueue_operator.observation import QueueStats, RedisObservation, WorkerInfo
from taskqueue_operator.scaling.policy import ScaleDecision, ScalerState, decide

T0 = 1_700_000_000.0


def spec(**fields: Any) -> ScalingSpec:
    values: dict[str, Any] = {"min_replicas": 0, "max_replicas": 10, "scale_down_delay": "60s"}
    values.update(fields)
    return ScalingSpec(**values)


def iso(moment: float) -> str:
    """RQ's birth format."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def worker(
    name: str,
    *,
    busy: bool = False,
    completed: int = 0,
    failed: int = 0,
    working: float = 0.0,
    born: float = T0 - 3600,
    dead: bool = False,
) -> WorkerInfo:
    return WorkerInfo(
        name=name,
        state="busy" if busy else "idle",
        hostname=f"pod-{name}",
        executions=(f"job-{name}:exec",) if busy else (),
        dead=dead,
        birth=iso(born),
        successful_job_count=completed,
        failed_job_count=failed,
        total_working_time=working,
    )


def obs(
    pending: int = 0,
    running: int = 0,
    *,
    busy: int | None = None,
    idle: int = 0,
    scheduled: int = 0,
    workers: Iterable[WorkerInfo] | None = None,
    time: float = T0,
) -> RedisObservation:
    """One queue; `busy` busy + `idle` idle workers (busy defaults to `running`)."""
    if workers is None:
        busy = running if busy is None else busy
        workers = [worker(f"b{i}", busy=True) for i in range(busy)]
        workers += [worker(f"i{i}") for i in range(idle)]
    return RedisObservation(
        time=time,
        queues=(QueueStats("default", pending=pending, running=running, scheduled=scheduled),),
        workers=tuple(workers),
    )


def run(
    scaling: ScalingSpec,
    steps: Iterable[tuple[float, RedisObservation | None]],
    current: int,
    state: ScalerState | None = None,
) -> list[ScaleDecision]:
    """Feed (seconds after T0, observation) ticks; replicas follow each decision."""
    decisions = []
    state = state or ScalerState()
    for offset, observation in steps:
        decision = decide(scaling, observation, current, state, T0 + offset)
        decisions.append(decision)
        current, state = decision.replicas, decision.state
    return decisions
