"""Job outcomes over a sliding window, from RQ's per-worker lifetime counters. Pure.

Each worker hash counts its successful and failed jobs. Between two observations the
difference is what finished meanwhile; a worker seen for the first time counts from zero
only if it was born after the previous observation (else its history predates us).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from taskqueue_contract import timestamps

from taskqueue_operator.observation import RedisObservation

WINDOW_SECONDS = 600.0


@dataclass
class OutcomeWindow:
    window: float = WINDOW_SECONDS
    counters: dict[str, tuple[int, int]] = field(default_factory=dict)
    events: deque[tuple[float, int, int]] = field(default_factory=deque)
    last_time: float | None = None

    def update(self, observation: RedisObservation) -> None:
        succeeded = failed = 0
        seen: dict[str, tuple[int, int]] = {}
        for worker in observation.workers:
            now = (worker.successful_job_count, worker.failed_job_count)
            seen[worker.name] = now
            before = self.counters.get(worker.name)
            if before is None:
                if self.last_time is None or not _born_after(worker.birth, self.last_time):
                    continue  # its counts predate our first look
                before = (0, 0)
            if now[0] < before[0] or now[1] < before[1]:
                continue  # a reset: take the new value as the baseline
            succeeded += now[0] - before[0]
            failed += now[1] - before[1]
        self.counters = seen
        self.last_time = observation.time
        if succeeded or failed:
            self.events.append((observation.time, succeeded, failed))
        while self.events and self.events[0][0] < observation.time - self.window:
            self.events.popleft()

    def failure_ratio(self) -> float | None:
        succeeded = sum(e[1] for e in self.events)
        failed = sum(e[2] for e in self.events)
        total = succeeded + failed
        return failed / total if total else None


def _born_after(birth: str, moment: float) -> bool:
    born = timestamps.epoch(birth)
    return born is not None and born > moment


@dataclass
class JobCounters:
    """Monotonic finished / failed job counts per queue, for `rate()`. Pure.

    The source is RQ's lifetime counters in each worker hash (`successful_job_count`,
    `failed_job_count`), not the finished / failed registries, because only the workers'
    counters move exactly once per job whatever happens to the job afterwards:

    * registry entries expire (finished after `result_ttl`, 500 s by default; failed after
      `failure_ttl`), a job with `result_ttl=0` never enters the finished registry, and a
      dead letter that is requeued or deleted leaves the failed one: a registry's size, or
      the difference of two sizes, goes down as well as up and misses jobs;
    * a worker hash only ever counts up while the worker lives. A restarted worker is a new
      hash (RQ names workers by a fresh id) counting from zero: a worker seen for the first
      time counts from zero when it was born after the previous observation, and from its
      current value otherwise (its history predates this operator: counting it would jump
      the counter by the worker's whole lifetime). A hash whose counts went down, or whose
      `birth` changed (a worker re-using a name), restarted: it counts from zero again.
    * a worker that exits between two observations (a scale-down's warm shutdown finishes
      its job, then unregisters) has left the queues' worker sets, but RQ keeps its hash
      for 60 s: the loop reads the hashes of the workers it saw last time and no longer
      finds (`RedisObservation.departed`), so its last jobs are counted too.

    `failed` counts failed executions, as RQ's counter does: a job that fails and is
    retried counts once per failed attempt. A worker's jobs are counted under the queue it
    listens to; a worker listening to several queues does not record which queue a job
    came from, so they are counted under the queues' names joined by "," (RQ's own spelling
    in the worker hash; the sum by TaskQueue is exact either way).

    The totals start at zero with the loop (an operator restart or a new leader): a counter
    reset, which `rate()` and `increase()` handle. Workers born after the loop started count
    from zero even if Redis was first read after their first jobs (a new TaskQueue).
    """

    finished: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    workers: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    """Per worker name: (birth, successful, failed) at the last observation."""
    last_time: float | None = None
    """The previous observation's time; before the first, when the loop started (a worker
    born after it counts from zero), or None (every worker's history predates us)."""

    def update(self, observation: RedisObservation) -> None:
        seen: dict[str, tuple[str, int, int]] = {}
        departed = [w for w in observation.departed if w.name in self.workers]
        gone = {w.name for w in departed}
        for worker in (*observation.workers, *departed):
            now = (worker.birth, worker.successful_job_count, worker.failed_job_count)
            if worker.name not in gone and not worker.dead:
                seen[worker.name] = now  # a dead or departed hash is counted a last time
            before = self.workers.get(worker.name)
            if before is None:
                new = self.last_time is not None and _born_after(worker.birth, self.last_time)
                before = (worker.birth, 0, 0) if new else now  # else its counts predate us
            elif before[0] != now[0] or now[1] < before[1] or now[2] < before[2]:
                before = (now[0], 0, 0)  # the same name, a new worker
            # Both series exist from the first look, at 0: Prometheus sees the first job as
            # an increase (a series that appears at 1 would hide it from rate()).
            queue = ",".join(worker.queues)
            self.finished[queue] = self.finished.get(queue, 0) + now[1] - before[1]
            self.failed[queue] = self.failed.get(queue, 0) + now[2] - before[2]
        self.workers = seen
        self.last_time = observation.time

    def declare(self, queue: str) -> None:
        """A label the TaskQueue's workers will count under (its queues, joined): exported
        at 0 before any worker exists, so that the first job of a new TaskQueue is an
        increase for `rate()` too, not the start of a series."""
        self.finished.setdefault(queue, 0)
        self.failed.setdefault(queue, 0)

    def queues(self) -> list[str]:
        """The queue labels with a counter, in a stable order."""
        return sorted(set(self.finished) | set(self.failed))


@dataclass
class Throughput:
    """Jobs finished and failed per minute over the last `window` seconds, from monotonic
    totals (`JobCounters`' sums) sampled once per tick. Pure.

    A total that goes down (it cannot within one loop, but a caller may hand in fresh
    counters) starts the window afresh rather than showing a negative rate."""

    window: float = 60.0
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)

    def update(self, time: float, finished: int, failed: int) -> None:
        if self.samples and (finished < self.samples[-1][1] or failed < self.samples[-1][2]):
            self.samples.clear()
        self.samples.append((time, finished, failed))
        while len(self.samples) > 2 and self.samples[1][0] <= time - self.window:
            self.samples.popleft()

    def per_minute(self) -> tuple[float | None, float | None]:
        """(finished, failed) per minute; None before two samples 5 s apart."""
        if len(self.samples) < 2:
            return None, None
        (t0, finished0, failed0), (t1, finished1, failed1) = self.samples[0], self.samples[-1]
        if t1 - t0 < 5.0:
            return None, None
        scale = 60.0 / (t1 - t0)
        return round((finished1 - finished0) * scale, 2), round((failed1 - failed0) * scale, 2)
