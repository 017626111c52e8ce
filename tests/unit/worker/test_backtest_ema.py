"""EMA-crossover backtest: the maths on hand-made series, then over an ingested dataset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from taskqueue_worker.examples import backtest
from taskqueue_worker.examples.backtesting import RESULT_COLUMNS, ema_cross, run_strategy
from taskqueue_worker.examples.candle_server import CandleServer
from taskqueue_worker.examples.candles import ingest_candles


def test_positions_follow_the_previous_bar_and_pay_fees() -> None:
    close = pd.Series([1.0, 2.0, 4.0, 2.0])
    signal = pd.Series([1.0, 0.0, 0.0, 0.0])
    fee = 0.01
    metrics = run_strategy(close, signal, fee, periods_per_year=365)
    # Held over bar 1 only (signal of bar 0): +100%, a buy fee then a sell fee.
    assert metrics["total_return"] == pytest.approx((1 + 1.0 - fee) * (1 - fee) - 1)
    assert metrics["trades"] == 1
    assert metrics["exposure"] == pytest.approx(0.25)
    assert metrics["buy_hold_return"] == pytest.approx(1.0)
    assert metrics["bars"] == 4


def test_no_look_ahead_a_bar_is_traded_only_after_its_signal() -> None:
    close = pd.Series([1.0, 2.0, 1.0, 2.0, 1.0])
    went_up = (close > close.shift(1)).astype(float)  # known at the bar's close
    metrics = run_strategy(close, went_up, fee_rate=0.0, periods_per_year=365)
    # Held over the bar after each rise, which always falls here; a same-bar
    # position (look-ahead) would have earned every rise instead.
    assert metrics["total_return"] == pytest.approx(-0.75)


def test_max_drawdown_and_flat_equity() -> None:
    close = pd.Series([10.0, 10.0, 10.0])
    metrics = run_strategy(close, pd.Series([0.0, 0.0, 0.0]), 0.0, 365)
    assert metrics["total_return"] == 0.0 and metrics["max_drawdown"] == 0.0
    assert math.isnan(metrics["sharpe"])  # no variance, no ratio
    falling = pd.Series([10.0, 8.0, 6.0, 9.0])
    metrics = run_strategy(falling, pd.Series([1.0, 1.0, 1.0, 1.0]), 0.0, 365)
    assert metrics["max_drawdown"] == pytest.approx(-0.4)


def test_ema_cross_signal() -> None:
    rising = pd.Series(np.linspace(1, 2, 50))
    assert ema_cross(rising, {"fast": 3, "slow": 10}).iloc[5:].eq(1.0).all()
    falling = pd.Series(np.linspace(2, 1, 50))
    assert ema_cross(falling, {}).eq(0.0).all()
    with pytest.raises(ValueError):
        ema_cross(rising, {"fast": 10, "slow": 3})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("candles")
    with CandleServer() as server:
        for symbol in ("KRW-BTC", "KRW-ETH"):
            ingest_candles(symbol, "1D", 400, root=str(root), base_url=server.url, end="2024-03-01")
    return root


def test_backtest_over_the_dataset_returns_one_row_per_symbol(dataset: Path) -> None:
    table = backtest(
        "ema_cross", ["KRW-BTC", "KRW-ETH"], "2023-03-01", "2024-03-01", root=str(dataset)
    )
    assert list(table.columns) == RESULT_COLUMNS
    assert table["symbol"].tolist() == ["KRW-BTC", "KRW-ETH"]
    assert table["bars"].tolist() == [366, 366]  # 2023-03-01 .. 2024-02-29, daily
    assert (table["trades"] > 0).all()
    assert table["start"].iloc[0] == pd.Timestamp("2023-03-01T00:00Z")
    assert table["total_return"].notna().all() and (table["max_drawdown"] <= 0).all()
    again = backtest("ema_cross", "KRW-BTC", "2023-03-01", "2024-03-01", root=str(dataset))
    pd.testing.assert_frame_equal(again, table.iloc[:1])  # deterministic


def test_backtest_refuses_what_it_cannot_run(dataset: Path) -> None:
    with pytest.raises(ValueError, match="no 1D candles for KRW-XRP"):
        backtest("ema_cross", ["KRW-XRP"], "2023-03-01", "2024-03-01", root=str(dataset))
    with pytest.raises(ValueError, match="unknown strategy"):
        backtest("rsi", ["KRW-BTC"], "2023-03-01", "2024-03-01", root=str(dataset))
    with pytest.raises(ValueError, match="before end"):
        backtest("ema_cross", ["KRW-BTC"], "2024-03-01", "2023-03-01", root=str(dataset))
