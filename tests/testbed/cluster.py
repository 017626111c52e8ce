"""A cluster for tests and developers: the test bed, or an existing one (KUBECONFIG)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kubernetes

from testbed.build import bin_dir, build
from testbed.processes import start_module, stop_pid


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

    def pod_dir(self, namespace: str, pod: str) -> Path | None:
        """Logs (`<container>.log`) and PIDs (`<container>.pid`) of a test-bed pod."""
        if self.state_dir is None:
            return None
        return self.state_dir / "pods" / f"{namespace}_{pod}"


def start_serve(state: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """The supervisor, detached from the caller's session so it outlives a shell."""
    return start_module("testbed.serve", ["--state", str(state)], log_file)


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
    """Stop what a supervisor that died without cleaning up left behind, by recorded PID:
    the components in `pids.json` and the pods' processes in `pods/*/*.pid`."""
    stopped = []
    pids_file = state / "pids.json"
    if pids_file.exists():
        markers = {"serve": "testbed.serve", "kubelet": "testbed.kubelet"}
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
    for pid_file in state.glob("pods/*/*.pid"):
        pod = pid_file.parent.name.split("_", 1)[1]
        pid = int(pid_file.read_text() or 0)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"HOSTNAME={pod}".encode() in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            stopped.append(pid)
    return stopped


def local_cluster(state: Path) -> tuple[Cluster, subprocess.Popen[bytes]]:
    """Start the test bed in `state`; the caller stops it with `stop_pid(process.pid)`."""
    binaries = build()
    log_file = state / "serve.log"
    state.mkdir(parents=True, exist_ok=True)
    process = start_serve(state, log_file)
    try:
        wait_ready(state, process, log_file)
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
    cluster, process = local_cluster(state)
    try:
        yield cluster
    finally:
        stop_pid(process.pid)
        sweep(state)  # only does something when the supervisor could not clean up
        shutil.rmtree(state, ignore_errors=True)
