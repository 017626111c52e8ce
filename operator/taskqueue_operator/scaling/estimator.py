"""Arrival rate and service time, learned from successive Redis observations.

Pure: `update` folds one observation into an immutable `Estimates` and returns the next one.
The inputs are RQ's own lifetime counters in each worker hash (successful + failed job
counts, total working time): per-worker deltas between two polls give the jobs completed
and the seconds they took. Arrivals are not recorded by RQ, so they are inferred by flow
conservation: arrivals = completions + growth of (pending + running).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from taskqueue_contract import timestamps

from taskqueue_operator.observation import RedisObservation, WorkerInfo

ARRIVAL_TAU_SECONDS = 30.0
"""Time constant of the arrival-rate EWMA: long enough to average Poisson noise at 1 s
ticks, short enough to follow a daily cycle. Bursts do not need it: the drain term sees
the backlog directly."""

SERVICE_MEMORY_JOBS = 20.0
"""The service-time EWMA is weighted by completions, not time, so it neither forgets
during idle periods nor lets one slow job dominate."""


@dataclass(frozen=True)
class WorkerCounters:
    """One worker's lifetime counters at the last observation."""

    name: str
    completed: int
    working_time: float


@dataclass(frozen=True)
class Estimates:
    """What the estimator knows; `Estimates()` is the empty start."""

    time: float | None = None
    """When the last observation was folded in (None: nothing seen yet)."""
    load: int = 0
    """pending + running at that time."""
    counters: tuple[WorkerCounters, ...] = ()
    arrival_rate: float = 0.0
    """Jobs per second (EWMA). Starts at 0: no steady inflow is assumed until seen."""
    service_time: float | None = None
    """Mean seconds per job (EWMA over completions); None until a job has completed."""
    completions: int = 0
    """Completions seen since the start: how much `service_time` rests on."""

    @property
    def ready(self) -> bool:
        """Little's law needs a service time; a zero arrival rate is a valid estimate."""
        return self.service_time is not None


def _birth(worker: WorkerInfo) -> float | None:
    return timestamps.epoch(worker.birth)


def _completed(worker: WorkerInfo) -> int:
    return worker.successful_job_count + worker.failed_job_count


def update(estimates: Estimates, observation: RedisObservation, now: float) -> Estimates:
    """Fold `observation` (taken at `now`) into `estimates`."""
    load = observation.pending + observation.running
    counters = tuple(
        sorted(
            (
                WorkerCounters(w.name, _completed(w), w.total_working_time)
                for w in observation.workers
            ),
            key=lambda c: c.name,
        )
    )
    previous_time = estimates.time
    if previous_time is None or now <= previous_time:
        # First sight (or a clock step back): only a baseline, no interval to measure.
        return Estimates(
            now,
            load,
            counters,
            estimates.arrival_rate,
            estimates.service_time,
            estimates.completions,
        )

    dt = now - previous_time
    before = {c.name: c for c in estimates.counters}
    births = {w.name: _birth(w) for w in observation.workers}
    done, worked = 0, 0.0
    for counter in counters:
        old = before.get(counter.name)
        if (
            old is not None
            and counter.completed >= old.completed
            and counter.working_time >= old.working_time
        ):
            done += counter.completed - old.completed
            worked += counter.working_time - old.working_time
            continue
        # New worker, or counters went back (hash recreated under the same name): its
        # counts belong to this interval only if it was born within it.
        born = births.get(counter.name)
        if born is not None and born > previous_time:
            done += counter.completed
            worked += counter.working_time
    # Workers that vanished take their last interval's completions with them; the
    # estimate then runs low for one tick, hence the clamp instead of a negative rate.
    arrivals = max(0, done + load - estimates.load)
    weight = 1.0 - math.exp(-dt / ARRIVAL_TAU_SECONDS)
    arrival_rate = estimates.arrival_rate + weight * (arrivals / dt - estimates.arrival_rate)

    service_time = estimates.service_time
    if done > 0:
        sample = worked / done
        if service_time is None:
            service_time = sample
        else:
            service_time += (1.0 - math.exp(-done / SERVICE_MEMORY_JOBS)) * (sample - service_time)
    return Estimates(now, load, counters, arrival_rate, service_time, estimates.completions + done)
