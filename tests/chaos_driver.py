"""Issue 8 chaos, shared by the bounded e2e test and `bench/chaos.py`.

Short jobs go through an autoscaled TaskQueue while `Chaos` SIGKILLs busy workers,
deletes worker pods, restarts the operator and restarts Redis (AOF, appendfsync
everysec). `account` then looks up every job id: finished, or failed with a reason.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kubernetes
import redis
from e2e_helpers import Kubectl, make_secret, taskqueue_manifest, wait_for
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.serializers import resolve_serializer
from testbed.cluster import Cluster
from testbed.redis_server import RedisServer

JOB_FUNCTION = "taskqueue_worker.examples.sleep"
JOB_SECONDS = 0.1
TERMINAL = {"finished", "failed", "canceled", "stopped"}
KILL = "SIGKILL busy worker"
DELETE = "delete worker pod"
OPERATOR = "restart operator"
REDIS = "restart Redis"
# The bounded CI schedule: a fault every 2.5 s for 30 s.
CI_PLAN = (
    "kill",
    "delete",
    "kill",
    "operator",
    "kill",
    "delete",
    "redis",
    "kill",
    "delete",
    "operator",
    "kill",
    "kill",
)
BATCH = 500
# Set in a job's meta by the operator each time it requeues the job of a dead worker.
ABANDON_COUNT_META = "taskqueue_abandoned"


def aof_redis() -> RedisServer:
    """Redis as the issue asks: AOF with appendfsync everysec (not started)."""
    return RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "everysec"])


def restart_local_redis(server: RedisServer) -> None:
    server.stop()
    time.sleep(2)
    server.start()


def create_taskqueue(kube: Kubectl, redis_url: str, taskqueue: str = "chaos") -> str:
    """The chaos TaskQueue (autoscaled 1..4, abandoned jobs requeued); returns its queue."""
    make_secret(kube, f"{taskqueue}-redis", redis_url)
    queue = f"{taskqueue}-{kube.namespace[-6:]}"
    manifest = taskqueue_manifest(
        taskqueue,
        queues=[queue],
        redis={"urlFrom": {"secretKeyRef": {"name": f"{taskqueue}-redis", "key": "url"}}},
        scaling={
            "minReplicas": 1,
            "maxReplicas": 4,
            "targetBacklogPerWorker": 50,
            "scaleDownDelay": "5s",
            "abandonedJobs": "requeue",
        },
    )
    manifest["spec"]["worker"].update({"workerClass": "simple", "jobTimeout": "10s"})
    kube.apply(manifest)
    return queue


def enqueue_jobs(client: redis.Redis, queue: str, count: int) -> list[str]:
    """`count` short jobs, pipelined in batches (10,000 single enqueues take a while)."""
    rq_queue = Queue(queue, connection=client)
    ids: list[str] = []
    for start in range(0, count, BATCH):
        batch = [
            Queue.prepare_data(JOB_FUNCTION, (JOB_SECONDS,), result_ttl=3600, failure_ttl=3600)
            for _ in range(min(BATCH, count - start))
        ]
        ids += [job.id for job in rq_queue.enqueue_many(batch)]
    return ids


class Chaos:
    """Runs a fault schedule and counts what it did.

    On the test bed a kill is a SIGKILL of the worker container's process (its host PID from
    containerd); on another cluster it is a forced pod deletion, which makes the kubelet
    SIGKILL the container.
    """

    def __init__(
        self,
        cluster: Cluster,
        kube: Kubectl,
        operator: Any,
        client: Callable[[], redis.Redis],
        restart_redis: Callable[[], None],
        queue: str,
        taskqueue: str = "chaos",
        seed: int = 8,
    ) -> None:
        self.cluster, self.kube, self.operator = cluster, kube, operator
        self.client, self.redis_restarter = client, restart_redis
        self.queue, self.taskqueue = queue, taskqueue
        self.done: Counter[str] = Counter()
        self.random = random.Random(seed)
        self.errors: list[str] = []
        self.actions: dict[str, Callable[[], None]] = {
            "kill": self.kill_busy_worker,
            "delete": self.delete_pod,
            "operator": self.restart_operator,
            "redis": self.restart_redis,
        }

    @property
    def kills(self) -> int:
        """Faults that can take a job mid-run: each may cost one duplicate execution."""
        return self.done[KILL] + self.done[DELETE]

    def busy_pods(self) -> list[str]:
        client = self.client()
        pods = []
        for key in client.smembers(f"rq:workers:{self.queue}"):
            fields = client.hmget(key, "state", "hostname")
            if fields[0] == b"busy" and fields[1]:
                pods.append(fields[1].decode())
        return pods

    def kill_busy_worker(self) -> None:
        pods = self.busy_pods()
        if not pods:
            return
        pod = self.random.choice(pods)
        if self.cluster.state_dir is None:
            forced = ("delete", "pod", pod, "--grace-period=0", "--force", "--wait=false")
            if self.kube.run(*forced, check=False).returncode == 0:
                self.done[KILL] += 1
            return
        try:
            pid = self.cluster.container_pid(self.kube.namespace, pod, "worker")
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                self.done[KILL] += 1
        except (OSError, ValueError, kubernetes.client.ApiException):
            pass

    def delete_pod(self) -> None:
        pods = self.kube.list("pods", f"taskqueue.dev/taskqueue={self.taskqueue}")
        if pods:
            pod = self.random.choice(pods)["metadata"]["name"]
            self.kube.run("delete", "pod", pod, "--wait=false", check=False)
            self.done[DELETE] += 1

    def restart_operator(self) -> None:
        self.operator.restart()
        self.done[OPERATOR] += 1

    def restart_redis(self) -> None:
        self.redis_restarter()
        self.done[REDIS] += 1

    def step(self, name: str) -> None:
        try:
            self.actions[name]()
        except Exception as error:  # the schedule goes on; the caller reports it
            self.errors.append(f"{name}: {error}")

    def run(self, plan: Sequence[str] = CI_PLAN, interval: float = 2.5) -> None:
        """A fixed schedule: one fault every `interval` seconds."""
        for name in plan:
            time.sleep(interval)
            self.step(name)

    def run_spread(
        self,
        progress: Callable[[], float],
        stop: threading.Event,
        interval: float,
        milestones: Sequence[tuple[float, str]] = (
            (0.25, "operator"),
            (0.5, "redis"),
            (0.7, "operator"),
        ),
        until: float = 0.95,
    ) -> None:
        """Faults spread over a run of unknown length: kills and pod deletions (2:1) every
        `interval` seconds until `until` of the jobs are done, and each milestone's fault
        once that fraction is done, so a long run gets its restarts in the middle."""
        pending = sorted(milestones)
        cycle = ("kill", "kill", "delete")
        turn = 0
        while not stop.wait(interval):
            done = progress()
            while pending and pending[0][0] <= done:
                self.step(pending.pop(0)[1])
            if done >= until:
                if not pending:
                    return
                continue
            self.step(cycle[turn % len(cycle)])
            turn += 1


def statuses(client: redis.Redis, ids: Sequence[str]) -> list[str]:
    """Each job's status as `Job.get_status()` reads it; "missing" when the hash is gone."""
    found: list[str] = []
    for start in range(0, len(ids), BATCH):
        pipe = client.pipeline(transaction=False)
        for job_id in ids[start : start + BATCH]:
            pipe.hget(Job.key_for(job_id), "status")
        found += [value.decode() if value else "missing" for value in pipe.execute()]
    return found


