"""EarlyStop: a signal during start-up is remembered, then handed to the worker."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from taskqueue_worker.lifecycle import EarlyStop


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


class FakeWorker:
    """Only the two attributes rq's loop and our mixin read."""

    stop_requested_early = False
    _stop_requested = False


@pytest.mark.usefixtures("restore_handlers")
def test_a_signal_before_the_worker_exists_is_handed_over_on_attach() -> None:
    early = EarlyStop().install()
    assert not early.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert early.requested and early.signal == signal.SIGTERM
    worker = FakeWorker()
    early.attach(worker)
    assert worker.stop_requested_early is True


@pytest.mark.usefixtures("restore_handlers")
def test_a_signal_after_attach_stops_the_loop() -> None:
    early = EarlyStop().install()
    worker = FakeWorker()
    early.attach(worker)
    assert worker.stop_requested_early is False
    os.kill(os.getpid(), signal.SIGINT)
    assert worker._stop_requested is True and worker.stop_requested_early is True
