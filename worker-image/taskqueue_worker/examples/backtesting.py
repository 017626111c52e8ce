"""Backtests (seed 000) over the candles dataset written by ``ingest_candles``.

``backtest("ema_cross", ["KRW-BTC"], "2024-01-01", "2024-03-01")`` returns one row
per symbol. Run under ``taskqueue-worker`` with ``TASKQUEUE_RESULT_URI`` set, the
table is stored as Parquet keyed by the job id (see :mod:`taskqueue_worker.results`);
progress is reported per symbol.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from taskqueue_worker.examples.candles import DATA_ROOT_ENV, _utc, load_candles, parse_timeframe
from taskqueue_worker.progress import set_progress

RESULT_COLUMNS = [
    "symbol",
    "strategy",
    "timeframe",
    "start",
    "end",
    "bars",
    "trades",
    "exposure",
    "total_return",
    "buy_hold_return",
    "max_drawdown",
    "sharpe",
]

Strategy = Callable[[pd.Series, dict[str, Any]], pd.Series]


def ema_cross(close: pd.Series, params: dict[str, Any]) -> pd.Series:
    """Long (1) while the fast EMA is above the slow EMA, flat (0) otherwise."""
    fast, slow = int(params.get("fast", 12)), int(params.get("slow", 26))
    if not 0 < fast < slow:
        raise ValueError(f"ema_cross needs 0 < fast < slow, got fast={fast} slow={slow}")
    fast_ema = close.ewm(span=fast, adjust=False).mean()
    slow_ema = close.ewm(span=slow, adjust=False).mean()
    return (fast_ema > slow_ema).astype("float64")


STRATEGIES: dict[str, Strategy] = {"ema_cross": ema_cross}


def run_strategy(
    close: pd.Series, signal: pd.Series, fee_rate: float, periods_per_year: float
) -> dict[str, float | int]:
    """Metrics of trading `signal` on `close`.

    The position held over bar t is the signal at t-1 (no look-ahead); every change
    of position pays `fee_rate` on the traded fraction.
    """
    position = signal.shift(1).fillna(0.0)
    returns = close.pct_change().fillna(0.0)
    costs = position.diff().abs().fillna(position.abs()) * fee_rate
    strategy_returns = position * returns - costs
    equity = (1.0 + strategy_returns).cumprod()
    drawdown = equity / equity.cummax() - 1.0
    std = strategy_returns.std(ddof=0)
    sharpe = (
        float(strategy_returns.mean() / std * math.sqrt(periods_per_year)) if std > 0 else math.nan
    )
    entries = int(((position > 0) & (position.shift(1).fillna(0.0) <= 0)).sum())
    return {
        "bars": len(close),
        "trades": entries,
        "exposure": float(position.mean()) if len(position) else math.nan,
        "total_return": float(equity.iloc[-1] - 1.0) if len(equity) else math.nan,
        "buy_hold_return": float(close.iloc[-1] / close.iloc[0] - 1.0) if len(close) else math.nan,
        "max_drawdown": float(drawdown.min()) if len(drawdown) else math.nan,
        "sharpe": sharpe,
    }


def backtest(
    strategy: str,
    symbols: Sequence[str] | str,
    start: str | datetime,
    end: str | datetime,
    *,
    timeframe: str = "1D",
    root: str | None = None,
    params: dict[str, Any] | None = None,
    fee_rate: float = 0.0005,
) -> pd.DataFrame:
    """Task: run `strategy` on each symbol over ``start <= t < end``; one row per symbol.

    Data comes from ``<root>/<symbol>/<timeframe>/<year>.parquet`` (`root` defaults
    to ``TASKQUEUE_DATA_ROOT``). A symbol without data in the range is an error: a
    silent empty row would read as "no trades".
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    symbol_list = [symbols] if isinstance(symbols, str) else list(symbols)
    if not symbol_list:
        raise ValueError("no symbols given")
    root = root or os.environ.get(DATA_ROOT_ENV)
    if not root:
        raise ValueError(f"no dataset root: pass root= or set {DATA_ROOT_ENV}")
    start_at, end_at = _utc(start), _utc(end)
    if not start_at < end_at:
        raise ValueError(f"start {start_at.isoformat()} must be before end {end_at.isoformat()}")
    tf = parse_timeframe(timeframe)
    periods_per_year = 365.25 * 86400 / tf.step.total_seconds()  # crypto trades 24/7

    rows = []
    for done, symbol in enumerate(symbol_list, start=1):
        candles = load_candles(root, symbol, tf.name, start_at, end_at)
        if candles.empty:
            raise ValueError(f"no {tf.name} candles for {symbol} in [{start_at}, {end_at})")
        close = candles.set_index("timestamp")["close"]
        signal = STRATEGIES[strategy](close, dict(params or {}))
        metrics = run_strategy(close, signal, fee_rate, periods_per_year)
        rows.append(
            {
                "symbol": symbol,
                "strategy": strategy,
                "timeframe": tf.name,
                "start": candles["timestamp"].iloc[0],
                "end": candles["timestamp"].iloc[-1],
                **metrics,
            }
        )
        set_progress(done / len(symbol_list), message=f"{symbol} done")
    result = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return result.replace({np.inf: np.nan, -np.inf: np.nan})
