"""Requeue or fail the jobs of a vanished worker, with RQ's own job and registry APIs.

Nothing here runs job callbacks or unpickles job data (the operator has no application
code): jobs are fetched as hashes, moved with `Job.retry`, `Queue._enqueue_job` or
`Job._handle_failure`, the same calls RQ's worker makes. Each job is handled in one
MULTI/EXEC under WATCH of its hash, so RQ's own cleanup or a second operator tick racing
with us cannot requeue it twice.

RQ reads its key prefix once, at import (RQ_KEY_PREFIX). A TaskQueue with another
prefix is recovered in a short-lived subprocess started with that prefix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis
from rq import Queue
from rq.defaults import RQ_KEY_PREFIX
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.utils import now
from taskqueue_contract import env as contract_env
from taskqueue_contract.keys import Keys

from taskqueue_operator.reconcile.abandoned import AbandonedJob
from taskqueue_operator.reconcile.abandoned import AbandonedPolicy as Policy

Action = Literal["retried", "requeued", "failed", "already-handled", "missing"]

# A job that kills its pod every time (OOM) must not loop forever on policy requeues.
MAX_POLICY_REQUEUES = 3
ABANDON_COUNT_META = "taskqueue_abandoned"


@dataclass(frozen=True)
class Recovered:
    job_id: str
    action: Action
    worker: str
    pod: str


def recover(connection: redis.Redis, jobs: list[AbandonedJob], policy: Policy) -> list[Recovered]:
    """Handle each abandoned job once; then forget the dead workers' registrations."""
    results = [_recover_one(connection, job, policy) for job in jobs]
    for worker in sorted({job.worker for job in jobs}):
        _forget_worker(connection, worker)
    return results


def _recover_one(connection: redis.Redis, abandoned: AbandonedJob, policy: Policy) -> Recovered:
    def result(action: Action) -> Recovered:
        return Recovered(abandoned.job_id, action, abandoned.worker, abandoned.pod)

    keys = Keys(RQ_KEY_PREFIX)  # rq's APIs below use the prefix rq was imported with
    execution_key = keys.execution(abandoned.execution)
    worker_executions = keys.worker_executions(abandoned.worker)
    job_key = keys.job(abandoned.job_id)
    with connection.pipeline() as pipe:
        for _attempt in range(5):
            try:
                pipe.watch(job_key)
                try:
                    job = Job.fetch(abandoned.job_id, connection=connection)
                except NoSuchJobError:
                    pipe.unwatch()
                    connection.srem(worker_executions, abandoned.execution)
                    connection.delete(execution_key)
                    return result("missing")
                started_key = keys.started(job.origin)
                still_started = connection.zscore(started_key, abandoned.execution) is not None
                if not still_started or job.get_status(refresh=False) != JobStatus.STARTED:
                    pipe.unwatch()
                    connection.srem(worker_executions, abandoned.execution)
                    return result("already-handled")
                pipe.multi()
                pipe.zrem(started_key, abandoned.execution)
                pipe.srem(worker_executions, abandoned.execution)
                pipe.delete(execution_key)
                action = _move(
                    job, Queue(job.origin, connection=connection), abandoned, policy, pipe
                )
                pipe.execute()
                return result(action)
            except redis.WatchError:
                continue  # the job changed under us: look again
    return result("already-handled")


def _move(
    job: Job, queue: Queue, abandoned: AbandonedJob, policy: Policy, pipe: redis.client.Pipeline
) -> Action:
    if job.should_retry:
        job.retry(queue, pipe)  # counts against the job's own Retry, honours its intervals
        return "retried"
    count = int(job.meta.get(ABANDON_COUNT_META, 0))
    if policy == "requeue" and count < MAX_POLICY_REQUEUES:
        job.meta[ABANDON_COUNT_META] = count + 1
        queue._enqueue_job(job, pipeline=pipe, at_front=True)
        return "requeued"
    job.meta[ABANDON_COUNT_META] = count + 1
    job.ended_at = now()
    job.set_status(JobStatus.FAILED, pipeline=pipe)
    job.save(pipeline=pipe, include_meta=True)
    reason = (
        f"AbandonedJob: the worker {abandoned.worker} stopped while running this job "
        f"({abandoned.cause}); recovered by taskqueue-operator with policy {policy}"
    )
    job._handle_failure(reason, pipe, worker_name=abandoned.worker)
    return "failed"


