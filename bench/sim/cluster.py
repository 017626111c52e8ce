"""A discrete-event model of one RQ queue, its worker pods and a ReplicaSet.

* Jobs wait in a FIFO list; an idle ready worker takes the head at once (BLPOP), the
  longest-idle worker first (Redis serves blocked clients in order).
* A pod is billed from creation; its worker is ready a pod start later: log-normal
  around `start_delay` (its median) with `start_sigma`, the shape measured on the real
  node (median 1.3 s, p95 about 2 s: sigma 0.25).
* Scale-down follows the ReplicaSet's ranking of victims: pods not ready yet first, then
  the lowest `controller.kubernetes.io/pod-deletion-cost`, then the most recently ready.
* A removed busy pod either finishes its job first (warm shutdown with a grace period
  that covers the job: our operator's setup) or has its job killed after `grace`
  seconds; a killed job is retried once RQ notices it was abandoned (`requeue_delay`).

Controllers act through `at` (timed callbacks) and `scale` (set the replicas).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from taskqueue_operator.observation import QueueStats, RedisObservation, WorkerInfo

EPOCH = 1_700_000_000.0  # simulated t=0 as wall-clock time (workers' birth stamps)

# Heap priorities at equal times: the world moves, then patches land, then controllers look.
WORLD, ACTUATE, CONTROL = 0, 1, 2


def _iso(moment: float) -> str:
    """A simulated moment as RQ writes timestamps."""
    return datetime.fromtimestamp(EPOCH + moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Pod:
    name: str
    created: float
    ready: bool = False
    ready_at: float = 0.0
    birth: str = ""
    job: int | None = None
    run: int = 0
    """Bumped when a job is killed, so its stale completion event is ignored."""
    started: float = 0.0
    terminating: bool = False
    deletion_cost: int = 0
    completed: int = 0
    working: float = 0.0


@dataclass
class Cluster:
    arrivals: np.ndarray
    service: np.ndarray
    start_delay: float = 1.3
    """Median pod start (creation to worker registered), seconds."""
    start_sigma: float = 0.25
    seed: int = 0
    warm_shutdown: bool = True
    """True: a removed busy pod finishes its job (grace covers it). False: see `grace`."""
    grace: float = 0.0
    """Seconds a removed busy pod may keep running before its job is killed."""
    requeue_delay: float = 90.0
    """Killed job back in the queue after RQ's abandoned-job detection (its best case)."""

    now: float = 0.0
    queue: deque[int] = field(default_factory=deque)
    pods: dict[str, Pod] = field(default_factory=dict)
    idle: dict[str, float] = field(default_factory=dict)
    """Idle ready workers, in the order they became idle (dicts keep insertion order)."""
    killed: int = 0
    worker_seconds: float = 0.0
    starts: np.ndarray = field(init=False)
    """Start of each job's completing run; wait = start - arrival."""
    runs: np.ndarray = field(init=False)
    pod_starts: list[float] = field(default_factory=list)
    """Measured starts of the pods that became ready, oldest first (what the operator sees)."""
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)
    """(time, pods, pending, running) whenever the replica count changes."""
    _events: list[tuple[float, int, int, Callable[[], None]]] = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)
    _names: itertools.count = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self.starts = np.full(len(self.arrivals), np.nan)
        self.runs = np.zeros(len(self.arrivals), dtype=np.int64)
        for job, moment in enumerate(self.arrivals):
            self.at(float(moment), lambda job=job: self._arrive(job))

    # ---------------------------------------------------------------- event machinery

    def at(self, moment: float, action: Callable[[], None], priority: int = WORLD) -> None:
        heapq.heappush(self._events, (moment, priority, next(self._seq), action))

    def every(self, period: float, offset: float, action: Callable[[], None]) -> None:
        def tick() -> None:
            action()
            self.at(self.now + period, tick, CONTROL)

        self.at(offset, tick, CONTROL)

    def run_until(self, horizon: float) -> None:
        while self._events and self._events[0][0] <= horizon:
            moment, _, _, action = heapq.heappop(self._events)
            self.now = moment
            action()
        self.now = horizon
        for pod in list(self.pods.values()):  # bill what is still alive
            self.worker_seconds += horizon - pod.created

    # ------------------------------------------------------------------------- jobs

    def _arrive(self, job: int) -> None:
        self.queue.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.queue and self.idle:
            name = next(iter(self.idle))
            del self.idle[name]
            self._start(self.pods[name], self.queue.popleft())

    def _start(self, pod: Pod, job: int) -> None:
        pod.job, pod.started = job, self.now
        run = pod.run
        self.at(self.now + float(self.service[job]), lambda: self._finish(pod, run))

    def _finish(self, pod: Pod, run: int) -> None:
        if pod.run != run or pod.job is None:
            return  # the job was killed
        job = pod.job
        self.starts[job] = pod.started
        pod.completed += 1
        pod.working += float(self.service[job])
        pod.job = None
        if pod.terminating:
            self._remove(pod)
            return
        self.idle[pod.name] = self.now
        self._dispatch()

    def _kill(self, pod: Pod) -> None:
        if pod.job is None or pod.name not in self.pods:
            return  # finished within the grace period
        job = pod.job
        pod.job, pod.run = None, pod.run + 1
        self.killed += 1
        self.runs[job] += 1
        self.at(self.now + self.requeue_delay, lambda: self._arrive(job))
        self._remove(pod)

    # ------------------------------------------------------------------------- pods

    def live(self) -> list[Pod]:
        """Pods the ReplicaSet counts (not terminating)."""
        return [p for p in self.pods.values() if not p.terminating]

    def _ready(self, pod: Pod) -> None:
        if pod.name not in self.pods or pod.terminating:
            return
        pod.ready, pod.ready_at = True, self.now
        self.pod_starts.append(self.now - pod.created)
        pod.birth = _iso(self.now)
        self.idle[pod.name] = self.now
        self._dispatch()

    def _remove(self, pod: Pod) -> None:
        self.pods.pop(pod.name, None)
        self.idle.pop(pod.name, None)
        self.worker_seconds += self.now - pod.created

    def _pod_start(self) -> float:
        if self.start_delay <= 0 or self.start_sigma <= 0:
            return self.start_delay
        return float(self.start_delay * self._rng.lognormal(0.0, self.start_sigma))

    def scale(self, replicas: int) -> None:
        """What the ReplicaSet does when the Deployment's replicas change."""
        live = self.live()
        for _ in range(replicas - len(live)):
            pod = Pod(name=f"pod-{next(self._names)}", created=self.now)
            self.pods[pod.name] = pod
            self.at(self.now + self._pod_start(), lambda pod=pod: self._ready(pod))
        if replicas < len(live):
            ranked = sorted(live, key=lambda p: (p.ready, p.deletion_cost, -p.ready_at))
            for pod in ranked[: len(live) - replicas]:
                if pod.job is None:
                    self._remove(pod)
                elif self.warm_shutdown:
                    pod.terminating = True  # finishes its job, takes no other
                    self.idle.pop(pod.name, None)
                elif self.grace <= 0:
                    self._kill(pod)
                else:
                    pod.terminating = True
                    self.idle.pop(pod.name, None)
                    self.at(self.now + self.grace, lambda pod=pod: self._kill(pod))
        self.timeline.append((self.now, replicas, len(self.queue), self.running))

    # -------------------------------------------------------------------- observing

    @property
    def running(self) -> int:
        return sum(1 for p in self.pods.values() if p.job is not None)

    def observe(self) -> RedisObservation:
        """What the operator's one pipelined round trip would return now."""
        workers = tuple(
            WorkerInfo(
                name=f"{pod.name}-worker",
                state="busy" if pod.job is not None else "idle",
                hostname=pod.name,
                executions=(f"{pod.job}:1",) if pod.job is not None else (),
                birth=pod.birth,
                successful_job_count=pod.completed,
                total_working_time=pod.working,
            )
            for pod in self.pods.values()
            if pod.ready
        )
        oldest = _iso(float(self.arrivals[self.queue[0]])) if self.queue else None
        stats = QueueStats(
            "default", pending=len(self.queue), running=self.running, oldest_enqueued_at=oldest
        )
        return RedisObservation(time=EPOCH + self.now, queues=(stats,), workers=workers)
