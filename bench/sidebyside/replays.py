"""The windows of the committed traces that `keda_side_by_side.py` replays in real time.

A committed trace lasts an hour (bench/sim/traces.py); replaying three of them for three
autoscalers at real speed would take hours, so each replay is a window of its trace around
its event, played at real speed (never compressed: KEDA's 30 s poll, the HPA's 15 s sync
and its 300 s windows keep their meaning), thinned to every k-th job where the event is
larger than the pool can drain within minutes, and in two of them (batch, batch-long)
with service times stretched past the 30 s grace period that a Deployment written for KEDA
gets; batch-long's drain also outlasts the HPA's 300 s scale-down window. The
`-light` ones thin further, so that the event fits within the pool's cap (10).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

TRACES = Path(__file__).resolve().parents[1] / "traces"


@dataclass(frozen=True)
class Replay:
    trace: str
    start: float
    """Trace second of the window's first instant."""
    length: float
    thin: int = 1
    """Keep every `thin`-th job of the window."""
    stretch: float = 1.0
    """Service times multiplied by this."""
    event: float = 0.0
    """Seconds after the window's start when its load event (a batch, the spike) begins:
    1 -> N is measured from its first job."""
    about: str = ""
    tail: float | None = None
    """Seconds to wait after the window for every system to settle, when longer than the
    bench's `--tail` (a drain that outlasts KEDA's 300 s windows)."""


REPLAYS = {
    "bursty": Replay(
        "bursty",
        1830.0,
        300.0,
        event=30.0,
        about="two batches (157 and 103 jobs in 2 s) over a trickle",
    ),
    "batch": Replay(
        "batch",
        859.0,
        420.0,
        thin=20,
        stretch=8.0,
        event=30.0,
        about="one large batch (every 20th of 1,500 jobs) of jobs ~47 s, many past a 30 s grace",
    ),
    # Jobs twice as long again (~100 s, at most 258 s): ten workers drain the batch in
    # ~520 s, longer than the HPA's 300 s scale-down window, so KEDA scales down while every
    # worker is busy and the queue is not yet empty.
    "batch-long": Replay(
        "batch",
        859.0,
        420.0,
        thin=30,
        stretch=16.0,
        event=30.0,
        tail=660.0,
        about="the batch window, every 30th job, ~100 s each: a drain longer than 300 s",
    ),
    "spike": Replay(
        "spike",
        1140.0,
        240.0,
        thin=3,
        event=60.0,
        about="steady 0.1 jobs/s, then a one-minute spike of 5 jobs/s (every 3rd job)",
    ),
    # The same windows thinned until the event fits within maxReplicas 10: above, every
    # autoscaler waits for the same ten workers and the waits measure the cap.
    "bursty-light": Replay(
        "bursty",
        1830.0,
        300.0,
        thin=4,
        event=30.0,
        about="the bursty window, every 4th job (batches of ~40 and ~26)",
    ),
    "spike-light": Replay(
        "spike",
        1140.0,
        240.0,
        thin=10,
        event=60.0,
        about="the spike window, every 10th job (1.5 jobs/s of ~3 s at the spike)",
    ),
}


def event_onset(replay: Replay, folder: Path = TRACES) -> float:
    """The offset of the load event's first job."""
    return min(offset for offset, _ in jobs(replay, folder) if offset >= replay.event)


def jobs(replay: Replay, folder: Path = TRACES) -> list[tuple[float, float]]:
    """(seconds after the window's start, service seconds) of each job, in arrival order."""
    frame = pq.read_table(folder / f"{replay.trace}.parquet").to_pandas()
    window = frame[(frame.arrival >= replay.start) & (frame.arrival < replay.start + replay.length)]
    window = window.sort_values("arrival").iloc[:: replay.thin]
    return [
        (float(arrival - replay.start), float(service * replay.stretch))
        for arrival, service in zip(window.arrival, window.service, strict=True)
    ]