def _forget_worker(connection: redis.Redis, worker: str) -> None:
    """What RQ does when it finds a dead worker's hash expired, done now."""
    keys = Keys(RQ_KEY_PREFIX)
    key = keys.worker(worker)
    raw = connection.hget(key, "queues") or b""
    queues = raw.decode() if isinstance(raw, bytes) else str(raw)
    with connection.pipeline() as pipe:
        pipe.delete(key)
        pipe.srem(keys.workers, key)
        for queue in queues.split(","):
            if queue:
                pipe.srem(keys.queue_workers(queue), key)
        pipe.execute()


def requeue_failed(connection: redis.Redis, queues: list[str]) -> int:
    """Every job of the queues' failed registries back to its queue (RQ's own requeue)."""
    count = 0
    for queue in queues:
        registry = FailedJobRegistry(queue, connection=connection)
        for job_id in registry.get_job_ids(cleanup=False):
            try:
                registry.requeue(job_id)
                count += 1
            except (NoSuchJobError, InvalidJobOperation):
                registry.remove(job_id, delete_job=False)  # a stale entry: its job is gone
    return count


def requeue_failed_with_prefix(url: str, key_prefix: str, queues: list[str]) -> int:
    request = {"url": url, "action": "requeue-failed", "queues": queues}
    return int(_with_prefix(request, key_prefix))


def recover_with_prefix(
    url: str, key_prefix: str, jobs: list[AbandonedJob], policy: Policy
) -> list[Recovered]:
    request = {"url": url, "policy": policy, "jobs": [asdict(j) for j in jobs]}
    return [Recovered(**item) for item in _with_prefix(request, key_prefix)]


def _with_prefix(request: dict[str, Any], key_prefix: str) -> Any:
    """`_handle(request)`: in this process when the prefix is RQ's, else in a subprocess
    that imports rq with it. Returns plain JSON data either way."""
    if key_prefix == RQ_KEY_PREFIX:
        return _handle(request)
    completed = subprocess.run(
        [sys.executable, "-m", "taskqueue_operator.adapters.recovery"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env={**os.environ, contract_env.KEY_PREFIX: key_prefix},
        timeout=60,
        check=True,
    )
    return json.loads(completed.stdout)


def _handle(request: dict[str, Any]) -> Any:
    connection = redis.Redis.from_url(request["url"], socket_timeout=5, socket_connect_timeout=2)
    try:
        if request.get("action") == "requeue-failed":
            return requeue_failed(connection, request["queues"])
        jobs = [AbandonedJob(**item) for item in request["jobs"]]
        return [asdict(r) for r in recover(connection, jobs, request["policy"])]
    finally:
        connection.close()


def return_in_transit(url: str, key_prefix: str, stuck: list[tuple[str, str]]) -> list[str]:
    """Put jobs stuck in RQ's intermediate lists back at the head of their queues.

    Raw commands (no rq import, any prefix). Each move is one MULTI/EXEC under WATCH of
    the list and the job: a worker starting the job meanwhile (it removes the id in the
    same transaction that marks it started) makes us leave it alone.
    Returns the ids put back.
    """
    connection = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    returned: list[str] = []
    keys = Keys(key_prefix)
    try:
        for queue, job_id in stuck:
            queue_key = keys.queue(queue)
            transit_key = keys.intermediate(queue)
            job_key = keys.job(job_id)
            with connection.pipeline() as pipe:
                try:
                    pipe.watch(transit_key, job_key)
                    if pipe.lpos(transit_key, job_id) is None:
                        continue
                    status = pipe.hget(job_key, "status")
                    pipe.multi()
                    pipe.lrem(transit_key, 1, job_id)
                    if status == b"queued":  # a job gone from Redis is only dropped (as RQ)
                        pipe.lpush(queue_key, job_id)
                    pipe.execute()
                except redis.WatchError:
                    continue
            if status == b"queued":
                returned.append(job_id)
    finally:
        connection.close()
    return returned


def _main() -> None:
    print(json.dumps(_handle(json.loads(sys.stdin.read()))))


if __name__ == "__main__":
    _main()
