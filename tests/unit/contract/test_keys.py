"""The key layout matches rq's own classes (rq imported with its default prefix)."""

from __future__ import annotations

import pytest
from rq import Queue, suspension
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.job import Job
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.worker import Worker
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY
from taskqueue_contract.keys import Keys, job_id_of_execution, valid_prefix

KEYS = Keys()


@pytest.mark.parametrize(
    ("registry", "method"),
    [
        (StartedJobRegistry, KEYS.started),
        (FailedJobRegistry, KEYS.failed),
        (FinishedJobRegistry, KEYS.finished),
        (ScheduledJobRegistry, KEYS.scheduled),
        (DeferredJobRegistry, KEYS.deferred),
        (CanceledJobRegistry, KEYS.canceled),
    ],
)
def test_registries(registry: type, method: object) -> None:
    assert registry.key_template.format("high") == method("high")  # type: ignore[operator]


def test_queues_jobs_and_workers() -> None:
    assert Queue.redis_queue_namespace_prefix + "high" == KEYS.queue("high")
    assert Queue.redis_queues_keys == KEYS.queues
    assert KEYS.intermediate("high") == "rq:queue:high:intermediate"
    assert Job.key_for("abc") == KEYS.job("abc")
    assert Worker.redis_worker_namespace_prefix + "w1" == KEYS.worker("w1")
    assert KEYS.workers == REDIS_WORKER_KEYS
    assert KEYS.queue_workers("high") == WORKERS_BY_QUEUE_KEY % "high"
    assert WORKER_EXECUTIONS_KEY_TEMPLATE.format("w1") == KEYS.worker_executions("w1")
    assert KEYS.suspended == suspension.WORKERS_SUSPENDED
    assert KEYS.execution("job:1:e1") == "rq:execution:job:1:e1"
    assert KEYS.results("abc") == "rq:results:abc"


def test_other_prefixes_and_names_back() -> None:
    keys = Keys("app.{x}")
    assert keys.failed("q") == "app.{x}:failed:q"
    assert keys.worker_name(keys.worker("pod-1-ab")) == "pod-1-ab"
    assert keys.queue_name(keys.queue("a:b")) == "a:b"
    assert keys.own("enqueued", "d1") == "app.{x}:taskqueue:enqueued:d1"
    assert job_id_of_execution("job:with:colons:exec1") == "job:with:colons"
    assert valid_prefix("rq-2.{a}") and not valid_prefix("bad prefix") and not valid_prefix("")
