"""Signals that arrive before rq installs its own handlers (imports take a while)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any


class EarlyStop:
    """Installed first thing in ``main``: a SIGTERM/SIGINT during start-up is
    remembered, and the worker stops as soon as its loop starts (exit 0) instead
    of dying mid-registration with the default handler."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.worker: Any = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def install(self) -> EarlyStop:
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGINT, self.handle)
        return self

    def handle(self, signum: int, frame: FrameType | None) -> None:
        # No logging here: it may not be configured yet, and handlers must stay tiny.
        self.signal = signum
        if self.worker is not None:
            self.worker.stop_requested_early = True
            self.worker._stop_requested = True  # checked at the top of rq's loop

    def attach(self, worker: Any) -> None:
        self.worker = worker
        if self.requested:
            worker.stop_requested_early = True
