"""The test bed's supervisor: a control plane and a real node, stopped with everything.

`python -m testbed.serve --state DIR` (root) removes what killed test beds left behind,
creates the node's network namespace (testbed.network), starts etcd, kube-apiserver,
kube-controller-manager and kube-scheduler (testbed.controlplane), makes a default
StorageClass with a pool of local volumes under DIR/volumes (testbed.manifests), then
starts containerd, the kubelet, kube-proxy and CoreDNS in the node's namespace with this
run's images imported (testbed.node). It writes `DIR/kubeconfig`, `DIR/network.json`
(the addresses), `DIR/pids.json` and, once the Node is Ready, `DIR/ready` (the seconds it
took). On SIGTERM or SIGINT, and when any component exits for good, it stops the node
(pods' processes by their cgroup), the control plane, and removes the namespace, mounts,
cgroups and data (the volumes too).
Both `make testbed-up` and the pytest session use it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes

from testbed.build import build
from testbed.controlplane import ControlPlane
from testbed.images import ensure_images, pause_image
from testbed.manifests import POOL_VOLUMES, default_storage, selectorless_service
from testbed.network import (
    CLUSTER_DNS,
    NODE_NAME,
    NodeNetwork,
    abandoned,
    register,
    unregister,
)
from testbed.node import Node, image_store, mounts_under, remove_leftovers
from testbed.processes import exited

READY_TIMEOUT = 120.0


def node_ready(core: kubernetes.client.CoreV1Api) -> bool:
    try:
        node = core.read_node(NODE_NAME)
    except kubernetes.client.ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def sweep_abandoned() -> list[str]:
    """Remove the namespaces, cgroups and mounts of test beds whose supervisor is gone."""
    removed = []
    for network, state in abandoned():
        remove_leftovers(network, state if state.exists() else None)
        unregister(network)
        removed.append(network.id)
    return removed


def install_cluster_dns(api: kubernetes.client.ApiClient, network: NodeNetwork) -> None:
    """`kube-dns` as kubelets expect it (clusterDNS), backed by CoreDNS on the node's IP."""
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    service, endpoints = selectorless_service(
        "kube-dns", network.node_ip, ports, "kube-system", cluster_ip=CLUSTER_DNS
    )
    kubernetes.client.CoreV1Api(api).create_namespaced_service("kube-system", service)
    kubernetes.client.DiscoveryV1Api(api).create_namespaced_endpoint_slice("kube-system", endpoints)


def install_storage(api: kubernetes.client.ApiClient, directory: Path) -> None:
    """The default StorageClass and its local volumes, one directory each under `directory`
    (writable by every uid, as kind's local-path provisioner makes them: pods run as
    10001, Redis as 999). Made afresh at every start, removed at every stop."""
    shutil.rmtree(directory, ignore_errors=True)  # what a killed test bed's pods wrote
    paths = []
    for index in range(POOL_VOLUMES):
        path = directory / f"volume-{index}"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        paths.append(str(path))
    storage_class, *volumes = default_storage(paths)
    kubernetes.client.StorageV1Api(api).create_storage_class(storage_class)
    core = kubernetes.client.CoreV1Api(api)
    for volume in volumes:
        core.create_persistent_volume(volume)


