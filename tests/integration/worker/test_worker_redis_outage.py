"""A Redis outage makes workers wait, unready, never exit: they take jobs again within
about a second of Redis returning, instead of crash-looping through kubelet back-off.
A refusal (wrong password) still exits, so a fixed Secret is picked up by the restart."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rq import Queue, Worker
from rq.job import Job
from testbed.ports import free_port
from testbed.redis_server import RedisServer
from worker_processes import WorkerProcess, wait_for

pytestmark = pytest.mark.integration
NOOP = "taskqueue_worker.examples.noop"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """Stopped and started by the test; AOF so that a restart keeps the worker's records."""
    server = RedisServer(data_dir=tmp_path / "redis", extra_args=["--appendonly", "yes"])
    try:
        yield server
    finally:
        server.cleanup()


def heartbeat(worker: WorkerProcess) -> dict[str, object]:
    try:
        return json.loads(worker.health_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def run_one_job(server: RedisServer, queue: str) -> float:
    """Seconds from enqueue to finished."""
    client = server.client()
    started = time.monotonic()
    job = Queue(queue, connection=client).enqueue(NOOP)
    wait_for(lambda: Job.fetch(job.id, connection=client).get_status() == "finished", 15, "job")
    return time.monotonic() - started


def test_a_worker_started_before_redis_waits_unready_then_works(
    own_redis: RedisServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("outage", REDIS_URL=own_redis.url)
    wait_for(lambda: heartbeat(worker).get("state") == "waiting for redis", 15, "waiting beat")
    beat = heartbeat(worker)
    assert beat["ready"] is False and "onnect" in str(beat["error"])
    time.sleep(1.5)
    assert worker.process.poll() is None, worker.output()

    own_redis.start()
    came_back = time.monotonic()
    wait_for(lambda: heartbeat(worker).get("worker"), 15, "registered and beating")
    print(f"registered {time.monotonic() - came_back:.2f}s after Redis started")
    assert run_one_job(own_redis, "outage") < 5
    worker.terminate()
    assert worker.wait(timeout=30) == 0


def test_an_idle_worker_survives_an_outage_and_works_within_seconds(
    own_redis: RedisServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    own_redis.start()
    worker = start_worker("outage", REDIS_URL=own_redis.url)
    worker.wait_ready()
    name = Worker.all(connection=own_redis.client())[0].name

    own_redis.stop()
    time.sleep(8)  # past rq's 1-2-4 s dequeue back-off, and a maintenance or two
    assert worker.process.poll() is None, worker.output()
    own_redis.start()
    back = time.monotonic()
    seconds = run_one_job(own_redis, "outage")
    print(f"job finished {time.monotonic() - back:.2f}s after Redis returned ({seconds:.2f}s run)")
    assert time.monotonic() - back < 5
    assert [w.name for w in Worker.all(connection=own_redis.client())] == [name]
    assert worker.process.poll() is None


def test_a_redis_that_returns_empty_gets_the_worker_registered_again(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    server = RedisServer(data_dir=tmp_path / "volatile").start()  # no persistence at all
    try:
        worker = start_worker("outage", REDIS_URL=server.url)
        worker.wait_ready()
        server.stop()
        time.sleep(3)
        server.start()
        assert not server.client().exists("rq:workers")  # it came back empty
        wait_for(lambda: Worker.all(connection=server.client()), 15, "registered again")
        assert run_one_job(server, "outage") < 5
    finally:
        server.cleanup()


def test_a_wrong_password_exits_with_one_line() -> None:
    server = RedisServer(password="right-password").start()
    try:
        url = f"redis://:wrong-password@127.0.0.1:{server.port}/0"
        env = {"REDIS_URL": url, "PATH": "/usr/bin:/bin", "TASKQUEUE_HEALTH_INTERVAL": "0.2"}
        done = subprocess.run(
            [str(Path(__import__("sys").executable).parent / "taskqueue-worker"), "q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 4, done.stdout + done.stderr
        assert "refused" in done.stdout and "wrong-password" not in done.stdout + done.stderr
    finally:
        server.cleanup()


def test_nothing_listening_is_an_outage_not_a_refusal() -> None:
    import ssl

    import redis
    from taskqueue_worker.runtime import is_outage

    try:
        redis.Redis(port=free_port(), socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as error:
        assert is_outage(error)
    assert not is_outage(redis.exceptions.AuthenticationError("invalid password"))
    # redis-py raises its ConnectionError from the ssl module's error.
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as cause:
            raise redis.exceptions.ConnectionError("Error 1 connecting.") from cause
    except redis.exceptions.ConnectionError as tls:
        assert not is_outage(tls)
    assert is_outage(redis.exceptions.TimeoutError("Timeout reading from socket"))
