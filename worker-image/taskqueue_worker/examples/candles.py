"""Market-data ingestion (seed 001): Upbit-style candles -> partitioned Parquet.

Dataset layout: ``<root>/<SYMBOL>/<TIMEFRAME>/<YEAR>.parquet`` with columns
``timestamp`` (UTC, ms), ``open``, ``high``, ``low``, ``close``, ``volume``,
``quote_volume``; one row per candle, sorted, unique by ``timestamp``.

The HTTP side speaks Upbit's public candles API (``/v1/candles/minutes/{unit}``,
``/v1/candles/days``, ``/v1/candles/weeks``; ``market``, ``to``, ``count<=200``;
newest candle first) and stays under its limit of 10 requests per second:
requests are spaced at least ``1.1/rate_limit`` apart (a 10% margin), across all
ingest jobs sharing a Redis (the limit is per client address, not per process);
a ``Remaining-Req`` header saying ``sec=0`` makes it wait for the next second,
and 429/5xx answers are retried with back-off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pandas as pd
import pyarrow as pa

from taskqueue_worker import storage
from taskqueue_worker.progress import set_progress

log = logging.getLogger("taskqueue.examples.candles")

BASE_URL_ENV = "UPBIT_BASE_URL"
DATA_ROOT_ENV = "TASKQUEUE_DATA_ROOT"
DEFAULT_BASE_URL = "https://api.upbit.com"
DEFAULT_RATE_LIMIT = 10.0  # requests per second (Upbit's quotation API limit)
# Requests leave 10% slower than the limit: network jitter can bunch arrivals so
# that exact 0.1 s spacing shows up as 11 in one of the server's windows (seed 001
# spaced them 0.12 s apart for the same reason).
SAFETY_MARGIN = 0.1
MAX_COUNT = 200  # candles per request (API maximum)
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "quote_volume"]
TIMESTAMP_TYPE: Final = "datetime64[ms, UTC]"


@dataclass(frozen=True)
class Timeframe:
    name: str  # canonical, used as the partition directory
    path: str  # API path below /v1/candles/
    step: timedelta


_TIMEFRAMES = [
    *(Timeframe(f"{m}m", f"minutes/{m}", timedelta(minutes=m)) for m in (1, 3, 5, 10, 15, 30)),
    Timeframe("1H", "minutes/60", timedelta(hours=1)),
    Timeframe("4H", "minutes/240", timedelta(hours=4)),
    Timeframe("1D", "days", timedelta(days=1)),
    Timeframe("1W", "weeks", timedelta(weeks=1)),
]
TIMEFRAMES: dict[str, Timeframe] = {tf.name: tf for tf in _TIMEFRAMES}
_ALIASES = {
    **{tf.name.lower(): tf.name for tf in _TIMEFRAMES},
    "60m": "1H",
    "240m": "4H",
    "1d": "1D",
    "d": "1D",
    "day": "1D",
    "1w": "1W",
    "w": "1W",
    "week": "1W",
}


def parse_timeframe(name: str) -> Timeframe:
    """The timeframe for a name such as ``1m``, ``1H``/``1h``/``60m``, ``1D``, ``1W``."""
    canonical = name if name in TIMEFRAMES else _ALIASES.get(name.strip().lower())
    if canonical is None:
        raise ValueError(f"unknown timeframe {name!r}: use one of {', '.join(TIMEFRAMES)}")
    return TIMEFRAMES[canonical]


class RateLimiter:
    """Spaces calls at least ``1/rate`` seconds apart (thread-safe).

    Strict spacing rather than a bursty token bucket: ``rate`` calls in any window
    of one second, however the server aligns its window.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a call may be made; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._next - now)
            if wait:
                self._sleep(wait)
            self._next = max(now, self._next) + self.interval
            return wait

    def defer(self, seconds: float) -> None:
        """Push the next allowed call at least `seconds` into the future."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


# One "next allowed call" slot, shared by every client in the cluster that uses the
# same Redis key; Redis TIME is the clock so pods with skewed clocks still agree.
_RESERVE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local defer = tonumber(ARGV[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = math.ceil((interval + defer) * 1000) + 1000
if defer > 0 then
  redis.call('SET', KEYS[1], tostring(math.max(nxt, now + defer)), 'PX', ttl)
  return '0'
end
local slot = math.max(now, nxt)
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', ttl)
return tostring(slot - now)
"""


