"""The example workloads run by real worker processes: ingest (shared rate limit,
no duplicates), backtest and table results stored as Parquet, progress in meta."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from taskqueue_worker.examples.backtesting import backtest
from taskqueue_worker.examples.candle_server import CandleServer
from taskqueue_worker.examples.candles import load_candles
from taskqueue_worker.progress import set_progress
from taskqueue_worker.results import load_result
from worker_processes import WorkerProcess

pytestmark = pytest.mark.integration

Enqueue = Callable[..., subprocess.CompletedProcess[str]]
StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def candle_server() -> Iterator[CandleServer]:
    with CandleServer(rate_limit=10) as server:
        yield server


def ingest(
    enqueue: Enqueue, client: redis.Redis, server: CandleServer, symbol: str, days: int, end: str
) -> Job:
    kwargs = {"timeframe": "1H", "days": days, "end": end, "base_url": server.url}
    done = enqueue(
        "--function", "taskqueue_worker.examples.ingest_candles",
        "--queue", "data_ingestion",
        "--args", json.dumps([symbol]),
        "--kwargs", json.dumps(kwargs),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Job.fetch(done.stdout.strip(), connection=client)


def finished(job: Job) -> bool:
    status = job.get_status(refresh=True)
    assert status != JobStatus.FAILED, job.refresh() or job.exc_info
    return status == JobStatus.FINISHED


def test_ingest_twice_overlapping_in_a_worker_leaves_no_duplicates(
    enqueue: Enqueue,
    start_worker: StartWorker,
    candle_server: CandleServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    first = ingest(enqueue, redis_client, candle_server, "KRW-BTC", 10, "2024-01-05T00:00:00Z")
    second = ingest(enqueue, redis_client, candle_server, "KRW-BTC", 10, "2024-01-08T00:00:00Z")
    worker = start_worker("data_ingestion", args=("--burst",), TASKQUEUE_DATA_ROOT=str(root))
    assert worker.wait(120) == 0, worker.output()
    assert finished(first) and finished(second)
    assert first.return_value()["fetched"] == 240
    assert second.return_value()["added"] == {"2023": 0, "2024": 72}
    data = load_candles(str(root), "KRW-BTC", "1H")
    assert data["timestamp"].is_unique and len(data) == 13 * 24
    first.refresh()
    assert first.meta["progress"] == 1.0


def test_concurrent_ingest_jobs_share_one_rate_limit(
    enqueue: Enqueue,
    start_worker: StartWorker,
    candle_server: CandleServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    jobs = [
        ingest(enqueue, redis_client, candle_server, symbol, 40, "2024-01-05T00:00:00Z")
        for symbol in ("KRW-BTC", "KRW-ETH", "KRW-XRP")
    ]
    env = {"TASKQUEUE_DATA_ROOT": str(tmp_path / "data")}
    workers = [
        start_worker("data_ingestion", args=("--burst",), pod=f"ingest-{i}", **env)
        for i in range(3)
    ]
    for worker in workers:
        assert worker.wait(120) == 0, worker.output()
    assert all(finished(job) for job in jobs)
    times = candle_server.log.times()
    assert len(times) == 3 * 5 and set(candle_server.log.statuses()) == {200}, (
        candle_server.log.entries
    )
    # Three pods, one limit: lower bounds only, with 0.1 s for arrival-stamp jitter.
    for (i, a), (j, b) in itertools.combinations(enumerate(times), 2):
        assert b - a >= (j - i) * 0.1 - 0.1, (i, j, b - a)


def test_backtest_result_is_stored_as_parquet_when_the_worker_opts_in(
    enqueue: Enqueue,
    start_worker: StartWorker,
    candle_server: CandleServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    root, results = tmp_path / "data", tmp_path / "results"
    kwargs = {"timeframe": "1D", "days": 200, "end": "2024-03-01", "base_url": candle_server.url}
    for symbol in ("KRW-BTC", "KRW-ETH"):
        assert enqueue(
            "--function", "taskqueue_worker.examples.ingest_candles",
            "--queue", "backtest-queue",
            "--args", json.dumps([symbol]),
            "--kwargs", json.dumps(kwargs),
        ).returncode == 0  # fmt: skip
    done = enqueue(
        "--function", "taskqueue_worker.examples.backtest",
        "--queue", "backtest-queue",
        "--args", json.dumps(["ema_cross", ["KRW-BTC", "KRW-ETH"], "2023-09-01", "2024-03-01"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    env = {"TASKQUEUE_DATA_ROOT": str(root), "TASKQUEUE_RESULT_URI": str(results)}
    worker = start_worker("backtest-queue", args=("--burst",), **env)
    assert worker.wait(120) == 0, worker.output()

    job = Job.fetch(done.stdout.strip(), connection=redis_client)
    assert finished(job)
    ref = job.return_value()
    assert ref["taskqueue_result"] == "parquet" and ref["rows"] == 2
    assert ref["uri"] == str(results / f"{job.id}.parquet")
    assert job.meta["result_uri"] == ref["uri"] and job.meta["progress"] == 1.0
    expected = backtest(
        "ema_cross", ["KRW-BTC", "KRW-ETH"], "2023-09-01", "2024-03-01", root=str(root)
    )
    pd.testing.assert_frame_equal(load_result(ref), expected)
    pd.testing.assert_frame_equal(load_result(job.id, uri=str(results)), expected)


@pytest.mark.parametrize("worker_class", ["fork", "simple"])
def test_decorated_table_task_stores_parquet(
    worker_class: str, start_worker: StartWorker, redis_client: redis.Redis, tmp_path: Path
) -> None:
    queue = Queue("tables", connection=redis_client)
    job = queue.enqueue("taskqueue_worker.examples.make_table", 5)
    failing = queue.enqueue("taskqueue_worker.examples.make_table", 3)
    worker = start_worker(
        "tables", args=("--burst", "--max-jobs", "1", "--worker-class", worker_class),
        TASKQUEUE_RESULT_URI=str(tmp_path / "tables"),
    )  # fmt: skip
    assert worker.wait(60) == 0, worker.output()
    assert finished(job)
    ref = job.return_value()
    assert load_result(ref)["square"].tolist() == [0, 1, 4, 9, 16]
    # Without a location the decorated task fails loudly instead of filling Redis.
    worker = start_worker("tables", args=("--burst",), pod="no-location")
    assert worker.wait(60) == 0, worker.output()
    assert failing.get_status(refresh=True) == JobStatus.FAILED
    failing.refresh()
    assert "TASKQUEUE_RESULT_URI" in (failing.latest_result().exc_string or "")


def test_progress_is_saved_in_job_meta(redis_client: redis.Redis) -> None:
    job = Queue("default", connection=redis_client).enqueue("taskqueue_worker.examples.noop")
    assert set_progress(0.25, message="a quarter", job=job) is True
    fetched = Job.fetch(job.id, connection=redis_client)
    assert fetched.meta["progress"] == 0.25 and fetched.meta["progress_message"] == "a quarter"
    set_progress(1.7, job=job)  # clamped
    assert Job.fetch(job.id, connection=redis_client).meta["progress"] == 1.0
