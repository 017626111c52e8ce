"""Operator overhead: N TaskQueues against one real Redis, 1 s ticks, the real loop code.

Runs the operator's own `TaskQueueLoop`s (observe -> decide -> act -> report) in one
process against a real redis-server holding realistic queues (pending jobs, busy
workers). The Kubernetes side is measured separately: a recording stand-in counts every
write the loops would send (status patches, scale patches, applies) instead of sending
it, so the figure is "API writes per second the operator asks for".

Prints: CPU seconds per wall second, RSS, Redis commands and round trips per tick, API
writes per second, tick lag; and the same loop with status throttling disabled as the
baseline ("a write per tick"), measured in the same run.

    PYTHONPATH=tests .venv/bin/python bench/operator_overhead.py [--taskqueues 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402
from taskqueue_contract.keys import Keys  # noqa: E402
from taskqueue_operator.adapters.redis_observer import RedisConnections  # noqa: E402
from taskqueue_operator.controller import LoopSettings, TaskQueueLoop  # noqa: E402
from testbed.redis_server import RedisServer  # noqa: E402

KEYS = Keys()


class RecordingKube:
    """Counts the API writes the loops make; answers like the API server would."""

    def __init__(self) -> None:
        self.writes: Counter[str] = Counter()

    async def apply(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        self.writes[f"{'dry-run' if dry_run else 'apply'} {body['kind']}"] += 1
        applied = {**body, "metadata": {**body["metadata"], "generation": 2}, "status": {}}
        return applied

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.writes["scale"] += 1

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.writes["status"] += 1

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.writes["pod annotation"] += 1

    async def delete_cronjob(self, namespace: str, name: str) -> None:
        self.writes["delete CronJob"] += 1

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        raise AssertionError("the benchmark uses plain URLs")


def taskqueue(index: int, url: str, autoscale: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "redis": {"url": url},
        "queues": [f"tq{index}-high", f"tq{index}-default"],
    }
    if autoscale:
        spec["scaling"] = {"minReplicas": 0, "maxReplicas": 10, "scaleDownDelay": "60s"}
    else:
        spec["replicas"] = 1
    return {
        "apiVersion": "taskqueue.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {
            "name": f"tq{index}",
            "namespace": "bench",
            "uid": f"uid-{index}",
            "generation": 1,
        },
        "spec": spec,
    }


def seed_redis(client: redis.Redis, count: int) -> None:
    """Every TaskQueue has some pending jobs and one busy worker, as in steady state."""
    pipe = client.pipeline(transaction=False)
    now = time.time()
    for index in range(count):
        pipe.rpush(KEYS.queue(f"tq{index}-default"), *[f"job-{index}-{j}" for j in range(5)])
        worker = f"w{index}"
        pipe.sadd(KEYS.queue_workers(f"tq{index}-default"), KEYS.worker(worker))
        pipe.hset(
            KEYS.worker(worker),
            mapping={
                "state": "busy",
                "hostname": f"tq{index}-workers-abc-{index}",
                "queues": f"tq{index}-high,tq{index}-default",
                "birth": "2026-01-01T00:00:00Z",
                "successful_job_count": 10,
                "failed_job_count": 1,
                "total_working_time": 5.0,
            },
        )
        pipe.sadd(KEYS.worker_executions(worker), f"job-{index}-run:exec")
        pipe.zadd(KEYS.started(f"tq{index}-default"), {f"job-{index}-run:exec": now + 3600})
    pipe.execute()


async def churn_queues(url: str, count: int) -> None:
    """Jobs arrive and leave: every queue's pending count moves every second."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    grow = True
    try:
        while True:
            pipe = client.pipeline(transaction=False)
            for index in range(count):
                key = KEYS.queue(f"tq{index}-default")
                if grow:
                    pipe.rpush(key, f"churn-{index}")
                else:
                    pipe.rpop(key)
            await pipe.execute()
            grow = not grow
            await asyncio.sleep(1.0)
    finally:
        await client.aclose()


def commands(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats")
    total = sum(int(v["calls"]) for v in stats.values())
    pipelines = int(client.info("stats").get("total_commands_processed", 0))
    return total, pipelines


async def run(
    count: int,
    seconds: float,
    url: str,
    counter_interval: float,
    autoscale: bool,
    budget: float = 50.0,
) -> dict[str, float]:
    kube = RecordingKube()
    connections = RedisConnections()
    settings = LoopSettings(
        counter_patch_interval=counter_interval, counter_writes_per_second=budget
    )
    loops = [
        TaskQueueLoop(
            taskqueue(i, url, autoscale),
            kube,
            connections,  # type: ignore[arg-type]
            lambda *_: None,
            settings,
        )
        for i in range(count)
    ]
    for loop in loops:  # a Deployment exists already, as in steady state
        loop.children.deployment = {
            "metadata": {"name": f"{loop.name}-workers"},
            "spec": {"replicas": 1},
            "status": {"readyReplicas": 1},
        }
        loop.children.pods = {}
    probe = redis.Redis.from_url(url)
    for loop in loops:
        loop.start()
    churn = asyncio.create_task(churn_queues(url, count))
    await asyncio.sleep(3)  # warm-up: first applies and status writes
    kube.writes.clear()
    before_cmds, _ = commands(probe)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    after_cmds, _ = commands(probe)
    churn.cancel()
    for loop in loops:
        await loop.stop()
    await connections.close()
    ticks = count * elapsed  # 1 s interval
    return {
        "cpu_per_second": cpu / elapsed,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "redis_commands_per_tick": (after_cmds - before_cmds) / ticks,
        "api_writes_per_second": sum(kube.writes.values()) / elapsed,
        "writes": dict(kube.writes),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--taskqueues", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    options = parser.parse_args()
    server = RedisServer().start()
    try:
        seed_redis(server.client(), options.taskqueues)
        print(f"{options.taskqueues} TaskQueues, one Redis, {options.seconds:.0f} s at 1 s ticks")
        ours = asyncio.run(run(options.taskqueues, options.seconds, server.url, 2.0, True))
        baseline = asyncio.run(
            run(options.taskqueues, options.seconds, server.url, 0.0, True, budget=float("inf"))
        )
    finally:
        server.cleanup()
    print(f"{'':28}{'ours':>14}{'write-every-change':>22}   (baseline: no counter throttle)")
    for key in ("cpu_per_second", "rss_mib", "redis_commands_per_tick", "api_writes_per_second"):
        print(f"{key:28}{ours[key]:>14.2f}{baseline[key]:>22.2f}")
    print(f"writes by kind (ours): {ours['writes']}")
    print(
        "Redis round trips per tick: 2 (one pipeline of 8 commands per queue, then one of "
        "2 per worker + 1 per non-empty queue)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
