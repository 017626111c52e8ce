"""Metrics scraped from the live operator match a known state of real workers and queues."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
import redis
from e2e_helpers import Kubectl, taskqueue_manifest, wait_for
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, SimpleWorker

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_for_7_pending_2_failed_3_busy(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    queue_name = f"m-{kube.namespace[-8:]}"
    kube.apply(taskqueue_manifest("metered", queues=[queue_name], replicas=0))
    queue = Queue(queue_name, connection=redis_client)
    for index in range(2):
        queue.enqueue("taskqueue_worker.examples.fail", f"planted {index}")
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    for _ in range(10):
        queue.enqueue("taskqueue_worker.examples.sleep", 60, job_timeout=120)
    busy = taskqueue_manifest("metered", queues=[queue_name], replicas=3)
    busy["spec"]["worker"]["jobTimeout"] = "120s"  # the jobs' own: it bounds every job's
    kube.apply(busy)
    labels = {"namespace": kube.namespace, "taskqueue": "metered"}

    def value(name: str, **extra: str) -> float | None:
        key = (name, frozenset({**labels, **extra}.items()))
        return scrape(operator_process.metrics_port).get(key)

    def settled() -> bool:
        return (
            value("taskqueue_jobs", queue=queue_name, status="queued") == 7
            and value("taskqueue_workers", state="busy") == 3
        )

    wait_for(settled, 90, 0.5, "3 busy workers and 7 pending jobs in the metrics")
    assert value("taskqueue_jobs", queue=queue_name, status="started") == 3
    assert value("taskqueue_jobs", queue=queue_name, status="failed") == 2
    assert value("taskqueue_workers", state="idle") == 0
    assert value("taskqueue_replicas", kind="desired") == 3
    assert value("taskqueue_redis_up") == 1
    age = value("taskqueue_oldest_job_age_seconds", queue=queue_name)
    assert age is not None and age > 0
    # The counters exist from the workers' first look (at 0: the 2 failures ran before the
    # TaskQueue's workers, on a local worker whose history predates them).
    assert value("taskqueue_jobs_finished_total", queue=queue_name) == 0
    assert value("taskqueue_jobs_failed_total", queue=queue_name) is not None
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{operator_process.metrics_port}/metrics", timeout=5
    ).read()
    assert b"_created" not in text and b"\nrq_" not in text
