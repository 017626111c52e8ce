"""taskqueue-worker --processes N as a real process tree against a real Redis: N loops named
by slot, the pod's heartbeat from theirs, warm shutdown of busy loops, restarts of a dead
loop and the pod's exit when a loop fails at start-up or dies too often."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import JobStatus
from taskqueue_contract.worker_names import slot_of
from testbed.redis_server import RedisServer
from worker_processes import WorkerProcess, wait_for, worker_hashes

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerProcess]


def beat(health_file: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(health_file.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def ready_pool(
    start_worker: StartWorker, processes: int, pod: str = "pool-pod", **env: str
) -> WorkerProcess:
    worker = start_worker("default", args=("--processes", str(processes)), pod=pod, **env)
    worker.wait_ready()
    wait_for(lambda: beat(worker.health_file).get("ready"), 30, "all loops ready")
    return worker


def loop_pids(client: redis.Redis) -> dict[int, int]:
    """slot -> pid of each registered loop."""
    return {
        slot_of(name, fields["hostname"]): int(fields["pid"])
        for name, fields in worker_hashes(client).items()
    }


def test_n_loops_register_by_slot_under_the_pod_and_share_the_queue(
    start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    worker = ready_pool(start_worker, 3)
    hashes = worker_hashes(redis_client)
    assert len(hashes) == 3
    assert {fields["hostname"] for fields in hashes.values()} == {"pool-pod"}
    assert sorted(slot_of(name, "pool-pod") for name in hashes) == [0, 1, 2]
    assert {int(fields["pid"]) for fields in hashes.values()}.isdisjoint({worker.pid})
    assert len(beat(worker.health_file)["loops"]) == 3

    queue = Queue("default", connection=redis_client)
    jobs = [queue.enqueue("taskqueue_worker.examples.sleep", 1.0) for _ in range(3)]
    # Three one-second jobs on three loops: all three run at once.
    wait_for(
        lambda: sum(j.get_status(refresh=True) == JobStatus.STARTED for j in jobs) == 3,
        10,
        "three jobs running at once",
    )
    for job in jobs:
        job.refresh()
    assert {j.worker_name for j in jobs} == set(hashes)  # one job per loop
    wait_for(
        lambda: all(j.get_status(refresh=True) == JobStatus.FINISHED for j in jobs), 30, "done"
    )

    worker.terminate()
    assert worker.wait(30) == 0, worker.output()
    assert worker_hashes(redis_client) == {}
    assert not worker.health_file.exists()


def test_sigterm_lets_the_busy_loop_finish_its_job_and_idle_loops_leave_at_once(
    start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    worker = ready_pool(start_worker, 3)
    queue = Queue("default", connection=redis_client)
    job = queue.enqueue("taskqueue_worker.examples.sleep", 3.0, job_timeout=60)
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 10, "the job to start")
    job.refresh()
    busy = job.worker_name

    worker.terminate()
    # The idle loops unregister within a second or two; the busy one stays for its job.
    wait_for(lambda: list(worker_hashes(redis_client)) == [busy], 10, "only the busy loop left")
    assert worker.process.poll() is None
    assert worker.wait(60) == 0, worker.output()
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == 3.0


def test_a_dead_loop_is_restarted_in_its_slot_and_the_pod_is_unready_meanwhile(
    start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    worker = ready_pool(start_worker, 2)
    before = loop_pids(redis_client)
    os.kill(before[1], signal.SIGKILL)
    wait_for(lambda: not beat(worker.health_file).get("ready"), 10, "the pod to turn unready")

    def replaced() -> bool:
        live = {
            slot_of(name, "pool-pod")
            for name, f in worker_hashes(redis_client).items()
            if int(f["pid"]) != before[1]
        }
        return live == {0, 1}

    wait_for(replaced, 30, "slot 1 to run again")
    wait_for(lambda: beat(worker.health_file).get("ready"), 30, "the pod ready again")
    assert loop_pids(redis_client).get(0, before[0]) == before[0]  # its sibling untouched
    assert worker.process.poll() is None


def test_more_than_five_deaths_a_minute_stop_the_pod_with_the_loops_exit_code(
    start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    worker = ready_pool(start_worker, 2)
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    while worker.process.poll() is None and time.monotonic() < deadline:
        # Only loops the supervisor has seen beat: one killed before that failed at start-up.
        beating = {entry["worker"] for entry in beat(worker.health_file).get("loops", [])}
        pids = {
            int(f["pid"])
            for name, f in worker_hashes(redis_client).items()
            if slot_of(name, "pool-pod") == 1 and name in beating
        } - killed
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.1)
    assert worker.wait(30) == 128 + signal.SIGKILL, worker.output()
    assert len(killed) == 6  # the first death and five restarts
    assert any("after 5 restarts" in e["message"] for e in worker.logs())


def test_a_loop_that_fails_at_start_up_stops_the_pod_with_its_code(
    start_worker: StartWorker,
) -> None:
    # A wrong password: Redis refuses every loop before it registers (exit 4).
    server = RedisServer(password="right").start()
    try:
        url = server.url.replace(":right@", ":wrong@")
        worker = start_worker("default", args=("--processes", "3"), REDIS_URL=url)
        assert worker.wait(30) == 4, worker.output()
    finally:
        server.cleanup()
    assert not worker.health_file.exists()
    assert any("failed at start-up" in e["message"] for e in worker.logs())


def test_a_second_signal_is_a_cold_shutdown_of_the_busy_loop(
    start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    worker = ready_pool(start_worker, 2)
    queue = Queue("default", connection=redis_client)
    job = queue.enqueue("taskqueue_worker.examples.sleep", 60, job_timeout=120)
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 10, "the job to start")
    worker.terminate()
    time.sleep(1.5)  # rq ignores a repeat within 1 s (a pool's forward plus a terminal's ^C)
    assert worker.process.poll() is None  # warm: still waiting for the job
    worker.terminate()
    assert worker.wait(30) == 1, worker.output()  # the busy loop's cold shutdown
    assert any("cold shut" in e["message"] for e in worker.logs())