class RedisRateLimiter:
    """:class:`RateLimiter` across processes and pods, through one Redis key.

    Every ingest job of a TaskQueue talks to the same API from the same egress
    address, so the limit must hold for all of them together, not per process.
    """

    def __init__(
        self, connection: Any, key: str, rate: float, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.interval = 1.0 / rate
        self.key = key
        self._script = connection.register_script(_RESERVE_SCRIPT)
        self._sleep = sleep

    def acquire(self) -> float:
        wait = float(self._script(keys=[self.key], args=[self.interval, 0]))
        if wait > 0:
            self._sleep(wait)
        return wait

    def defer(self, seconds: float) -> None:
        self._script(keys=[self.key], args=[self.interval, max(seconds, 0.001)])


_local_limiters: dict[tuple[str, float], RateLimiter] = {}
_local_limiters_lock = threading.Lock()


def shared_limiter(base_url: str, rate: float) -> RateLimiter | RedisRateLimiter:
    """The limiter for `base_url`: cluster-wide inside an rq job (through the job's
    Redis), else one per process and URL so consecutive clients stay spaced too.
    Both run `SAFETY_MARGIN` below `rate`."""
    from rq import get_current_job

    rate = rate / (1 + SAFETY_MARGIN)
    job = get_current_job()
    if job is not None:
        from rq.defaults import RQ_KEY_PREFIX
        from taskqueue_contract.keys import Keys

        host = urllib.parse.urlsplit(base_url).netloc or base_url
        key = Keys(RQ_KEY_PREFIX).own("ratelimit", host)
        return RedisRateLimiter(job.connection, key, rate)
    with _local_limiters_lock:
        return _local_limiters.setdefault((base_url, rate), RateLimiter(rate))


class CandleAPIError(RuntimeError):
    pass


def parse_remaining_req(header: str | None) -> dict[str, int]:
    """``"group=candles; min=599; sec=9"`` -> ``{"min": 599, "sec": 9}``."""
    result: dict[str, int] = {}
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if value.strip().isdigit():
            result[name.strip()] = int(value)
    return result


class CandleClient:
    """Minimal Upbit-style candles client on the standard library."""

    def __init__(
        self,
        base_url: str | None = None,
        rate_limit: float = DEFAULT_RATE_LIMIT,
        timeout: float = 10.0,
        max_retries: int = 5,
        limiter: RateLimiter | RedisRateLimiter | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        self.limiter = limiter if limiter is not None else shared_limiter(self.base_url, rate_limit)
        self.timeout = timeout
        self.max_retries = max_retries
        self.requests = 0

    def get(self, path: str, params: dict[str, Any]) -> Any:
        url = f"{self.base_url}/{path.lstrip('/')}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(
            url, headers={"Accept": "application/json", "User-Agent": "taskqueue-worker"}
        )
        for attempt in range(self.max_retries + 1):
            self.limiter.acquire()
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    remaining = parse_remaining_req(response.headers.get("Remaining-Req"))
                    if remaining.get("sec") == 0:
                        self.limiter.defer(1.0)  # the server's window is spent
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                retryable = exc.code == 429 or exc.code >= 500
                if not retryable or attempt == self.max_retries:
                    body = exc.read()[:200].decode("utf-8", "replace")
                    raise CandleAPIError(f"GET {url}: HTTP {exc.code}: {body}") from None
                delay = _retry_after(exc.headers.get("Retry-After"), attempt)
                log.warning("HTTP %s from candles API, retrying in %.1fs", exc.code, delay)
                self.limiter.defer(delay)
            except (urllib.error.URLError, TimeoutError) as exc:
                if attempt == self.max_retries:
                    raise CandleAPIError(f"GET {url}: {exc}") from None
                self.limiter.defer(_retry_after(None, attempt))
        raise AssertionError("unreachable")

    def candles(
        self, symbol: str, tf: Timeframe, start: datetime, end: datetime
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of raw candles with ``start <= time < end``, newest page first."""
        to = end
        while to > start:
            page = self.get(
                f"v1/candles/{tf.path}",
                {"market": symbol, "to": to.strftime("%Y-%m-%dT%H:%M:%SZ"), "count": MAX_COUNT},
            )
            if not isinstance(page, list):
                raise CandleAPIError(f"unexpected answer for {symbol}: {str(page)[:200]}")
            if not page:
                return  # before the market's first candle
            times = [_candle_time(c) for c in page]
            yield [c for c, t in zip(page, times, strict=True) if start <= t < end]
            if len(page) < MAX_COUNT:
                return  # a short page: the market's first candle was in it
            oldest = min(times)
            if oldest >= to:  # a server ignoring `to` would loop forever
                raise CandleAPIError(f"candles API did not page backwards from {to.isoformat()}")
            to = oldest


def _retry_after(header: str | None, attempt: int) -> float:
    with contextlib.suppress(ValueError):
        if header is not None:
            return max(0.0, float(header))
    return min(30.0, 0.5 * 2**attempt)


def _candle_time(candle: dict[str, Any]) -> datetime:
    # `candle_date_time_utc` is naive ISO in UTC ("2024-01-01T09:00:00").
    return datetime.fromisoformat(candle["candle_date_time_utc"]).replace(tzinfo=UTC)


def to_frame(candles: list[dict[str, Any]]) -> pd.DataFrame:
    """Raw API candles -> the dataset's columns, sorted and unique by timestamp."""
    if not candles:
        return empty_frame()
    raw = pd.DataFrame(candles)
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(raw["candle_date_time_utc"], utc=True).astype(
                TIMESTAMP_TYPE
            ),
            "open": raw["opening_price"].astype("float64"),
            "high": raw["high_price"].astype("float64"),
            "low": raw["low_price"].astype("float64"),
            "close": raw["trade_price"].astype("float64"),
            "volume": raw["candle_acc_trade_volume"].astype("float64"),
            "quote_volume": raw["candle_acc_trade_price"].astype("float64"),
        }
    )
    return normalise(frame)


def empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS})
    frame["timestamp"] = frame["timestamp"].astype(TIMESTAMP_TYPE)
    return frame


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted by time, one row per timestamp (the last seen wins: it is the freshest,
    e.g. a candle still forming at the previous run)."""
    frame = frame[COLUMNS].copy()
    frame["timestamp"] = frame["timestamp"].astype(TIMESTAMP_TYPE)
    frame = frame.drop_duplicates(subset="timestamp", keep="last")
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def partition_path(location: storage.Location, symbol: str, tf: Timeframe, year: int) -> str:
    return location.path(symbol, tf.name, f"{year}.parquet")


def read_partition(location: storage.Location, path: str) -> pd.DataFrame:
    if not storage.exists(location, path):
        return empty_frame()
    return normalise(storage.read_table(location, path).to_pandas())


def merge_into_dataset(
    location: storage.Location, symbol: str, tf: Timeframe, frame: pd.DataFrame
) -> dict[int, int]:
    """Merge `frame` into the yearly files; returns new rows per year."""
    added: dict[int, int] = {}
    if frame.empty:
        return added
    for year, part in frame.groupby(frame["timestamp"].dt.year, sort=True):
        path = partition_path(location, symbol, tf, int(year))
        existing = read_partition(location, path)
        merged = normalise(pd.concat([existing, part], ignore_index=True))
        table = pa.Table.from_pandas(merged, preserve_index=False)
        storage.write_table(location, path, table)
        added[int(year)] = len(merged) - len(existing)
    return added


@contextlib.contextmanager
def _dataset_lock(symbol: str, tf: Timeframe, timeout: float) -> Iterator[None]:
    """Serialise writers of one symbol/timeframe across pods (read-merge-write is
    not atomic); uses the running job's Redis, and no lock outside a job."""
    from rq import get_current_job
    from rq.defaults import RQ_KEY_PREFIX
    from taskqueue_contract.keys import Keys

    job = get_current_job()
    if job is None:
        yield
        return
    lock = job.connection.lock(
        Keys(RQ_KEY_PREFIX).own("lock", "candles", symbol, tf.name),
        timeout=timeout,
        blocking_timeout=timeout,
    )
    if not lock.acquire():
        raise TimeoutError(f"dataset {symbol}/{tf.name} is locked by another ingest")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # expired locks must not fail the job
            lock.release()