@dataclass
class TestBed:
    """One cluster under `state`: network, control plane, node."""

    state: Path
    archives: list[Path]
    network: NodeNetwork | None = None
    control_plane: ControlPlane | None = None
    node: Node | None = None
    started: float = field(default_factory=time.monotonic)

    __test__ = False  # not a pytest class

    @property
    def kubeconfig(self) -> Path:
        assert self.control_plane is not None
        return self.control_plane.kubeconfig

    @property
    def pids(self) -> dict[str, int]:
        pids = {"serve": os.getpid()}
        if self.control_plane is not None:
            pids |= self.control_plane.pids
        if self.node is not None:
            pids |= self.node.pids
        return pids

    def start(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the test bed's node needs root (network namespace, cgroups)")
        binaries = build()
        # The node's image store (made once per set of images) while the control plane starts.
        store = threading.Thread(target=image_store, args=(self.archives,), daemon=True)
        store.start()
        self.network = NodeNetwork.allocate(self.state)
        register(self.network, self.state)
        self.network.create()
        self.network.check_isolated()
        self.control_plane = ControlPlane(
            binaries, work_dir=self.state / "controlplane", address=self.network.host_ip
        )
        shutil.rmtree(self.control_plane.work_dir, ignore_errors=True)
        self.control_plane.work_dir.mkdir(parents=True)
        self.control_plane.start()
        api = kubernetes.config.new_client_from_config(str(self.kubeconfig))
        try:
            install_cluster_dns(api, self.network)
            install_storage(api, self.state / "volumes")
            store.join()
            self.node = Node(
                self.network,
                binaries,
                self.state / "node",
                certs=self.control_plane.work_dir,
                api_server=self.control_plane.server,
                sandbox_image=pause_image(),
            )
            self.node.start(self.archives)
            self.wait_node_ready(kubernetes.client.CoreV1Api(api))
        finally:
            api.close()

    def wait_node_ready(self, core: kubernetes.client.CoreV1Api) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not node_ready(core):
            assert self.node is not None
            if exited := self.node.exited():
                name = exited[0]
                log = (self.node.state / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"{name} exited while the node started:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {NODE_NAME} not Ready after {READY_TIMEOUT}s")
            time.sleep(0.1)

    def addresses(self) -> dict[str, str]:
        assert self.network is not None
        return {
            "host_ip": self.network.host_ip,
            "node_ip": self.network.node_ip,
            "pod_cidr": self.network.pod_cidr,
            "netns": self.network.netns,
        }

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        if self.control_plane is not None:
            self.control_plane.stop(remove=True)
        if self.network is not None:
            remove_leftovers(self.network, self.state / "node")  # if the node never started
            unregister(self.network)
        volumes = self.state / "volumes"
        if not mounts_under(volumes):  # never delete through a mount
            shutil.rmtree(volumes, ignore_errors=True)


def serve(state: Path, owner: int | None = None) -> int:
    state.mkdir(parents=True, exist_ok=True)
    for stale in ("ready", "kubeconfig", "pids.json", "network.json"):
        (state / stale).unlink(missing_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if swept := sweep_abandoned():
        logging.info("removed what killed test beds left behind: %s", ", ".join(swept))
    images = ensure_images()
    bed = TestBed(state, [image.archive for image in images])

    def record() -> None:
        (state / "pids.json").write_text(json.dumps(bed.pids, indent=1) + "\n")

    try:
        bed.start()
        record()
        shutil.copy(bed.kubeconfig, state / "kubeconfig")
        (state / "network.json").write_text(json.dumps(bed.addresses(), indent=1) + "\n")
        (state / "images.json").write_text(
            json.dumps(
                {i.name: {"id": i.image_id, "archive": str(i.archive)} for i in images}, indent=1
            )
            + "\n"
        )
        seconds = time.monotonic() - bed.started
        (state / "ready").write_text(f"{seconds:.2f}\n")
        logging.info("test bed ready in %.2fs: %s", seconds, bed.addresses())
        assert bed.control_plane is not None and bed.node is not None
        while not stop.wait(1.0):
            for name in bed.control_plane.revive():
                logging.warning("%s had exited: started again", name)
                record()
            for name, process in bed.control_plane.processes.items():
                if process.poll() is not None:
                    logging.error("%s exited with %s: stopping", name, process.returncode)
                    stop.set()
            for name in bed.node.exited():
                logging.error("%s exited: stopping", name)
                stop.set()
            if owner is not None and exited(owner):
                logging.warning("the process that started the test bed (%d) is gone", owner)
                stop.set()
        return 0
    finally:
        (state / "ready").unlink(missing_ok=True)
        stopping = time.monotonic()
        bed.stop()
        (state / "pids.json").unlink(missing_ok=True)
        logging.info("test bed stopped in %.2fs", time.monotonic() - stopping)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--owner", type=int, help="stop when this PID is gone")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return serve(options.state, options.owner)


if __name__ == "__main__":
    sys.exit(main())
