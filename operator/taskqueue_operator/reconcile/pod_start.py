"""Pod start, measured per TaskQueue: from a worker pod's creation to its RQ worker
registered in Redis (RQ's `birth`). Pure.

The origin is when the watch first told the operator of the pod (milliseconds, a few ms
after the API server created it), not `metadata.creationTimestamp`, which has whole
seconds: for starts of one or two seconds that would be half the figure. A pod that
existed before the operator saw it (an operator restart) is not measured: its first
event is a listing long after its creation. The worker's `birth` comes from the node's
clock, so the figure is as good as the cluster's time sync (NTP: milliseconds).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from taskqueue_contract import timestamps

from taskqueue_operator.observation import WorkerInfo

SAMPLES = 20
"""Pods the median rests on: recent enough to follow an image change."""
SEEN_LATE = 2.0
"""A pod first seen later than this after its creationTimestamp predates our watch."""
LONGEST = 900.0
"""A start longer than this is not a start (a pod that waited for a node, say)."""


@dataclass(frozen=True)
class PodStarts:
    samples: tuple[float, ...] = ()
    """Seconds, oldest first, at most SAMPLES."""
    done: frozenset[str] = frozenset()
    """Live pods already measured (or not measurable): each counts once."""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


def measure(
    starts: PodStarts,
    pods: Mapping[str, Mapping[str, Any]],
    seen_at: Mapping[str, float],
    workers: tuple[WorkerInfo, ...],
) -> PodStarts:
    """Fold in the pods whose first worker registered since the last tick."""
    done = set(starts.done & set(pods))  # pods gone are forgotten
    samples = list(starts.samples)
    for worker in sorted(workers, key=lambda w: w.birth):  # a pod's first worker counts
        pod = worker.hostname
        if pod is None or pod in done or pod not in pods or worker.dead:
            continue
        done.add(pod)
        seen, born = seen_at.get(pod), timestamps.epoch(worker.birth)
        created = timestamps.epoch((pods[pod].get("metadata") or {}).get("creationTimestamp"))
        if seen is None or born is None or (created is not None and seen - created > SEEN_LATE):
            continue
        start = born - seen
        if 0.0 <= start <= LONGEST:
            samples.append(round(start, 3))
    return replace(starts, samples=tuple(samples[-SAMPLES:]), done=frozenset(done))
