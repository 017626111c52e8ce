"""The test bed's supervisor: owns the control plane and the process-kubelet.

`python -m testbed.serve --state DIR` starts etcd, kube-apiserver, kube-controller-manager
and the process-kubelet (`python -m testbed.kubelet`, its own process), writes
`DIR/kubeconfig`, `DIR/pids.json` (every PID it started) and, once the Node is Ready,
`DIR/ready` (the seconds it took). On SIGTERM it stops the kubelet (which stops the pods'
processes), then the controllers, the API server and etcd, by PID, in that order, and
removes the control plane's data. Both `make testbed-up` and the pytest session use it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import kubernetes

from testbed.build import build
from testbed.controlplane import ControlPlane
from testbed.kubelet import NODE_NAME
from testbed.processes import start_module, stop_process


def start_kubelet(kubeconfig: Path, state: Path) -> subprocess.Popen[bytes]:
    return start_module(
        "testbed.kubelet",
        ["--kubeconfig", str(kubeconfig), "--state-dir", str(state)],
        state / "kubelet.log",
    )


def node_ready(core: kubernetes.client.CoreV1Api) -> bool:
    try:
        node = core.read_node(NODE_NAME)
    except kubernetes.client.ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def wait_node_ready(kubeconfig: Path, kubelet: subprocess.Popen[bytes], timeout: float) -> None:
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(kubeconfig)))
    deadline = time.monotonic() + timeout
    while not node_ready(core):
        if kubelet.poll() is not None:
            raise RuntimeError(f"the process-kubelet exited with {kubelet.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {NODE_NAME} not Ready after {timeout}s")
        time.sleep(0.1)


def serve(state: Path) -> int:
    state.mkdir(parents=True, exist_ok=True)
    for stale in ("ready", "kubeconfig", "pids.json"):
        (state / stale).unlink(missing_ok=True)
    shutil.rmtree(state / "pods", ignore_errors=True)  # a previous cluster's pods
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started = time.monotonic()
    control_plane = ControlPlane(build(), work_dir=state / "controlplane")
    shutil.rmtree(control_plane.work_dir, ignore_errors=True)
    control_plane.work_dir.mkdir(parents=True)
    kubelet: subprocess.Popen[bytes] | None = None

    def record_pids() -> None:
        pids = {"serve": os.getpid(), **control_plane.pids}
        if kubelet is not None:
            pids["kubelet"] = kubelet.pid
        (state / "pids.json").write_text(json.dumps(pids, indent=1) + "\n")

    try:
        control_plane.start()
        record_pids()
        shutil.copy(control_plane.kubeconfig, state / "kubeconfig")
        kubelet = start_kubelet(control_plane.kubeconfig, state)
        record_pids()
        wait_node_ready(control_plane.kubeconfig, kubelet, timeout=60)
        seconds = time.monotonic() - started
        (state / "ready").write_text(f"{seconds:.2f}\n")
        logging.info("test bed ready in %.2fs: %s", seconds, control_plane.server)
        while not stop.wait(1.0):
            for name in control_plane.revive():
                logging.warning("%s had exited: started again", name)
                record_pids()
            children = {**control_plane.processes, "kubelet": kubelet}
            for name, process in children.items():
                if process.poll() is not None:
                    logging.error("%s exited with %s: stopping", name, process.returncode)
                    stop.set()
        return 0
    finally:
        (state / "ready").unlink(missing_ok=True)
        stopping = time.monotonic()
        if kubelet is not None:
            stop_process(kubelet, timeout=30)  # it gives the pods' processes 5 s
        control_plane.stop(remove=True)
        (state / "pids.json").unlink(missing_ok=True)
        logging.info("test bed stopped in %.2fs", time.monotonic() - stopping)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return serve(options.state)


if __name__ == "__main__":
    sys.exit(main())
