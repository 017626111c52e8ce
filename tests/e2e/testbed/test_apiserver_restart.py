"""The process-kubelet survives API server restarts: it re-lists and re-watches, keeps its
pods' processes, and ends the processes of pods deleted while it could not watch.

Runs its own control plane (the session's must not go away under other tests)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from e2e_helpers import WORKER_IMAGE, wait_for
from private_cluster import PrivateCluster, answers, private_cluster, second_api_server
from testbed.cluster import Cluster
from testbed.kubelet import NODE_NAME
from testbed.processes import exited, stop_process

pytestmark = pytest.mark.e2e

SLEEPER = (
    "import signal, sys, time\n"
    "def bye(*_):\n    print('got SIGTERM', flush=True); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\ntime.sleep(3600)\n"
)


def sleeper(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {"name": "main", "image": WORKER_IMAGE, "command": ["python", "-c", SLEEPER]}
            ],
        },
    }


@pytest.fixture
def own(cluster: Cluster, tmp_path: Path) -> Iterator[PrivateCluster]:
    with private_cluster(cluster, tmp_path) as bed:
        yield bed


def test_kubelet_survives_api_server_restarts(own: PrivateCluster) -> None:
    core = own.core()
    for name in ("steady", "doomed"):
        core.create_namespaced_pod("default", sleeper(name))
    for name in ("steady", "doomed"):
        wait_for(lambda n=name: own.running(n), 30, 0.2, f"{name} running")
    steady, doomed = own.pid("steady"), own.pid("doomed")

    # 1. A plain restart: the processes stay, and the kubelet watches again.
    own.control_plane.restart("kube-apiserver")
    core = own.core()
    core.create_namespaced_pod("default", sleeper("after-restart"))
    wait_for(lambda: own.running("after-restart"), 30, 0.2, "a pod created after the restart")
    assert own.pid("steady") == steady and not exited(steady)

    # 2. A pod deleted while the kubelet's API server is down: the re-list ends its process.
    own.control_plane.stop_component("kube-apiserver")
    second, second_config = second_api_server(own)
    try:
        other = own.core(second_config)
        wait_for(lambda: answers(other), 60, 0.2, "the second API server")
        other.delete_namespaced_pod("doomed", "default", grace_period_seconds=0)
    finally:
        stop_process(second, timeout=15)
    assert not exited(doomed), "the kubelet could not have known yet"
    own.control_plane.start_component("kube-apiserver")
    wait_for(lambda: exited(doomed), 30, 0.2, "the deleted pod's process ended")
    doomed_dir = own.root / "pods" / "default_doomed"
    assert "got SIGTERM" in (doomed_dir / "main.log").read_text()
    assert (doomed_dir / "main.exit").read_text().strip() == "0"

    # The node is still Ready (its Lease is renewed again) and the survivor still runs.
    core = own.core()
    wait_for(lambda: _lease_fresh(own), 30, 0.5, "a renewed Lease")
    node = core.read_node(NODE_NAME)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert not exited(steady) and own.running("steady")
    core.delete_namespaced_pod("steady", "default")
    wait_for(lambda: exited(steady), 20, 0.2, "steady's process ended on delete")


def _lease_fresh(bed: PrivateCluster) -> bool:
    api = kubernetes.client.CoordinationV1Api(
        kubernetes.config.new_client_from_config(str(bed.control_plane.kubeconfig))
    )
    lease = api.read_namespaced_lease(NODE_NAME, "kube-node-lease")
    age = time.time() - lease.spec.renew_time.timestamp()
    return age < 15
