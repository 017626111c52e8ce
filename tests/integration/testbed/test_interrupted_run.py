"""A test run ends on SIGTERM or Ctrl-C, also after a test ran an RQ worker in-process.

RQ's Worker.work() installs its own SIGINT/SIGTERM handlers and leaves them: a later
interrupt became a warm shutdown request, then a SystemExit that failed one test, and the
run went on (with its test bed). tests/conftest.py keeps the run's handlers; this runs a
nested pytest with that conftest as a plugin, interrupts it after an in-process worker, and
expects pytest's "interrupted" exit within seconds, the next test never started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PYTEST_INTERRUPTED = 2

NESTED = """
import os, time
from pathlib import Path
import redis
from rq import Worker

def test_an_in_process_worker_then_a_long_wait():
    connection = redis.Redis.from_url(os.environ["NESTED_REDIS_URL"])
    Worker(["nested-interrupt"], connection=connection).work(burst=True)
    Path(os.environ["NESTED_READY"]).touch()
    time.sleep(120)

def test_after_it():
    Path(os.environ["NESTED_READY"] + ".second").touch()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_ends_the_run_after_an_in_process_worker(
    redis_server: RedisServer, tmp_path: Path, signum: int
) -> None:
    test_file = tmp_path / "test_nested.py"
    test_file.write_text(NESTED)
    ready = tmp_path / "ready"
    env = {**os.environ, "NESTED_REDIS_URL": redis_server.url, "NESTED_READY": str(ready)}
    nested = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(ROOT), "-p", "no:cacheprovider", "-q", str(test_file)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert nested.poll() is None, nested.communicate()[0].decode()
            assert time.monotonic() < deadline, "the nested test never reached its wait"
            time.sleep(0.1)
        nested.send_signal(signum)
        output = nested.communicate(timeout=20)[0].decode()
    finally:
        if nested.poll() is None:
            nested.kill()
            nested.wait()
    assert nested.returncode == PYTEST_INTERRUPTED, output
    assert "KeyboardInterrupt" in output, output
    assert not (tmp_path / "ready.second").exists(), "the run went on after the interrupt"