def wait_all_terminal(client: redis.Redis, ids: Sequence[str], timeout: float) -> None:
    def all_terminal() -> bool:
        try:
            return all(status in TERMINAL for status in statuses(client, ids))
        except redis.exceptions.ConnectionError:  # Redis restarting: ask again
            return False

    wait_for(all_terminal, timeout, 2.0, "every job finished or failed")


def _timestamp(value: bytes | None) -> float | None:
    return datetime.fromisoformat(value.decode()).timestamp() if value else None


@dataclass
class Accounting:
    """Where every job id ended up."""

    jobs: int
    statuses: Counter[str]
    executions: int  # successful results over all jobs (at-least-once: >= finished)
    # Runs started again because a worker died mid-job: a killed run records no result,
    # so this is the at-least-once figure `duplicates` cannot see.
    reruns: int = 0
    failed: list[Job] = field(default_factory=list)
    failed_without_reason: list[str] = field(default_factory=list)
    failed_not_in_registry: list[str] = field(default_factory=list)
    first_enqueued: float | None = None
    last_ended: float | None = None

    @property
    def duplicates(self) -> int:
        return self.executions - self.statuses["finished"]

    @property
    def lost(self) -> int:
        """Neither finished nor failed with a reason."""
        explained = len(self.failed) - len(self.failed_without_reason)
        return self.jobs - self.statuses["finished"] - explained

    @property
    def wall(self) -> float:
        """First enqueue to last job end, from the jobs' own timestamps."""
        if self.first_enqueued is None or self.last_ended is None:
            return float("nan")
        return self.last_ended - self.first_enqueued


def account(client: redis.Redis, queue: str, ids: Sequence[str]) -> Accounting:
    counts: Counter[str] = Counter()
    executions = reruns = 0
    loads = resolve_serializer(None).loads
    failed_ids: list[str] = []
    enqueued: list[float] = []
    ended: list[float] = []
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        pipe = client.pipeline(transaction=False)
        for job_id in chunk:
            pipe.hmget(Job.key_for(job_id), "status", "enqueued_at", "ended_at", "meta")
            pipe.xrange(Result.get_key(job_id))
        replies = pipe.execute()
        for job_id, (status, enqueued_at, ended_at, meta), results in zip(
            chunk, replies[::2], replies[1::2], strict=True
        ):
            name = status.decode() if status else "missing"
            counts[name] += 1
            if meta:
                reruns += int(loads(meta).get(ABANDON_COUNT_META, 0))
            if name == "failed":
                failed_ids.append(job_id)
            executions += sum(
                1 for _, payload in results if int(payload[b"type"]) == Result.Type.SUCCESSFUL.value
            )
            if (moment := _timestamp(enqueued_at)) is not None:
                enqueued.append(moment)
            if (moment := _timestamp(ended_at)) is not None:
                ended.append(moment)
    failed = [Job.fetch(job_id, connection=client) for job_id in failed_ids]
    registry = set(FailedJobRegistry(queue, connection=client).get_job_ids(cleanup=False))
    return Accounting(
        jobs=len(ids),
        statuses=counts,
        executions=executions,
        reruns=reruns,
        failed=failed,
        failed_without_reason=[
            job.id
            for job in failed
            if job.latest_result() is None or not job.latest_result().exc_string
        ],
        failed_not_in_registry=[job.id for job in failed if job.id not in registry],
        first_enqueued=min(enqueued, default=None),
        last_ended=max(ended, default=None),
    )
