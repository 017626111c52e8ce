"""A worker that dies between taking a job (RQ's LMOVE into the intermediate list) and
starting it leaves the job in limbo; RQ finds it in its 10-minute maintenance and fails
it. The operator puts it back on its queue within seconds, and it runs once."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from e2e_helpers import Kubectl, taskqueue_manifest, wait_for
from rq import Queue
from rq.job import Job

pytestmark = pytest.mark.e2e
NOOP = "taskqueue_worker.examples.noop"


def test_a_job_stuck_in_transit_is_put_back_and_runs(
    kube: Kubectl,
    crd_installed: None,
    operator_process: Any,
    redis_secret: str,
    redis_client: redis.Redis,
) -> None:
    name = f"transit-{kube.namespace[-8:]}"
    kube.apply(taskqueue_manifest("transit", queues=[name], replicas=0))
    queue = Queue(name, connection=redis_client)
    job = queue.enqueue(NOOP)
    assert redis_client.lmove(queue.key, queue.intermediate_queue_key) == job.id.encode()
    taken = time.monotonic()

    wait_for(lambda: queue.get_job_ids() == [job.id], 60, 0.2, "the job back on its queue")
    print(f"stuck job put back {time.monotonic() - taken:.1f}s after it was taken")
    assert redis_client.llen(queue.intermediate_queue_key) == 0
    events = kube.run("get", "events", "--field-selector", "involvedObject.name=transit").stdout
    assert "StuckJobsReturned" in events

    kube.apply(taskqueue_manifest("transit", queues=[name], replicas=1))
    wait_for(lambda: job.get_status(refresh=True) == "finished", 60, 0.5, "the job ran")
    assert Job.fetch(job.id, connection=redis_client).get_status() == "finished"
    assert len(queue.finished_job_registry) == 1
