"""`jobs export`, `progress` and `status` against real Redis and real RQ workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import redis
from cli_helpers import Cli
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from taskqueue_plugin.jobs import COLUMNS
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration
QUEUE = "history"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], redis_server: RedisServer) -> Cli:
    return Cli(capsys, redis_server.url, [QUEUE])


def test_export_writes_the_history_as_parquet(
    cli: Cli, redis_client: redis.Redis, tmp_path: Path
) -> None:
    queue = Queue(QUEUE, connection=redis_client)
    finished = [queue.enqueue("taskqueue_worker.examples.noop") for _ in range(3)]
    failed = [queue.enqueue("taskqueue_worker.examples.fail", f"planted {i}") for i in range(2)]
    worker = SimpleWorker([queue], connection=redis_client)
    worker.work(burst=True)
    queued = queue.enqueue("taskqueue_worker.examples.noop")
    scheduled = queue.enqueue_in(timedelta(hours=1), "taskqueue_worker.examples.noop")
    deferred = queue.enqueue("taskqueue_worker.examples.noop", depends_on=queued)

    path = tmp_path / "history.parquet"
    ran = cli("jobs", "export", "tq", "--to", str(path))
    assert ran.code == 0, ran.err
    assert ran.out.startswith(f"wrote 8 jobs of TaskQueue tq to {path}")
    frame = pd.read_parquet(path, engine="pyarrow")
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == COLUMNS
    status = dict(zip(frame["job_id"], frame["status"], strict=True))
    assert status == {
        **{j.id: "finished" for j in finished},
        **{j.id: "failed" for j in failed},
        queued.id: "queued",
        scheduled.id: "scheduled",
        deferred.id: "deferred",
    }
    rows = frame.set_index("job_id")
    for job in finished + failed:
        row = rows.loc[job.id]
        assert row["worker"] == worker.name and row["queue"] == QUEUE
        assert row["enqueued_at"] <= row["started_at"] <= row["ended_at"]
        assert row["duration_seconds"] >= 0
    assert rows.loc[failed[1].id, "exception"] == "RuntimeError: planted 1"
    assert rows.loc[failed[1].id, "function"] == "taskqueue_worker.examples.fail"
    assert pd.isna(rows.loc[queued.id, "started_at"]) and pd.isna(rows.loc[queued.id, "worker"])
    assert pd.isna(rows.loc[finished[0].id, "exception"])

    only_failed = tmp_path / "failed.parquet"
    assert cli("jobs", "export", "tq", "--to", str(only_failed), "--status", "failed").code == 0
    assert sorted(pd.read_parquet(only_failed)["job_id"]) == sorted(j.id for j in failed)

    nowhere = cli("jobs", "export", "tq", "--to", str(tmp_path / "missing" / "x.parquet"))
    assert nowhere.code == 1 and "does not exist" in nowhere.err


def start_worker(url: str, queue: str, pod: str) -> subprocess.Popen[bytes]:
    """A real `rq worker --burst` that reports `pod` as its hostname (our pods' name)."""
    code = (
        "import socket, sys; pod = sys.argv[1]; socket.gethostname = lambda: pod; "
        "from rq.cli import main; sys.argv = ['rq'] + sys.argv[2:]; main()"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, pod, "worker", "--burst", "--url", url, queue],
        env={**os.environ, "RQ_KEY_PREFIX": "rq"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_progress_and_status_of_a_running_job(
    cli: Cli, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    queue = Queue(QUEUE, connection=redis_client)
    job = queue.enqueue("taskqueue_worker.examples.sleep", 4)
    queue.enqueue("taskqueue_worker.examples.noop")  # waits behind it: pending 1
    worker = start_worker(redis_server.url, QUEUE, "tq-workers-7f9c-abcde")
    try:
        deadline = time.monotonic() + 20
        while not Job.fetch(job.id, connection=redis_client).get_meta().get("progress"):
            assert worker.poll() is None and time.monotonic() < deadline, "no progress reported"
            time.sleep(0.1)

        progress = cli("progress", "tq", "-o", "json")
        assert progress.code == 0, progress.err
        [item] = progress.json()["items"]
        assert item["id"] == job.id and item["function"] == "taskqueue_worker.examples.sleep"
        assert 0 < item["progress"] < 1
        assert item["pod"] == "tq-workers-7f9c-abcde"
        assert item["elapsedSeconds"] >= 0.9  # one progress step is a second of sleep

        table = cli("progress", "tq")
        assert "tq-workers-7f9c-abcde" in table.out and "%" in table.out

        status = cli("status", "tq", "-o", "json")
        assert status.code == 0, status.err
        document = status.json()
        [stats] = document["queues"]
        assert (stats["name"], stats["pending"], stats["running"]) == (QUEUE, 1, 1)
        [worker_doc] = document["workers"]
        assert worker_doc["pod"] == "tq-workers-7f9c-abcde" and worker_doc["state"] == "busy"
        assert worker_doc["currentJobs"] == [
            {"id": job.id, "function": "taskqueue_worker.examples.sleep"}
        ]
        text = cli("status", "tq").out
        assert f"{job.id} (taskqueue_worker.examples.sleep)" in text

        started = tmp_path / "started.parquet"
        assert cli("jobs", "export", "tq", "--to", str(started), "--status", "started").code == 0
        frame = pd.read_parquet(started)
        assert list(frame["job_id"]) == [job.id] and list(frame["status"]) == ["started"]

        assert worker.wait(timeout=30) == 0  # burst: it stops once the queue is empty
        assert job.get_status(refresh=True) == JobStatus.FINISHED
        assert cli("progress", "tq").out.startswith("No running jobs")
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
