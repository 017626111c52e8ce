"""Helpers for e2e tests: kubectl bound to a namespace, polling, manifests."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
from testbed.ports import free_port
from testbed.processes import stop_process

WORKER_IMAGE = "ghcr.io/taskqueue-dev/taskqueue-worker:0.1.0"
CRD = Path(__file__).resolve().parents[1] / "crds" / "taskqueues.taskqueue.dev.yaml"


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, message: str = "condition"
) -> Any:
    """Poll until `predicate` returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


class Kubectl:
    """kubectl bound to one namespace, JSON in and out."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def run(
        self, *args: str, input: str | None = None, check: bool = True, namespaced: bool = True
    ) -> subprocess.CompletedProcess[str]:
        scope = ("-n", self.namespace) if namespaced else ()
        return self.cluster.kubectl(*scope, *args, input=input, check=check)

    def apply(
        self, body: dict[str, Any] | str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        text = body if isinstance(body, str) else json.dumps(body)
        return self.run("apply", "-f", "-", input=text, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)

    def list(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return json.loads(self.run(*args).stdout)["items"]


class Replicas:
    """Reads a worker Deployment's replicas through the API client: fast enough to time."""

    def __init__(self, cluster: Any, namespace: str, taskqueue: str) -> None:
        self.apps = kubernetes.client.AppsV1Api(cluster.api_client())
        self.namespace = namespace
        self.name = f"{taskqueue}-workers"

    def __call__(self) -> int:
        try:
            deployment = self.apps.read_namespaced_deployment(self.name, self.namespace)
        except kubernetes.client.exceptions.ApiException:
            return -1
        return int(deployment.spec.replicas or 0)


def queue_of(kube: Kubectl, suffix: str = "") -> str:
    """A queue name of the test's own namespace (tests share one Redis)."""
    return f"work-{kube.namespace[-8:]}{suffix}"


def install_crd(cluster: Any) -> None:
    """The TaskQueue CRD, applied and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    # Right after the apply the CRD may have no conditions yet, and `kubectl wait` then
    # fails at once ("conditions accessor error: <nil>") instead of waiting: read them.
    wait_for(
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in json.loads(
                cluster.kubectl("get", "crd", "taskqueues.taskqueue.dev", "-o", "json").stdout
            )
            .get("status", {})
            .get("conditions")
            or []
        ),
        60,
        0.2,
        "the TaskQueue CRD Established",
    )


def make_secret(kube: Kubectl, name: str, url: str) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        }
    )


def taskqueue_manifest(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "redis": {"urlFrom": {"secretKeyRef": {"name": "redis-url", "key": "url"}}},
        "queues": ["high", "default"],
        "worker": {"image": WORKER_IMAGE, "jobTimeout": "30s"},
    }
    base.update(spec)
    return {
        "apiVersion": "taskqueue.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": base,
    }


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for entry in ((body or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            return entry
    return None


class OperatorProcess:
    """The operator as a local process with the admin kubeconfig, watching all namespaces.

    Restartable (tests of restarts); `read_text()` is its log so far.
    """

    def __init__(self, kubeconfig: Path, *extra_args: str) -> None:
        self.kubeconfig = kubeconfig
        self.extra_args = list(extra_args)
        self.log_path = Path(tempfile.mkdtemp(prefix="tq-operator-")) / "operator.log"
        self.metrics_port = free_port()
        self.dashboard_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = Path(sys.executable).with_name("taskqueue-operator")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(binary),
                    "--liveness",
                    f"http://127.0.0.1:{free_port()}/healthz",
                    "--metrics-port",
                    str(self.metrics_port),
                    "--dashboard-port",
                    str(self.dashboard_port),
                    "--verbose",
                    *self.extra_args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        time.sleep(1.0)
        assert self.process.poll() is None, self.read_text()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=15)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def read_text(self) -> str:
        return self.log_path.read_text(errors="replace")


INSIDE_PROBE = """
import os
print('uid', os.getuid(), 'gid', os.getgid())
print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].strip())
for path in ('/probe', '/opt/venv/probe', '/tmp/probe'):
    try:
        open(path, 'w').write('x')
        print('writable', path)
    except OSError as error:
        print('refused', path, error.strerror)
"""


def seen_from_inside(kube: Kubectl, pod: str, container: str) -> str:
    """`kubectl exec` into a running container: its uid, effective capabilities, and which
    of / (root), /opt/venv and /tmp it can write."""
    return kube.run("exec", pod, "-c", container, "--", "python", "-c", INSIDE_PROBE).stdout


def assert_restricted_inside(seen: str) -> None:
    """What the restricted security context must look like from inside the container."""
    assert "uid 10001" in seen, seen
    assert "CapEff:\t0000000000000000" in seen, seen
    assert "refused /probe Read-only file system" in seen, seen
    assert "refused /opt/venv/probe Read-only file system" in seen, seen
    assert "writable /tmp/probe" in seen, seen  # the emptyDir


def running(kube: Kubectl, pod: str) -> bool:
    """Every container of `pod` is running, as the pod's status says."""
    statuses = ((kube.get("pod", pod) or {}).get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in s.get("state", {}) for s in statuses)


class Follow:
    """`kubectl logs -f` of one pod, collected until the container ends."""

    def __init__(self, kube: Kubectl, pod: str) -> None:
        # `kubectl logs` refuses a container the pod's status does not show running yet,
        # and the kubelet reports that a moment after the process started.
        wait_for(lambda: running(kube, pod), 60, 0.2, f"{pod}'s containers running in its status")
        command = [str(kube.cluster.kubectl_bin), "--kubeconfig", str(kube.cluster.kubeconfig)]
        command += ["-n", kube.namespace, "logs", "-f", pod]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.text = ""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.text += line

    def close(self) -> str:
        self.thread.join(timeout=30)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        return self.text
