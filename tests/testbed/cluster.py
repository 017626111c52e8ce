"""A cluster for tests and developers: the test bed (a control plane and a real node,
see testbed.serve), or an existing one (KUBECONFIG: kind, or any cluster)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kubernetes

from testbed.build import bin_dir, build
from testbed.node import ctr
from testbed.processes import start_module, stop_pid
from testbed.serve import sweep_abandoned


@dataclass
class Cluster:
    """kubectl/helm bound to one kubeconfig; `state_dir` is None for an external cluster."""

    kubeconfig: Path
    kubectl_bin: Path
    helm_bin: Path
    state_dir: Path | None = None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._run("kubectl", self.kubectl_bin, args, input, check, timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self._run("helm", self.helm_bin, args, None, check, timeout)

    def _run(
        self,
        name: str,
        binary: Path,
        args: tuple[str, ...],
        input: str | None,
        check: bool,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(binary), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{name} {' '.join(args)} failed: {done.stderr}")
        return done

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.config.new_client_from_config(str(self.kubeconfig))

    def create_namespace(self, name: str, timeout: float = 30) -> None:
        """Create a namespace and wait for its `default` ServiceAccount: until the
        controller-manager made it, the API server refuses the namespace's pods."""
        self.kubectl("create", "namespace", name)
        deadline = time.monotonic() + timeout
        while self.kubectl("get", "-n", name, "serviceaccount", "default", check=False).returncode:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no default ServiceAccount in {name} after {timeout}s")
            time.sleep(0.1)

    @property
    def addresses(self) -> dict[str, str]:
        """The test bed's `host_ip`, `node_ip`, `pod_cidr`, `netns` (empty elsewhere)."""
        if self.state_dir is None or not (self.state_dir / "network.json").exists():
            return {}
        return dict(json.loads((self.state_dir / "network.json").read_text()))

    def _images(self) -> dict[str, dict[str, str]]:
        if self.state_dir is None or not (self.state_dir / "images.json").exists():
            return {}
        return dict(json.loads((self.state_dir / "images.json").read_text()))

    @property
    def built_images(self) -> dict[str, str]:
        """Image name -> image ID (config digest) of the images this test bed imported."""
        return {name: image["id"] for name, image in self._images().items()}

    @property
    def image_archives(self) -> list[Path]:
        return [Path(image["archive"]) for image in self._images().values()]

    def container_pid(
        self, namespace: str, pod: str, container: str, timeout: float = 30
    ) -> int | None:
        """The host PID of a container's main process, from containerd (test bed only:
        on another cluster the node is not this machine). Waits up to `timeout` for the
        pod's status to show the container running: the kubelet reports it a moment (on a
        busy machine, seconds) after the process started."""
        if self.state_dir is None:
            return None
        core = kubernetes.client.CoreV1Api(self.api_client())
        deadline = time.monotonic() + timeout
        while True:
            status = core.read_namespaced_pod(pod, namespace).status
            ids = [
                s.container_id.split("://", 1)[1]
                for s in status.container_statuses or []
                if s.name == container and s.container_id and s.state.running
            ]
            if ids or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not ids:
            return None
        socket = self.state_dir / "node" / "containerd" / "containerd.sock"
        for line in ctr(socket, "tasks", "ls", timeout=30).splitlines()[1:]:
            task, pid, *_ = line.split()
            if task == ids[0]:
                return int(pid)
        return None


def start_serve(state: Path, log_file: Path, owner: int | None) -> subprocess.Popen[bytes]:
    """The supervisor, detached from the caller's session so it outlives a shell. With an
    `owner` PID it stops (and cleans up) when that process is gone, however it ended."""
    owned = ["--owner", str(owner)] if owner else []
    return start_module("testbed.serve", ["--state", str(state), *owned], log_file)


def wait_ready(
    state: Path, process: subprocess.Popen[bytes] | None, log_file: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not (state / "ready").exists():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the test bed exited:\n{log_file.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test bed was not ready in {timeout}s")
        time.sleep(0.1)


def sweep(state: Path) -> list[int]:
    """Stop what a supervisor that died without cleaning up left behind: the components in
    `pids.json` by recorded PID (checked against their command line), then the node's
    pods, namespace, cgroups and mounts (testbed.serve.sweep_abandoned)."""
    stopped = []
    pids_file = state / "pids.json"
    if pids_file.exists():
        markers = {"serve": "testbed.serve"}
        for name, pid in json.loads(pids_file.read_text()).items():
            marker = markers.get(name, name)
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                stop_pid(pid, timeout=15)
                stopped.append(pid)
        pids_file.unlink()
    sweep_abandoned()
    return stopped


def local_cluster(state: Path, owner: int | None = None) -> tuple[Cluster, subprocess.Popen[bytes]]:
    """Start the test bed in `state`; the caller stops it with `stop_pid(process.pid)`
    (or it stops by itself once `owner` is gone)."""
    binaries = build()
    log_file = state / "serve.log"
    state.mkdir(parents=True, exist_ok=True)
    process = start_serve(state, log_file, owner)
    try:
        wait_ready(state, process, log_file, timeout=600)  # images build on a first run
    except BaseException:
        stop_pid(process.pid)
        raise
    return Cluster(state / "kubeconfig", binaries / "kubectl", binaries / "helm", state), process


def external_cluster(kubeconfig: Path) -> Cluster:
    """A user's cluster (kind...): our kubectl/helm if built, else the ones on PATH."""
    ours = bin_dir()
    kubectl = (
        ours / "kubectl"
        if (ours / "kubectl").exists()
        else Path(shutil.which("kubectl") or "kubectl")
    )
    helm = ours / "helm" if (ours / "helm").exists() else Path(shutil.which("helm") or "helm")
    return Cluster(kubeconfig, kubectl, helm, None)


@contextlib.contextmanager
def open_cluster(kubeconfig: Path | None, prefix: str = "tq-testbed-") -> Iterator[Cluster]:
    """The cluster of `kubeconfig`, or a test bed started in a fresh temporary folder and
    stopped by PID on exit (then swept, in case its supervisor could not clean up)."""
    if kubeconfig:
        yield external_cluster(kubeconfig)
        return
    state = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        cluster, process = local_cluster(state, owner=os.getpid())  # stops it if interrupted
    except BaseException:
        sweep(state)
        shutil.rmtree(state, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        stop_pid(process.pid)
        sweep(state)  # only does something when the supervisor could not clean up
        shutil.rmtree(state, ignore_errors=True)
