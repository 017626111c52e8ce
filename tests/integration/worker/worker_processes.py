"""Worker and enqueue processes for the integration tests: the venv's console
scripts, started as subprocesses and stopped by their recorded PIDs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from testbed.redis_server import RedisServer

BIN = Path(sys.executable).parent
WORKER = str(BIN / "taskqueue-worker")
ENQUEUE = str(BIN / "taskqueue-enqueue")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll until `predicate` is truthy; fail the test with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def worker_hashes(client: redis.Redis, prefix: str = "rq") -> dict[str, dict[str, str]]:
    keys = sorted(k.decode() for k in client.smembers(f"{prefix}:workers"))
    return {
        key.removeprefix(f"{prefix}:worker:"): {
            k.decode(): v.decode() for k, v in client.hgetall(key).items()
        }
        for key in keys
    }


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    pod: str
    health_file: Path
    stdout: Path
    stderr: Path
    env: dict[str, str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> list[dict[str, Any]]:
        """Every stdout line, parsed: a non-JSON line fails the test."""
        return [json.loads(line) for line in self.stdout.read_text().splitlines() if line]

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early: {self.output()}")
            try:  # this process's heartbeat, not a previous one's
                return json.loads(self.health_file.read_text())["pid"] == self.pid
            except (FileNotFoundError, ValueError, KeyError):
                return False

        wait_for(ready, timeout, f"worker {self.pod} to write its heartbeat")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"

    def stop(self) -> None:
        """Teardown: warm stop, then the whole process group (its scheduler too)."""
        if self.process.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        # The worker leads its own session (pgid == pid): this reaches only its children.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=10)


@pytest.fixture
def base_env(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> dict[str, str]:
    """Environment of a pod: flushed Redis, private TMPDIR, fast heartbeats."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKQUEUE_", "RQ_"))}
    env.update(
        REDIS_URL=redis_server.url,
        TMPDIR=str(tmp_path),
        TASKQUEUE_HEALTH_INTERVAL="0.2",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def start_worker(
    base_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(
        *queues: str, args: tuple[str, ...] = (), pod: str | None = None, **env: str
    ) -> WorkerProcess:
        pod = pod or f"worker-{len(started)}"
        full_env = {**base_env, "POD_NAME": pod, **env}
        index = len(started)
        stdout, stderr = tmp_path / f"{pod}.{index}.out", tmp_path / f"{pod}.{index}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [WORKER, *args, *queues],
                env=full_env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        worker = WorkerProcess(
            process, pod, tmp_path / f"taskqueue-worker.{pod}.health", stdout, stderr, full_env
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def enqueue(base_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ENQUEUE, *args], env={**base_env, **env}, capture_output=True, text=True, timeout=60
        )

    return run
