"""A control plane and a process-kubelet of one test only, for tests that stop or restart
the API server: the session's cluster must not go away under the other tests."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from e2e_helpers import wait_for
from testbed.build import build
from testbed.cluster import Cluster
from testbed.controlplane import ControlPlane
from testbed.ports import free_port
from testbed.processes import stop_process
from testbed.serve import start_kubelet, wait_node_ready


class PrivateCluster:
    """etcd, kube-apiserver, kube-controller-manager and a process-kubelet under `root`
    (the kubelet's state, e.g. `pods/`, is `root` itself)."""

    def __init__(self, root: Path) -> None:
        (root / "cp").mkdir()
        self.root = root
        self.control_plane = ControlPlane(build(), work_dir=root / "cp")
        self.kubelet: subprocess.Popen[bytes] | None = None

    def cluster(self, kubeconfig: Path | None = None) -> Cluster:
        """kubectl on this cluster (through another API server with `kubeconfig`)."""
        binaries = self.control_plane.bin_dir
        config = kubeconfig or self.control_plane.kubeconfig
        return Cluster(config, binaries / "kubectl", binaries / "helm", self.root)

    def core(self, kubeconfig: Path | None = None) -> kubernetes.client.CoreV1Api:
        config = str(kubeconfig or self.control_plane.kubeconfig)
        return kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config))

    def pid(self, pod: str) -> int:
        pid_file = self.root / "pods" / f"default_{pod}" / "main.pid"
        return int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 20, 0.1))

    def running(self, pod: str) -> bool:
        try:
            status = self.core().read_namespaced_pod(pod, "default").status
        except kubernetes.client.ApiException:
            return False
        return status.phase == "Running" and all(c.ready for c in status.container_statuses or [])


@contextlib.contextmanager
def private_cluster(cluster: Cluster, root: Path) -> Iterator[PrivateCluster]:
    """Start one (node Ready, `default` ServiceAccount made); stop it by PID afterwards.
    `cluster` is the session's: only the test bed has the binaries and the process-kubelet."""
    if cluster.state_dir is None:
        pytest.skip("needs the test bed's binaries and process-kubelet")
    bed = PrivateCluster(root)
    try:
        bed.control_plane.start()
        bed.kubelet = start_kubelet(bed.control_plane.kubeconfig, root)
        wait_node_ready(bed.control_plane.kubeconfig, bed.kubelet, timeout=60)
        core = bed.core()
        wait_for(lambda: core.list_namespaced_service_account("default").items, 30, 0.1)
        yield bed
    finally:
        if bed.kubelet is not None:
            stop_process(bed.kubelet, timeout=30)
        bed.control_plane.stop()


def second_api_server(bed: PrivateCluster) -> tuple[subprocess.Popen[bytes], Path]:
    """Another kube-apiserver on the same etcd: the cluster changes while the first API
    server is down, so its clients can only learn of it by a re-list. The caller stops it."""
    port = free_port()
    command = [
        f"--secure-port={port}" if arg.startswith("--secure-port=") else arg
        for arg in bed.control_plane.commands["kube-apiserver"]
    ]
    with open(bed.root / "apiserver-2.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    kubeconfig = bed.root / "second.kubeconfig"
    kubeconfig.write_text(bed.control_plane.admin_kubeconfig(f"https://127.0.0.1:{port}"))
    return process, kubeconfig


def answers(core: kubernetes.client.CoreV1Api) -> bool:
    """The API server behind `core` serves requests."""
    try:
        core.list_namespace(_request_timeout=2)
    except Exception:
        return False
    return True
