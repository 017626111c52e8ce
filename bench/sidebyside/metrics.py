"""The side-by-side figures, from what one replay recorded (pure: no cluster, no Redis).

Times are seconds after the replay's start on one monotonic clock; the samples are the
sampler's reads of each system's Deployment (desired replicas, existing pods) and of its
RQ queue list (pending), taken every fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    t: float
    desired: int
    pods: int
    pending: int


@dataclass(frozen=True)
class JobOutcome:
    enqueued: float
    started: float | None
    """Its (last) start, None when it never started before the end."""
    finished: bool
    interrupted: bool
    """Its run was cut: a worker went away under it (requeued by the operator, failed as
    abandoned, or still 'started' with its worker gone at the end)."""


@dataclass(frozen=True)
class Figures:
    jobs: int
    finished: int
    unstarted: int
    wait_p50: float
    wait_p95: float
    wait_max: float
    worker_seconds: float
    zero_to_one: float | None
    """First job -> desired replicas >= 1 (None: not at zero when it came)."""
    one_to_n: float | None
    """The load event's first job -> desired replicas > 1 (None: never above one)."""
    peak: int
    interrupted: int
    lost: int
    """Jobs whose run was cut and that did not finish by the end."""


def worker_seconds(samples: list[Sample], horizon: float) -> float:
    """Pods alive integrated over [first sample, horizon], each sample held until the next."""
    total = 0.0
    for current, following in zip(samples, [*samples[1:], None], strict=True):
        end = horizon if following is None else min(following.t, horizon)
        if end > current.t:
            total += current.pods * (end - current.t)
    return total


def raised_after(samples: list[Sample], moment: float, above: int) -> float | None:
    """Seconds from `moment` until the first sample at or after it with desired > `above`."""
    for sample in samples:
        if sample.t >= moment and sample.desired > above:
            return sample.t - moment
    return None


def desired_at(samples: list[Sample], moment: float) -> int:
    """The last desired count seen at or before `moment` (0 before the first sample)."""
    seen = 0
    for sample in samples:
        if sample.t > moment:
            break
        seen = sample.desired
    return seen


def figures(
    samples: list[Sample], outcomes: list[JobOutcome], horizon: float, event: float
) -> Figures:
    """`event`: when the replay's load event (a batch, a spike) began. A job that never
    started counts with the wait it had at the end (a lower bound)."""
    waits = np.array(
        [(o.started if o.started is not None else horizon) - o.enqueued for o in outcomes]
    )
    first = min(o.enqueued for o in outcomes)
    interrupted = [o for o in outcomes if o.interrupted]
    return Figures(
        jobs=len(outcomes),
        finished=sum(o.finished for o in outcomes),
        unstarted=sum(o.started is None for o in outcomes),
        wait_p50=float(np.percentile(waits, 50)),
        wait_p95=float(np.percentile(waits, 95)),
        wait_max=float(waits.max()),
        worker_seconds=worker_seconds(samples, horizon),
        zero_to_one=raised_after(samples, first, 0) if desired_at(samples, first) == 0 else None,
        one_to_n=raised_after(samples, event, 1),
        peak=max((s.desired for s in samples), default=0),
        interrupted=len(interrupted),
        lost=sum(not o.finished for o in interrupted),
    )


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs
