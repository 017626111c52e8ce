"""Seeded arrival traces (one row per job: arrival second, service seconds) stored as Parquet.

Each trace lasts an hour of simulated time:

* bursty: a trickle (0.1 jobs/s) plus batches of 30-200 jobs enqueued within 2 s
  (enqueue_many from a cron job or a user's click) every ~4 minutes; jobs of ~2 s.
* diurnal: a day compressed into the hour, 0.1 jobs/s at night to 3.1 jobs/s at noon;
  jobs of ~1.5 s.
* spike: 0.3 jobs/s all along, and 15 jobs/s for one minute at t=20 min; jobs of ~3 s.
* batch: one large batch, 1,500 jobs enqueued within 5 s at a random moment of the
  first half hour (a nightly backtest sweep), over a trickle of 0.05 jobs/s; jobs of ~6 s.

Service times are log-normal (sigma 0.6): mostly near the mean, with a tail.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

DURATION = 3600.0
SIGMA = 0.6
GENERATOR_VERSION = "1"  # bump when a generator changes: stored traces are regenerated


def _service(rng: np.random.Generator, count: int, mean: float) -> np.ndarray:
    # A log-normal with the given mean: mu = ln(mean) - sigma^2 / 2.
    return rng.lognormal(np.log(mean) - SIGMA**2 / 2, SIGMA, count)


def _poisson(
    rng: np.random.Generator, rate: Callable[[np.ndarray], np.ndarray], peak: float
) -> np.ndarray:
    """A non-homogeneous Poisson process on [0, DURATION) by thinning."""
    count = rng.poisson(peak * DURATION)
    times = np.sort(rng.uniform(0.0, DURATION, count))
    return times[rng.uniform(0.0, peak, count) < rate(times)]


def bursty(rng: np.random.Generator) -> pd.DataFrame:
    trickle = _poisson(rng, lambda t: np.full_like(t, 0.1), 0.1)
    bursts = []
    moment = rng.exponential(240.0)
    while moment < DURATION - 60:
        size = int(rng.integers(30, 201))
        bursts.append(moment + rng.uniform(0.0, 2.0, size))
        moment += rng.exponential(240.0)
    arrivals = np.sort(np.concatenate([trickle, *bursts]))
    return pd.DataFrame({"arrival": arrivals, "service": _service(rng, len(arrivals), 2.0)})


def diurnal(rng: np.random.Generator) -> pd.DataFrame:
    def rate(t: np.ndarray) -> np.ndarray:
        return 0.1 + 3.0 * (1 - np.cos(2 * np.pi * t / DURATION)) / 2

    arrivals = _poisson(rng, rate, 3.1)
    return pd.DataFrame({"arrival": arrivals, "service": _service(rng, len(arrivals), 1.5)})


def spike(rng: np.random.Generator) -> pd.DataFrame:
    def rate(t: np.ndarray) -> np.ndarray:
        return np.where((t >= 1200) & (t < 1260), 15.3, 0.3)

    arrivals = _poisson(rng, rate, 15.3)
    return pd.DataFrame({"arrival": arrivals, "service": _service(rng, len(arrivals), 3.0)})


def batch(rng: np.random.Generator) -> pd.DataFrame:
    trickle = _poisson(rng, lambda t: np.full_like(t, 0.05), 0.05)
    moment = rng.uniform(60.0, DURATION / 2)
    sweep = moment + rng.uniform(0.0, 5.0, 1500)
    arrivals = np.sort(np.concatenate([trickle, sweep]))
    return pd.DataFrame({"arrival": arrivals, "service": _service(rng, len(arrivals), 6.0)})


GENERATORS: dict[str, Callable[[np.random.Generator], pd.DataFrame]] = {
    "bursty": bursty,
    "diurnal": diurnal,
    "spike": spike,
    "batch": batch,
}


def generate(name: str, seed: int) -> pd.DataFrame:
    """A fresh trace of this generator and seed (one stream per trace, so adding a trace
    does not change the others)."""
    return GENERATORS[name](np.random.default_rng([seed, sum(name.encode())]))


def load(name: str, folder: Path, seed: int) -> pd.DataFrame:
    """The stored trace if it was made by this generator and seed, else a new one (saved)."""
    path = folder / f"{name}.parquet"
    wanted = {b"seed": str(seed).encode(), b"generator": GENERATOR_VERSION.encode()}
    if path.exists():
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if all(meta.get(k) == v for k, v in wanted.items()):
            return table.to_pandas()
    frame = generate(name, seed)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**wanted, b"trace": name.encode()})
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return frame
