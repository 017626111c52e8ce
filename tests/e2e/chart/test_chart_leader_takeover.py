"""Issue 13 part 5: two operator pods installed by the chart elect a leader on a Lease; on
a rolling restart the leaderless gap (no replica holds the Lease, no loop writes a status)
is measured and printed. The leader releases its Lease when it stops, so a standby takes
over within its retry period instead of waiting for the Lease to expire (~15 s)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from e2e_helpers import Kubectl, make_secret, taskqueue_manifest, wait_for
from rq import Queue
from testbed.cluster import Cluster
from testbed.manifests import host_service, object_list
from testbed.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CHART = Path(__file__).resolve().parents[3] / "charts" / "taskqueue-operator"
LEASE = "taskqueue-operator"
LEASE_SECONDS = 15.0  # the chart's default lease duration


def _moment(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@dataclass
class Sample:
    at: float  # wall clock, seconds
    holder: str
    renewed: float | None
    acquired: float | None
    observed: float | None  # the TaskQueue's status.lastObservedTime


class Sampler(threading.Thread):
    """Reads the Lease and the TaskQueue's status every 0.1 s (faster than any renewal)."""

    def __init__(self, cluster: Cluster, namespace: str, taskqueue: str) -> None:
        super().__init__(daemon=True)
        client = cluster.api_client()
        self.leases = kubernetes.client.CoordinationV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.namespace = namespace
        self.taskqueue = taskqueue
        self.samples: list[Sample] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                spec = self.leases.read_namespaced_lease(LEASE, self.namespace).spec
                body = self.custom.get_namespaced_custom_object(
                    "taskqueue.dev", "v1alpha1", self.namespace, "taskqueues", self.taskqueue
                )
            except kubernetes.client.exceptions.ApiException:
                time.sleep(0.1)
                continue
            status = body.get("status") or {}
            self.samples.append(
                Sample(
                    time.time(),
                    spec.holder_identity or "",
                    _moment(spec.renew_time),
                    _moment(spec.acquire_time),
                    _moment(status.get("lastObservedTime")),
                )
            )
            time.sleep(0.1)


def leaderless_gaps(samples: list[Sample]) -> list[tuple[str, str, float]]:
    """(old holder, new holder, seconds between the old one's last renewal or release and
    the new one's acquisition) for each change of holder."""
    gaps = []
    last_renewal: dict[str, float] = {}
    previous = ""
    released_at: float | None = None
    for sample in samples:
        if not sample.holder:  # released: the releasing write's renewTime is the moment
            released_at = sample.renewed
            continue
        if previous and sample.holder != previous:
            end = released_at if released_at is not None else last_renewal[previous]
            gaps.append((previous, sample.holder, (sample.acquired or sample.at) - end))
        if sample.holder != previous:
            released_at = None
        previous = sample.holder
        if sample.renewed is not None:
            last_renewal[sample.holder] = sample.renewed
    return gaps


def longest_status_gap(samples: list[Sample], start: float) -> float:
    moments = sorted({s.observed for s in samples if s.observed is not None and s.at >= start})
    return max((b - a for a, b in itertools.pairwise(moments)), default=0.0)


@pytest.fixture
def two_replicas(cluster: Cluster, namespace: str, operator_process: Any) -> Iterator[str]:
    """The chart with replicaCount=2 in the test's namespace; the session's operator (on
    this machine, no election) is paused meanwhile."""
    if cluster.state_dir is None:
        pytest.skip("installs the operator image; on a real cluster load it first (README)")
    operator_process.stop()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    name = f"ha-{uuid.uuid4().hex[:6]}"
    try:
        cluster.helm(
            "install",
            name,
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            f"watchNamespaces={{{namespace}}}",
            "--set",
            "replicaCount=2",
            "--set",
            "dashboard.enabled=false",
            "--wait",
            "--timeout",
            "180s",
        )
        yield name
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, check=False)
        operator_process.start()


def test_rolling_restart_takeover(
    cluster: Cluster, kube: Kubectl, namespace: str, two_replicas: str
) -> None:
    deployment = f"{two_replicas}-taskqueue-operator"
    server = RedisServer().start()
    enqueuing = threading.Event()
    try:
        kube.apply(object_list(host_service("redis", server.pod_host, server.port, 6379)))
        make_secret(kube, "redis-url", f"redis://redis.{namespace}.svc:6379/0")
        queue_name = f"takeover-{namespace[-6:]}"
        # No workers: the backlog grows with every enqueue, so every tick of the leader's
        # loop has a new count to write (at most every counter patch interval, 2 s).
        kube.apply(taskqueue_manifest("takeover", queues=[queue_name], replicas=0))
        queue = Queue(queue_name, connection=server.client())

        def enqueue() -> None:
            while not enqueuing.is_set():
                queue.enqueue("taskqueue_worker.examples.noop")
                time.sleep(0.2)

        threading.Thread(target=enqueue, daemon=True).start()
        sampler = Sampler(cluster, namespace, "takeover")

        def observed() -> bool:
            status = (kube.get("taskqueue", "takeover") or {}).get("status") or {}
            return bool(status.get("lastObservedTime")) and status.get("pending", 0) > 0

        wait_for(observed, 90, 0.5, "status from the leader")
        sampler.start()
        time.sleep(5)
        restarted = time.time()
        kube.run("rollout", "restart", f"deployment/{deployment}")
        kube.run("rollout", "status", f"deployment/{deployment}", "--timeout=240s")
        old = {s.holder for s in sampler.samples if s.at < restarted and s.holder}

        def new_leader_writes() -> bool:
            after = [s for s in sampler.samples if s.holder and s.holder not in old]
            return bool(after) and any(
                s.observed and s.observed > (after[0].acquired or after[0].at)
                for s in sampler.samples
            )

        wait_for(new_leader_writes, 60, 0.5, "a new leader writing the status")
        time.sleep(3)
        sampler.done.set()
        sampler.join(5)
    finally:
        enqueuing.set()
        server.cleanup()

    gaps = leaderless_gaps(sampler.samples)
    status_gap = longest_status_gap(sampler.samples, restarted - 5)
    rollout = max(s.at for s in sampler.samples) - restarted
    print(f"\nrolling restart of 2 operator replicas ({rollout:.1f} s sampled after it):")
    for before, after, gap in gaps:
        print(f"  lease {before} -> {after}: no leader for {gap:.2f} s")
    print(f"  longest gap between status writes (lastObservedTime): {status_gap:.2f} s")
    assert gaps, "the Lease never changed hands"
    final = sampler.samples[-1].holder
    assert final and final not in old
    # A released Lease is taken at the standby's next attempt (retry period 2 s) plus a
    # write: 0.1-0.6 s on a quiet machine, 7.9 s measured once in CI with both cores busy.
    # Without the release the gap is the whole lease (15 s) or more (15.96 s measured):
    # the bound tells the two apart with room for a loaded machine.
    assert max(gap for _, _, gap in gaps) < LEASE_SECONDS - 5, gaps
