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
