"""A local stand-in for Upbit's candles API: deterministic candles, real HTTP.

Used by the tests and the demo so nothing ever calls the internet::

    python -m taskqueue_worker.examples.candle_server --port 8765
    UPBIT_BASE_URL=http://127.0.0.1:8765 ...

A candle's prices depend only on (market, time), so overlapping requests return
identical rows. The server enforces the rate limit like the real one (429 past
``rate_limit`` requests in any one-second window), reports ``Remaining-Req``,
and logs every request's monotonic arrival time so tests can measure spacing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from taskqueue_worker.examples.candles import MAX_COUNT, TIMEFRAMES, Timeframe

_BY_PATH = {tf.path: tf for tf in TIMEFRAMES.values()}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def price(market: str, at: datetime) -> float:
    """Deterministic price path: waves of about 120, 27 and 4 days and 31 hours,
    phase-shifted per market, so trend-following strategies see real cycles."""
    seed = int(hashlib.sha256(market.encode()).hexdigest()[:8], 16)
    days = (at - EPOCH).total_seconds() / 86400
    base = 1000.0 + seed % 500
    phase = (seed % 628) / 100.0
    wave = (
        0.25 * math.sin(2 * math.pi * days / 120.0 + phase)
        + 0.08 * math.sin(2 * math.pi * days / 27.0 + 1.0 + phase)
        + 0.02 * math.sin(2 * math.pi * days / 4.3 + 2.0)
        + 0.01 * math.sin(2 * math.pi * days * 24 / 31.0)
    )
    return base * math.exp(wave)


def candle_at(market: str, tf: Timeframe, at: datetime) -> dict[str, Any]:
    """The candle of `market` opening at `at` (aligned), as the API shapes it."""
    open_, close = price(market, at), price(market, at + tf.step)
    middle = price(market, at + tf.step / 2)
    volume = 1.0 + int((at - EPOCH).total_seconds() // 3600) % 17
    return {
        "market": market,
        "candle_date_time_utc": at.strftime("%Y-%m-%dT%H:%M:%S"),
        "candle_date_time_kst": (at + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S"),
        "opening_price": round(open_, 2),
        "high_price": round(max(open_, close, middle) * 1.002, 2),
        "low_price": round(min(open_, close, middle) * 0.998, 2),
        "trade_price": round(close, 2),
        "timestamp": int((at - EPOCH).total_seconds() * 1000),
        "candle_acc_trade_price": round(volume * close, 4),
        "candle_acc_trade_volume": volume,
    }


def align(at: datetime, tf: Timeframe) -> datetime:
    """Start of the candle containing `at` (weeks start on Monday, as Upbit's)."""
    step = tf.step.total_seconds()
    offset = timedelta(days=4) if tf.name == "1W" else timedelta(0)  # 1970-01-05: a Monday
    seconds = (at - EPOCH - offset).total_seconds()
    return EPOCH + offset + timedelta(seconds=math.floor(seconds / step) * step)


def page(
    market: str, tf: Timeframe, to: datetime, count: int, listed: datetime | None
) -> list[dict[str, Any]]:
    """Up to `count` candles strictly before `to`, newest first, none before `listed`."""
    first = align(to, tf)
    if first >= to:
        first -= tf.step
    out: list[dict[str, Any]] = []
    at = first
    while len(out) < count and (listed is None or at >= listed):
        out.append(candle_at(market, tf, at))
        at -= tf.step
    return out


@dataclass
class RequestLog:
    """Arrival times (time.monotonic) and paths of the requests served."""

    entries: list[tuple[float, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, at: float, path: str, status: int) -> None:
        with self.lock:
            self.entries.append((at, path, status))

    def times(self) -> list[float]:
        with self.lock:
            return [t for t, _, _ in self.entries]

    def statuses(self) -> list[int]:
        with self.lock:
            return [s for _, _, s in self.entries]


class CandleServer:
    """Threaded HTTP server (127.0.0.1 by default); a context manager or start()/stop()."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        rate_limit: int = 10,
        listed: datetime | None = None,
        now: datetime | None = None,
        remaining_header: bool = True,
    ) -> None:
        self.rate_limit = rate_limit
        self.remaining_header = remaining_header  # False: clients learn only from 429s
        self.listed = listed  # no candles before this time (the market's listing)
        self.now = now  # no candles after this time; None = whatever `to` asks
        self.log = RequestLog()
        self._window: deque[float] = deque()
        self._window_lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    def _admit(self, at: float) -> int:
        """Requests left in the current one-second window, or -1 when over the limit."""
        with self._window_lock:
            while self._window and at - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= self.rate_limit:
                return -1
            self._window.append(at)
            return self.rate_limit - len(self._window)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read server.log instead

            def do_GET(self) -> None:
                arrived = time.monotonic()
                url = urlparse(self.path)
                status, body, left = server._answer(url.path, parse_qs(url.query), arrived)
                server.log.add(arrived, self.path, status)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if server.remaining_header:
                    remaining = f"group=candles; min=600; sec={max(left, 0)}"
                    self.send_header("Remaining-Req", remaining)
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _answer(
        self, path: str, query: dict[str, list[str]], arrived: float
    ) -> tuple[int, Any, int]:
        left = self._admit(arrived)
        if left < 0:
            return 429, {"error": {"name": "too_many_requests"}}, 0
        prefix = "/v1/candles/"
        tf = _BY_PATH.get(path[len(prefix) :]) if path.startswith(prefix) else None
        market = query.get("market", [""])[0]
        if tf is None or not market:
            return 404 if tf is None else 400, {"error": {"message": "bad request"}}, left
        try:
            count = min(MAX_COUNT, int(query.get("count", ["1"])[0]))
            raw_to = query.get("to", [""])[0]
            to = (
                datetime.fromisoformat(raw_to.replace("Z", "+00:00")).astimezone(UTC)
                if raw_to
                else (self.now or datetime.now(UTC))
            )
        except ValueError:
            return 400, {"error": {"message": "bad count or to"}}, left
        if self.now is not None:
            to = min(to, self.now)
        return 200, page(market, tf, to, count, self.listed), left

    def start(self) -> CandleServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CandleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve deterministic Upbit-style candles.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--rate-limit", type=int, default=10)
    args = parser.parse_args(argv)
    server = CandleServer(port=args.port, host=args.host, rate_limit=args.rate_limit)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        print(json.dumps({"message": "candle server listening", "url": server.url}), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
