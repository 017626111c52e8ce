"""Issue 15 part 3 on the real node: workers are up before a schedule fires, so its first
job starts within a second of being enqueued instead of waiting a pod start.

The CronJob controller itself fires the slot: `@every 30s` counts from the CronJob's
creation, so the first slot is 30 s after it. The same schedule with `prewarmWorkers: 0`,
in the same run, is the baseline.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from e2e_helpers import Kubectl, Replicas, queue_of, taskqueue_manifest, wait_for
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FinishedJobRegistry
from taskqueue_contract import timestamps
from testbed.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EVERY = 30
NOOP = "taskqueue_worker.examples.noop"
STARTS_WITHIN = 1.0  # the bound, enqueue -> start of the schedule's first job
LEAD = 5.0 + 1.0 + 1.0  # unmeasured pod start + poll interval + margin (reconcile/prewarm.py)


@dataclass
class Run:
    wait: float
    """Enqueue -> start of the scheduled job (RQ's timestamps)."""
    replicas_at_slot: int
    workers_at_slot: int
    """RQ workers registered on the queue just before the slot."""
    reasons: list[str]
    back_to_zero: float
    """Seconds after the slot until the pool was at 0 again."""


def scheduled_run(cluster: Cluster, kube: Kubectl, client: redis.Redis, prewarm: int) -> Run:
    name = f"prewarm-{prewarm}"
    queue = queue_of(kube, f"-{name}")
    schedule = {
        "name": "batch",
        "schedule": f"@every {EVERY}s",
        "function": NOOP,
        "queue": queue,
        "prewarmWorkers": prewarm,
    }
    kube.apply(
        taskqueue_manifest(name, queues=[queue], scaling={"maxReplicas": 2}, schedules=[schedule])
    )
    cronjob = wait_for(lambda: kube.get("cronjob", f"{name}-batch"), 30, 0.2, "the CronJob")
    created = timestamps.epoch(cronjob["metadata"]["creationTimestamp"])
    assert created is not None
    slot = math.floor(created) + EVERY
    replicas = Replicas(cluster, kube.namespace, name)
    wait_for(lambda: replicas() == 0, 15, 0.2, "the pool at 0 before the window")
    assert time.time() < slot - LEAD, "the window must open after the pool is at 0"

    reasons: list[str] = []

    def note_reason() -> None:
        reason = ((kube.get("taskqueue", name) or {}).get("status") or {}).get("lastScaleReason")
        if reason and (not reasons or reasons[-1] != reason):
            reasons.append(reason)

    while time.time() < slot - 0.5:
        note_reason()
        time.sleep(0.2)
    replicas_at_slot = replicas()
    workers_at_slot = len(Worker.all(queue=Queue(queue, connection=client)))

    finished = FinishedJobRegistry(queue, connection=client)
    deadline = slot + 60
    while not finished.get_job_ids(cleanup=False) and time.time() < deadline:
        note_reason()
        time.sleep(0.2)
    job_ids = finished.get_job_ids(cleanup=False)
    assert job_ids, f"the slot's job never ran: {reasons}"
    job = Job.fetch(job_ids[0], connection=client)
    assert job.started_at is not None and job.enqueued_at is not None
    wait = (job.started_at - job.enqueued_at).total_seconds()

    # Back to 0 before the next slot's window opens (the next slot is EVERY s later).
    wait_for(lambda: replicas() == 0, slot + EVERY - LEAD - time.time(), 0.1, "back to 0")
    back_to_zero = time.time() - slot
    note_reason()
    kube.run("delete", "taskqueue", name, "--wait=true")
    return Run(wait, replicas_at_slot, workers_at_slot, reasons, back_to_zero)


def test_a_schedules_first_job_starts_within_a_second_when_prewarmed(
    cluster: Cluster,
    kube: Kubectl,
    operator_process: Any,
    redis_secret: str,
    redis_client: redis.Redis,
) -> None:
    warm = scheduled_run(cluster, kube, redis_client, prewarm=1)
    cold = scheduled_run(cluster, kube, redis_client, prewarm=0)
    print(
        f"\nschedule pre-warm: enqueue -> start {warm.wait:.3f}s pre-warmed"
        f" ({warm.replicas_at_slot} replicas, {warm.workers_at_slot} workers at the slot,"
        f" back to 0 {warm.back_to_zero:.1f}s after it) vs {cold.wait:.3f}s with"
        f" prewarmWorkers 0 ({cold.replicas_at_slot} replicas at the slot);"
        f" ratio {cold.wait / max(warm.wait, 1e-3):.1f}x"
    )
    print("\n".join(warm.reasons))
    assert warm.workers_at_slot >= 1, warm
    assert any("pre-warm for schedule batch at" in r for r in warm.reasons), warm.reasons
    assert warm.wait <= STARTS_WITHIN, warm
    assert cold.replicas_at_slot == 0 and cold.workers_at_slot == 0, cold
    assert not any("pre-warm" in r for r in cold.reasons), cold.reasons
