"""Candles ingestion against the local candles server (real HTTP on 127.0.0.1, no Redis)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from taskqueue_worker.examples import candles
from taskqueue_worker.examples.candle_server import CandleServer, align, page
from taskqueue_worker.examples.candles import (
    CandleClient,
    RateLimiter,
    ingest_candles,
    load_candles,
    parse_remaining_req,
    parse_timeframe,
)

END = "2024-01-10T00:00:00Z"


def rows_on_disk(root: Path, symbol: str = "KRW-BTC", timeframe: str = "1H") -> pd.DataFrame:
    files = sorted((root / symbol / timeframe).glob("*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def test_timeframes_and_aliases() -> None:
    assert parse_timeframe("1h").name == "1H"
    assert parse_timeframe("60m").path == "minutes/60"
    assert parse_timeframe("1D").path == "days"
    assert parse_timeframe("1w").step == timedelta(weeks=1)
    assert parse_timeframe("15m").step == timedelta(minutes=15)
    with pytest.raises(ValueError, match="unknown timeframe"):
        parse_timeframe("2H")


def test_rate_limiter_spaces_calls_on_a_fake_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
    starts = []
    for _ in range(5):
        limiter.acquire()
        starts.append(now[0])
        now[0] += 0.01  # the request itself
    assert [round(b - a, 6) for a, b in itertools.pairwise(starts)] == [0.1] * 4
    now[0] += 5  # idle time is not banked as a burst
    limiter.acquire()
    t = now[0]
    limiter.acquire()
    assert now[0] - t == pytest.approx(0.1)
    limiter.defer(2.0)
    t = now[0]
    limiter.acquire()
    assert now[0] - t == pytest.approx(2.0)


def test_parse_remaining_req() -> None:
    assert parse_remaining_req("group=candles; min=599; sec=9") == {"min": 599, "sec": 9}
    assert parse_remaining_req(None) == {}


def test_server_pages_backwards_newest_first_and_is_deterministic() -> None:
    tf = parse_timeframe("1H")
    to = datetime(2024, 1, 1, 5, 30, tzinfo=UTC)
    got = page("KRW-BTC", tf, to, 3, None)
    assert [c["candle_date_time_utc"] for c in got] == [
        "2024-01-01T05:00:00",
        "2024-01-01T04:00:00",
        "2024-01-01T03:00:00",
    ]
    assert got == page("KRW-BTC", tf, to, 3, None)
    assert (
        page("KRW-BTC", tf, datetime(2024, 1, 1, 5, tzinfo=UTC), 1, None)[0]["candle_date_time_utc"]
        == "2024-01-01T04:00:00"
    )  # `to` is exclusive
    week = parse_timeframe("1W")
    assert align(datetime(2024, 1, 10, tzinfo=UTC), week).weekday() == 0  # Mondays


def test_ingest_writes_yearly_partitions_with_utc_timestamps(tmp_path: Path) -> None:
    with CandleServer() as server:
        summary = ingest_candles(
            "KRW-BTC", "1h", 20, root=str(tmp_path), base_url=server.url, end=END
        )
    assert summary["timeframe"] == "1H" and summary["fetched"] == 480
    assert summary["added"] == {"2023": 264, "2024": 216}
    assert summary["requests"] == 3  # 200 + 200 + 80
    assert sorted(p.name for p in (tmp_path / "KRW-BTC" / "1H").iterdir()) == [
        "2023.parquet",
        "2024.parquet",
    ]
    data = rows_on_disk(tmp_path)
    assert str(data["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert data["timestamp"].min() == pd.Timestamp("2023-12-21T00:00Z")
    assert data["timestamp"].max() == pd.Timestamp("2024-01-09T23:00Z")
    in_2023 = pq.read_table(tmp_path / "KRW-BTC" / "1H" / "2023.parquet").to_pandas()
    assert (in_2023["timestamp"].dt.year == 2023).all()
    assert list(data.columns) == candles.COLUMNS


def test_ingest_twice_over_overlapping_days_adds_no_duplicates(tmp_path: Path) -> None:
    with CandleServer() as server:
        ingest_candles("KRW-BTC", "1H", 20, root=str(tmp_path), base_url=server.url, end=END)
        first = rows_on_disk(tmp_path)
        again = ingest_candles(
            "KRW-BTC", "1H", 20, root=str(tmp_path), base_url=server.url, end="2024-01-15T00:00Z"
        )
    data = rows_on_disk(tmp_path)
    assert data["timestamp"].is_unique
    assert len(data) == 25 * 24  # 2023-12-21 .. 2024-01-14, hourly
    assert again["added"] == {"2023": 0, "2024": 120}
    overlap = data[data["timestamp"] < pd.Timestamp(END)].reset_index(drop=True)
    pd.testing.assert_frame_equal(overlap, first)  # same candles, same values


def test_merge_keeps_the_latest_version_of_a_candle(tmp_path: Path) -> None:
    location = candles.storage.resolve(str(tmp_path))
    tf = parse_timeframe("1D")
    stamp = pd.Timestamp("2024-02-01T00:00Z")
    first = candles.normalise(
        pd.DataFrame({"timestamp": [stamp], **{c: [1.0] for c in candles.COLUMNS[1:]}})
    )
    second = first.assign(close=2.0)
    candles.merge_into_dataset(location, "X", tf, first)
    assert candles.merge_into_dataset(location, "X", tf, second) == {2024: 0}
    assert load_candles(str(tmp_path), "X", "1D")["close"].tolist() == [2.0]


def test_requests_respect_the_rate_limit_measured_by_the_server(tmp_path: Path) -> None:
    with CandleServer(rate_limit=10) as server:
        # Two clients in one process share the limiter: the limit is per API, not per call.
        ingest_candles("KRW-BTC", "1H", 60, root=str(tmp_path), base_url=server.url, end=END)
        ingest_candles("KRW-ETH", "1H", 30, root=str(tmp_path), base_url=server.url, end=END)
        times = server.log.times()
        statuses = server.log.statuses()
    assert len(times) == 8 + 4 and set(statuses) == {200}
    interval = 1 / 10
    # Lower bounds only (a slow machine only spreads requests out); 0.1 s of slack
    # absorbs the server thread's scheduling delay in stamping an arrival. Over the 11
    # intervals that is 1.0 s at least: a limiter that let requests through unpaced fails.
    # (No bound on single neighbours: on a loaded machine one late stamp followed by a
    # punctual one measured 25 ms apart requests sent 100 ms apart.)
    for (i, a), (j, b) in itertools.combinations(enumerate(times), 2):
        assert b - a >= (j - i) * interval - 0.1, (i, j, b - a)


def test_remaining_req_sec_0_makes_the_client_wait_for_the_next_window(tmp_path: Path) -> None:
    with CandleServer(rate_limit=3) as server:
        ingest_candles("KRW-BTC", "1H", 40, root=str(tmp_path), base_url=server.url, end=END)
        times = server.log.times()
        statuses = server.log.statuses()
    assert len(times) == 5 and set(statuses) == {200}  # never throttled by the server
    assert times[3] - times[0] >= 1.0 - 0.1


def test_429_answers_are_retried() -> None:
    # No Remaining-Req header and a client faster than the server allows: 429s follow.
    with CandleServer(rate_limit=2, remaining_header=False) as server:
        client = CandleClient(server.url, limiter=RateLimiter(50))
        tf = parse_timeframe("1H")
        end = datetime(2024, 1, 10, tzinfo=UTC)
        pages = list(client.candles("KRW-BTC", tf, end - timedelta(days=25), end))
        statuses = server.log.statuses()
    assert sum(len(p) for p in pages) == 25 * 24
    assert statuses.count(200) == 3 and 429 in statuses


def test_listing_date_ends_pagination(tmp_path: Path) -> None:
    listed = datetime(2024, 1, 5, tzinfo=UTC)
    with CandleServer(listed=listed) as server:
        summary = ingest_candles(
            "KRW-NEW", "1D", 30, root=str(tmp_path), base_url=server.url, end=END
        )
    assert summary["fetched"] == 5 and summary["requests"] == 1


def test_end_in_another_timezone_is_converted_to_utc(tmp_path: Path) -> None:
    with CandleServer() as server:
        summary = ingest_candles(
            "KRW-BTC",
            "1H",
            1,
            root=str(tmp_path),
            base_url=server.url,
            end="2024-01-10T09:00:00+09:00",
        )
    assert summary["end"] == "2024-01-10T00:00:00+00:00"
    assert rows_on_disk(tmp_path)["timestamp"].max() == pd.Timestamp("2024-01-09T23:00Z")


def test_bad_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(candles.DATA_ROOT_ENV, raising=False)
    with pytest.raises(ValueError, match="dataset root"):
        ingest_candles("KRW-BTC", "1H", 1)
    with pytest.raises(ValueError, match="days"):
        ingest_candles("KRW-BTC", "1H", 0, root=str(tmp_path))
    with CandleServer() as server, pytest.raises(candles.CandleAPIError, match="HTTP 404"):
        CandleClient(server.url).get("v1/nothing", {})
