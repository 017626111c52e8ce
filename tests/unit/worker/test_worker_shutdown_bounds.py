"""The pieces of the bounded shutdown, without a redis-server: a listening socket that
never answers stands in for a Redis that stopped answering. No tight timings: each bound
is checked against a wait many times longer."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from taskqueue_worker import runtime
from taskqueue_worker.health import Heartbeat


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose connections are accepted (by the kernel's backlog) and never read."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_bound_redis_calls_makes_a_silent_redis_fail_fast(silent_server: int) -> None:
    # Constructed with keywords, redis-py 8 also retries 3 times with back-off: dropped too.
    client = redis.Redis(port=silent_server, socket_timeout=120, socket_connect_timeout=120)
    queue_like = SimpleNamespace(connection=client)  # rq's queues and jobs share the client
    runtime.bound_redis_calls(client, 0.2)
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        queue_like.connection.ping()
    assert time.monotonic() - started < 60  # not the client's own 120 s


def test_bounded_client_keeps_the_settings_and_leaves_the_original_alone() -> None:
    url = "redis://:secret@127.0.0.1:6390/3"
    client = redis.Redis.from_url(url, socket_timeout=415, socket_connect_timeout=5)
    bounded = runtime.bounded_client(client, 2.0)
    kwargs = bounded.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 3)
    assert kwargs["password"] == "secret"
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 2.0)
    assert bounded.connection_pool.connection_class is client.connection_pool.connection_class
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 415


def test_bounded_client_of_a_tls_url_stays_tls() -> None:
    client = redis.Redis.from_url("rediss://127.0.0.1:6390/0", ssl_cert_reqs="none")
    bounded = runtime.bounded_client(client, 2.0)
    assert bounded.connection_pool.connection_class is redis.SSLConnection


def test_the_stop_flag_reaches_a_process_forked_before_it_was_set() -> None:
    flag = runtime._StopFlag()
    pid = os.fork()
    if pid == 0:  # the "work horse": it must see the flag its parent sets later
        deadline = time.monotonic() + 30
        while not flag.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(0 if flag.is_set() else 1)
    flag.set()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _scheduler(ready: Any, on_sigterm: Any) -> None:
    """Stands in for rq's scheduler process, which installs its own SIGTERM handler
    first thing (until then it has the test runner's)."""
    signal.signal(signal.SIGTERM, on_sigterm)
    ready.set()
    time.sleep(120)


def _worker_with_scheduler(on_sigterm: Any) -> SimpleNamespace:
    context = get_context("fork")
    ready = context.Event()
    process = context.Process(target=_scheduler, args=(ready, on_sigterm), daemon=True)
    process.start()
    assert ready.wait(30), "the stand-in scheduler did not start"
    return SimpleNamespace(scheduler=SimpleNamespace(_process=process))


def test_a_scheduler_that_does_not_stop_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "SCHEDULER_STOP_TIMEOUT", 0.5)
    # Ignoring SIGTERM: like rq's scheduler blocked in a Redis read (its handler only
    # sets a flag that it checks between reads).
    worker = _worker_with_scheduler(signal.SIG_IGN)
    process = worker.scheduler._process
    try:
        runtime._TaskqueueWorkerMixin.stop_scheduler(worker)  # type: ignore[arg-type]
        assert not process.is_alive()
        assert process.exitcode == -signal.SIGKILL
    finally:
        if process.is_alive():
            process.kill()
            process.join()


def test_a_scheduler_that_stops_is_not_killed_and_a_dead_one_is_left_alone() -> None:
    worker = _worker_with_scheduler(signal.SIG_DFL)
    process = worker.scheduler._process
    try:
        runtime._TaskqueueWorkerMixin.stop_scheduler(worker)  # type: ignore[arg-type]
        assert process.exitcode == -signal.SIGTERM
        runtime._TaskqueueWorkerMixin.stop_scheduler(worker)  # reaped: no signal, no error
        no_process = SimpleNamespace(scheduler=SimpleNamespace(_process=None))
        runtime._TaskqueueWorkerMixin.stop_scheduler(no_process)  # type: ignore[arg-type]
        runtime._TaskqueueWorkerMixin.stop_scheduler(SimpleNamespace(scheduler=None))  # type: ignore[arg-type]
    finally:
        if process.is_alive():
            process.kill()
            process.join()


def test_heartbeat_stop_does_not_wait_for_a_stuck_beat_and_that_beat_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hb"
    release = threading.Event()
    stuck = threading.Event()
    calls = []

    def status() -> dict[str, object]:
        calls.append(1)
        if len(calls) > 1:  # the first beat (in start()) passes; the thread's next one hangs
            stuck.set()
            release.wait(60)
        return {"ready": True}

    beat = Heartbeat(path, interval=0.01, status=status).start()
    try:
        assert stuck.wait(30)
        beat.stop(remove=True)  # returns although the beat is still stuck
        assert not release.is_set() and not path.exists()
    finally:
        release.set()
    assert beat._thread is not None
    beat._thread.join(30)
    assert not beat._thread.is_alive()
    assert not path.exists()  # the late beat did not bring the file back


class _RqStandIn:
    """The rq methods the mixin wraps, counting calls; `fail` makes them raise."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.calls: list[str] = []
        self.connection = redis.Redis()  # never connected: bounding swaps its pool only

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail is not None:
            raise self.fail

    def handle_execution_ended(self, job: object, queue: object, ttl: int) -> None:
        self._call("handle_execution_ended")

    def register_death(self) -> None:
        self._call("register_death")


class _Worker(runtime._TaskqueueWorkerMixin, _RqStandIn):
    pass


def test_a_stopping_worker_waits_for_a_silent_redis_once_then_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = _Worker(fail=redis.exceptions.TimeoutError("Timeout reading from socket"))
    worker._stopping = runtime._StopFlag()
    worker._stopping.set()
    job = SimpleNamespace(id="job-1")
    for _ in range(2):  # rq's success path, then its failure path
        with pytest.raises(redis.exceptions.TimeoutError):
            worker.handle_execution_ended(job, None, 60)  # type: ignore[arg-type]
    assert worker.calls == ["handle_execution_ended"]  # the second did not wait again
    assert worker.connection.connection_pool.connection_kwargs["socket_timeout"] == (
        runtime.SHUTDOWN_REDIS_TIMEOUT
    )
    worker.register_death()
    assert worker.calls == ["handle_execution_ended"]  # not tried: Redis already silent
    text = caplog.text
    assert "Redis did not answer within 2s during shutdown: the outcome of job job-1" in text
    assert "Redis did not answer within 2s during shutdown: exiting without unregistering" in text


def test_unregistering_is_tried_then_given_up_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = _Worker()
    worker.register_death()
    assert worker.calls == ["register_death"] and not caplog.text
    refused = _Worker(fail=redis.exceptions.ConnectionError("Error 111 connecting"))
    refused.register_death()  # does not raise: the warm shutdown still exits 0
    assert "Redis is unreachable during shutdown: exiting without unregistering" in caplog.text
    assert isinstance(refused._redis_silent, redis.exceptions.ConnectionError)


def test_a_worker_not_stopping_keeps_rqs_timeouts() -> None:
    worker = _Worker(fail=redis.exceptions.TimeoutError("slow"))
    worker._stopping = runtime._StopFlag()
    before = worker.connection.connection_pool
    with pytest.raises(redis.exceptions.TimeoutError):
        worker.handle_execution_ended(SimpleNamespace(id="j"), None, 60)  # type: ignore[arg-type]
    assert worker.connection.connection_pool is before and worker._redis_silent is None
