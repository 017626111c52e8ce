"""A cluster of one test only, for tests that stop or restart the API server: the
session's cluster must not go away under the other tests."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from e2e_helpers import wait_for
from testbed.cluster import Cluster
from testbed.controlplane import ControlPlane
from testbed.ports import free_port
from testbed.serve import TestBed


class PrivateCluster:
    """A whole test bed of one test (network namespace, control plane, real node) under
    `root`, run from the test's own process, with the session's images."""

    def __init__(self, root: Path, archives: list[Path]) -> None:
        self.root = root
        self.bed = TestBed(root, archives)

    @property
    def control_plane(self) -> ControlPlane:
        assert self.bed.control_plane is not None
        return self.bed.control_plane

    @property
    def host_ip(self) -> str:
        """Where this cluster's pods reach this machine (its Redis must listen there)."""
        assert self.bed.network is not None
        return self.bed.network.host_ip

    def cluster(self, kubeconfig: Path | None = None) -> Cluster:
        """kubectl on this cluster (through another API server with `kubeconfig`)."""
        binaries = self.control_plane.bin_dir
        config = kubeconfig or self.control_plane.kubeconfig
        return Cluster(config, binaries / "kubectl", binaries / "helm", None)

    def core(self, kubeconfig: Path | None = None) -> kubernetes.client.CoreV1Api:
        config = str(kubeconfig or self.control_plane.kubeconfig)
        return kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config))


@contextlib.contextmanager
def private_cluster(cluster: Cluster, root: Path) -> Iterator[PrivateCluster]:
    """Start one (node Ready, `default` ServiceAccount made); stop it and remove all it
    made afterwards. `cluster` is the session's: only the test bed has the images here."""
    archives = cluster.image_archives
    if cluster.state_dir is None or not archives:
        pytest.skip("needs the test bed (its binaries and images), not an external cluster")
    bed = PrivateCluster(root, archives)
    try:
        bed.bed.start()
        core = bed.core()
        wait_for(lambda: core.list_namespaced_service_account("default").items, 30, 0.1)
        yield bed
    finally:
        bed.bed.stop()


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
    server = f"https://{bed.control_plane.address}:{port}"
    kubeconfig.write_text(bed.control_plane.admin_kubeconfig(server))
    return process, kubeconfig


def answers(core: kubernetes.client.CoreV1Api) -> bool:
    """The API server behind `core` serves requests."""
    try:
        core.list_namespace(_request_timeout=2)
    except Exception:
        return False
    return True