def ingest_candles(
    symbol: str,
    timeframe: str = "1D",
    days: float = 1,
    *,
    root: str | None = None,
    base_url: str | None = None,
    end: str | datetime | None = None,
    rate_limit: float = DEFAULT_RATE_LIMIT,
) -> dict[str, Any]:
    """Task: fetch `days` of candles up to `end` (default now) and merge them into
    ``<root>/<symbol>/<timeframe>/<year>.parquet`` without duplicates.

    `root` defaults to ``TASKQUEUE_DATA_ROOT`` (a path or an S3-style URI), the API
    base URL to ``UPBIT_BASE_URL`` (else Upbit). Returns a summary: requests made,
    candles fetched, rows added per year, dataset location.
    """
    tf = parse_timeframe(timeframe)
    root = root or os.environ.get(DATA_ROOT_ENV)
    if not root:
        raise ValueError(f"no dataset root: pass root= or set {DATA_ROOT_ENV}")
    if not float(days) > 0:
        raise ValueError(f"days must be > 0, got {days}")
    end_at = _utc(end) if end is not None else datetime.now(UTC)
    start_at = end_at - timedelta(days=float(days))
    location = storage.resolve(root)
    client = CandleClient(base_url, rate_limit=rate_limit)

    pages: list[dict[str, Any]] = []
    span = (end_at - start_at).total_seconds()
    for page in client.candles(symbol, tf, start_at, end_at):
        pages.extend(page)
        if page:
            covered = (end_at - min(_candle_time(c) for c in page)).total_seconds()
            set_progress(0.9 * covered / span, message=f"{len(pages)} candles fetched")
    frame = to_frame(pages)
    with _dataset_lock(symbol, tf, timeout=300):
        added = merge_into_dataset(location, symbol, tf, frame)
    set_progress(1.0, message="done")
    summary = {
        "symbol": symbol,
        "timeframe": tf.name,
        "start": start_at.isoformat(),
        "end": end_at.isoformat(),
        "requests": client.requests,
        "fetched": len(frame),
        "added": {str(y): n for y, n in added.items()},
        "dataset": location.uri_of(location.path(symbol, tf.name)),
    }
    log.info("ingested candles", extra={"summary": summary})
    return summary


def load_candles(
    root: str,
    symbol: str,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Candles of one symbol from the dataset, ``start <= timestamp < end``."""
    tf = parse_timeframe(timeframe)
    location = storage.resolve(root)
    first = start.year if start else None
    last = end.year if end else None
    directory = location.path(symbol, tf.name)
    import pyarrow.fs as pafs

    infos = location.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    frames = []
    for info in sorted(infos, key=lambda i: i.path):
        stem = info.base_name.removesuffix(".parquet")
        if info.type != pafs.FileType.File or not stem.isdigit():
            continue
        year = int(stem)
        if (first is not None and year < first) or (last is not None and year > last):
            continue
        frames.append(read_partition(location, info.path))
    frame = normalise(pd.concat(frames, ignore_index=True)) if frames else empty_frame()
    if start is not None:
        frame = frame[frame["timestamp"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame["timestamp"] < pd.Timestamp(end)]
    return frame.reset_index(drop=True)


def _utc(value: str | datetime) -> datetime:
    """A timezone-aware UTC datetime; naive input is taken as UTC."""
    parsed = (
        datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    )
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
