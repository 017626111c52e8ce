"""taskqueue-worker's command line: probes and refusals that need no Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from taskqueue_worker import worker
from taskqueue_worker.health import write_atomically

BIN = Path(sys.executable).parent


def test_probe_passes_on_a_fresh_file_and_fails_on_a_stale_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"TASKQUEUE_HEALTH_FILE": str(tmp_path / "hb")}
    assert worker.main(["--probe"], env) == 1
    assert "no heartbeat" in capsys.readouterr().err
    write_atomically(tmp_path / "hb", {"ready": True})
    assert worker.main(["--probe"], env) == 0
    os.utime(tmp_path / "hb", (1, 1))
    assert worker.main(["--probe", "--max-age", "60"], env) == 1
    assert "stale" in capsys.readouterr().err


def test_probe_ready_needs_redis(tmp_path: Path) -> None:
    env = {"TASKQUEUE_HEALTH_FILE": str(tmp_path / "hb")}
    write_atomically(tmp_path / "hb", {"ready": False, "error": "ConnectionError: down"})
    assert worker.main(["--probe"], env) == 0
    assert worker.main(["--probe", "--ready"], env) == 1


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["default"], {}, "REDIS_URL is not set"),
        ([], {"REDIS_URL": "redis://x"}, "at least one QUEUE"),
        (["q"], {"REDIS_URL": "redis://x", "RQ_KEY_PREFIX": "a b"}, "RQ_KEY_PREFIX"),
        (["q"], {"REDIS_URL": "redis://x", "TASKQUEUE_WORKER_CLASS": "gevent"}, "worker class"),
        (["--max-jobs", "0", "q"], {"REDIS_URL": "redis://x"}, "--max-jobs"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    argv: list[str], env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert worker.main(argv, env) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_the_installed_entrypoint_refuses_a_missing_redis_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run(
        [str(BIN / "taskqueue-worker"), "default"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "taskqueue-worker: REDIS_URL is not set: point it at the queue's Redis, e.g. redis://redis:6379/0"
    ]


def test_an_unknown_flag_is_one_line_exit_2() -> None:
    done = subprocess.run(
        [str(BIN / "taskqueue-worker"), "--no-such-flag", "q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_plain_jobs_do_not_pay_for_pandas_or_pyarrow() -> None:
    # A fork worker's work horse runs this import path for every job: pulling in
    # pyarrow here once cut no-op throughput by 8x (see bench/worker_throughput.py).
    code = (
        "import sys, taskqueue_worker.runtime, taskqueue_worker.worker, taskqueue_worker.enqueue;"
        "from taskqueue_worker.examples import noop, sleep, fail, flaky;"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
