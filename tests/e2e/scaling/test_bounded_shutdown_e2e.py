"""Issue 12: a worker pod shuts down in bounded time even when Redis stops answering.

Redis is SIGSTOPped (its sockets stay open, nothing answers: the stall rq's scheduler stop
and unregistering used to wait on until SIGKILL), then the worker's pod is deleted: the
kubelet really SIGTERMs the container. The grace period is jobTimeout + 30 s = 330 s here;
an idle worker must be gone within seconds, a busy one soon after its job ends."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from e2e_helpers import Follow, Kubectl, make_secret, taskqueue_manifest, wait_for
from rq import Queue
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.e2e
JOB_SECONDS = 6
BOUND = 15.0  # seconds; the grace period is 330 s


@pytest.fixture
def stoppable_redis() -> Iterator[RedisServer]:
    """A Redis of this test only (the session's must keep answering)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGCONT)
        server.cleanup()


def worker_pods(kube: Kubectl) -> list[dict[str, Any]]:
    pods = kube.list("pods", "taskqueue.dev/taskqueue=stall,taskqueue.dev/component=worker")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def registered_pod(client: redis.Redis, queue: str) -> str | None:
    for key in client.smembers(f"rq:workers:{queue}"):
        host = client.hget(key, "hostname")
        if host:
            return str(host.decode())
    return None


def gone(kube: Kubectl, pod: str) -> bool:
    return kube.get("pod", pod) is None


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_worker_pod_exits_in_bounded_time_when_redis_stalls(
    kube: Kubectl, operator_process: Any, stoppable_redis: RedisServer, busy: bool
) -> None:
    queue = f"stall-{kube.namespace[-6:]}"
    make_secret(kube, "redis-url", stoppable_redis.pod_url)
    manifest = taskqueue_manifest("stall", queues=[queue], replicas=1)
    manifest["spec"]["worker"]["jobTimeout"] = "300s"
    kube.apply(manifest)
    client = stoppable_redis.client()
    pod = wait_for(lambda: registered_pod(client, queue), 90, 0.3, "a registered worker")
    if busy:
        job = Queue(queue, connection=client).enqueue("time.sleep", JOB_SECONDS)
        wait_for(lambda: job.get_status(refresh=True) == "started", 30, 0.1, "the job started")
        started = time.monotonic()
    logs = Follow(kube, pod)
    assert stoppable_redis.process is not None
    os.kill(stoppable_redis.process.pid, signal.SIGSTOP)
    deleted = time.monotonic()
    kube.run("delete", "pod", pod, "--wait=false")
    bound = BOUND + (JOB_SECONDS if busy else 0)
    wait_for(lambda: gone(kube, pod), bound + 10, 0.2, f"{pod} gone although Redis stalls")
    took = time.monotonic() - deleted
    text = logs.close()
    print(f"\n{'busy' if busy else 'idle'} worker gone {took:.1f}s after its pod was deleted")
    assert took < bound, text[-2000:]
    assert "did not answer" in text or "not recorded" in text, text[-2000:]
    if busy:
        # The job was not cut short: the worker waited for it to end before leaving.
        assert took >= JOB_SECONDS - (deleted - started) - 0.5, text[-2000:]
