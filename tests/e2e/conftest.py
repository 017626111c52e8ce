"""Fixtures for operator e2e tests: the CRD, a running operator, a Redis Secret."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Kubectl, make_secret
from testbed.ports import free_port
from testbed.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "taskqueues.taskqueue.dev.yaml"


@pytest.fixture(scope="session")
def crd_installed(cluster: Any) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/taskqueues.taskqueue.dev"
    )


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
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def read_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def operator_process(cluster: Any, crd_installed: None) -> Iterator[OperatorProcess]:
    operator = OperatorProcess(cluster.kubeconfig)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


@pytest.fixture
def kube(cluster: Any, namespace: str) -> Kubectl:
    return Kubectl(cluster, namespace)


@pytest.fixture
def redis_secret(kube: Kubectl, redis_server: RedisServer) -> str:
    """A Secret `redis-url` with the session Redis URL (flushed per test by redis_client)."""
    make_secret(kube, "redis-url", redis_server.url)
    return "redis-url"
