"""The declarative dead-letter requeue: once per annotation token, even across a restart."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from e2e_helpers import Kubectl, taskqueue_manifest, wait_for
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

pytestmark = pytest.mark.e2e
FAIL = "taskqueue_worker.examples.fail"
ANNOTATION = "taskqueue.dev/requeue-failed"


def fail_all(queue: Queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def test_requeue_runs_once_per_token_across_a_restart(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    name = f"dlq-{kube.namespace[-8:]}"
    kube.apply(taskqueue_manifest("dlq", queues=[name], replicas=0))
    queue = Queue(name, connection=redis_client)
    failed = FailedJobRegistry(name, connection=redis_client)
    for index in range(3):
        queue.enqueue(FAIL, f"planted {index}")
    fail_all(queue)
    assert len(failed.get_job_ids(cleanup=False)) == 3
    wait_for(
        lambda: ((kube.get("taskqueue", "dlq") or {}).get("status") or {}).get("deadLetters") == 3,
        10,
        message="DEAD 3",
    )

    def requeue_status() -> dict[str, Any]:
        return ((kube.get("taskqueue", "dlq") or {}).get("status") or {}).get("requeue") or {}

    kube.run("annotate", "taskqueue", "dlq", f"{ANNOTATION}=first")
    wait_for(lambda: requeue_status().get("token") == "first", 15, message="handled")
    assert requeue_status()["requeued"] == 3
    assert queue.count == 3 and failed.get_job_ids(cleanup=False) == []
    events = kube.run("get", "events", "--field-selector", "reason=RequeuedFailedJobs").stdout
    assert "requeued 3 failed jobs" in events

    fail_all(queue)  # they fail again: back in the dead-letter registry
    assert len(failed.get_job_ids(cleanup=False)) == 3
    operator_process.restart()
    wait_for(
        lambda: (
            ((kube.get("taskqueue", "dlq") or {}).get("status") or {}).get("observedGeneration")
            is not None
        ),
        15,
    )
    time.sleep(4)  # several ticks of the restarted operator
    assert len(failed.get_job_ids(cleanup=False)) == 3, "the same token must not act twice"

    kube.run("annotate", "--overwrite", "taskqueue", "dlq", f"{ANNOTATION}=second")
    wait_for(lambda: requeue_status().get("token") == "second", 15, message="second token")
    assert queue.count == 3
