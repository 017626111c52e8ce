"""Example workloads from the seed systems, used by the demo and the tests.

Function paths for ``taskqueue-enqueue --function`` / TaskQueue schedules:

* ``taskqueue_worker.examples.ingest_candles`` - Upbit-style candles -> Parquet dataset
* ``taskqueue_worker.examples.backtest`` - EMA crossover over that dataset -> table
* ``taskqueue_worker.examples.make_table`` - a DataFrame stored as Parquet (decorator opt-in)
* ``taskqueue_worker.examples.noop`` / ``sleep`` / ``fail`` / ``flaky`` - tiny test tasks

Attributes load lazily (PEP 562): a fork worker resolves a job's function in the
freshly forked work horse, so ``examples.noop`` must not drag pandas in with it.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "backtest": "taskqueue_worker.examples.backtesting",
    "ingest_candles": "taskqueue_worker.examples.candles",
    "fail": "taskqueue_worker.examples.basic",
    "flaky": "taskqueue_worker.examples.basic",
    "noop": "taskqueue_worker.examples.basic",
    "sleep": "taskqueue_worker.examples.basic",
    "make_table": "taskqueue_worker.examples.tables",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
