"""The real KEDA on the test bed: its operator and metrics adapter as host processes.

They run on this machine with the admin kubeconfig, as our own operator does in the e2e
suite and the benchmarks (so both autoscalers reach the API server and Redis the same
way), rather than as pods: KEDA's images cannot be pulled here, and a pod would reach the
API server only through a forwarder while the aggregation layer would have to dial a pod
address. As host processes:

- the operator serves KEDA's gRPC metrics service on 127.0.0.1 and reaches Redis where
  the tests' Redis servers listen;
- the adapter (an extension API server for `external.metrics.k8s.io`) listens on the host
  end of the test bed's veth. The APIService names a selectorless Service whose
  EndpointSlice holds that address; the API server runs with `--enable-aggregator-routing`
  and so dials it directly (Service IPs exist only inside the node's namespace), presenting
  the front-proxy client certificate that the adapter trusts through kube-system's
  extension-apiserver-authentication ConfigMap;
- the HPA controller in kube-controller-manager reads the external metric through the
  API server, as it does on any cluster.

KEDA's mutual TLS between the adapter and the operator uses a CA of its own in the work
directory (`ca.crt`, `tls.crt`, `tls.key`: the files KEDA's cert rotation would write); the
APIService carries that CA. `stop()` removes the APIService (a dangling one breaks API
discovery, and so namespace deletion) and stops both processes by PID; they also die with
the process that started them.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.certs import issue, make_ca
from testbed.cluster import Cluster
from testbed.keda_build import build_keda, keda_crds
from testbed.manifests import selectorless_service
from testbed.ports import free_port
from testbed.processes import stop_process

NAMESPACE = "keda"
ADAPTER_SERVICE = "keda-metrics-apiserver"
API_SERVICE = "v1beta1.external.metrics.k8s.io"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it is gone."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def api_service(ca_bundle: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": API_SERVICE},
        "spec": {
            "service": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE, "port": 443},
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "caBundle": base64.b64encode(ca_bundle).decode(),
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }


def condition_true(body: dict[str, Any], kind: str) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


@dataclass
class Keda:
    """KEDA's operator and adapter for one cluster. `start()` returns once the APIService
    is Available (the aggregation layer reaches the adapter, which reaches the operator)."""

    cluster: Cluster
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tq-keda-")))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    grpc_port: int = 0
    adapter_port: int = 0

    @property
    def host_ip(self) -> str:
        return self.cluster.addresses["host_ip"]

    def log(self, name: str) -> str:
        path = self.work_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 120) -> Keda:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop(remove=False)
            raise

    def _start(self, timeout: float) -> Keda:
        binaries = build_keda()
        self._certificates()
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(keda_crds()))
        self._wait_established(["scaledobjects.keda.sh", "triggerauthentications.keda.sh"])
        if self.cluster.kubectl("get", "namespace", NAMESPACE, check=False).returncode:
            self.cluster.create_namespace(NAMESPACE)
        self.grpc_port, self.adapter_port = free_port(), free_port()
        manifests = selectorless_service(
            ADAPTER_SERVICE,
            self.host_ip,
            [{"name": "https", "port": 443, "targetPort": self.adapter_port, "protocol": "TCP"}],
            NAMESPACE,
        )
        manifests.append(api_service((self.work_dir / "ca.crt").read_bytes()))
        text = "\n".join(json.dumps(manifest) for manifest in manifests)
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)
        kubeconfig = str(self.cluster.kubeconfig)
        wd = self.work_dir
        (wd / "custom-ca").mkdir(exist_ok=True)
        self._spawn(
            "keda-operator",
            [
                str(binaries / "keda-operator"),
                "--leader-elect=false",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                f"--health-probe-bind-address=127.0.0.1:{free_port()}",
                f"--metrics-service-bind-address=127.0.0.1:{self.grpc_port}",
                f"--cert-dir={wd}",
                f"--ca-dir={wd / 'custom-ca'}",
                "--zap-log-level=info",
                "--zap-encoder=console",
            ],
        )
        self._spawn(
            "keda-adapter",
            [
                str(binaries / "keda-adapter"),
                f"--bind-address={self.host_ip}",
                f"--secure-port={self.adapter_port}",
                f"--cert-dir={wd}",
                f"--tls-cert-file={wd / 'tls.crt'}",
                f"--tls-private-key-file={wd / 'tls.key'}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--metrics-service-address=127.0.0.1:{self.grpc_port}",
                # Its own Prometheus endpoint listens on every address (":port"): give it a
                # free port; nothing outside the machine can reach this one anyway.
                f"--port={free_port()}",
                "--zap-log-level=info",
            ],
        )
        self._wait_available(timeout)
        return self

    def _certificates(self) -> None:
        """KEDA's CA and the one certificate both processes serve and dial with."""
        make_ca(self.work_dir, subject="/CN=keda-testbed-ca")
        names = [
            "IP:127.0.0.1",
            f"IP:{self.host_ip}",
            f"DNS:{ADAPTER_SERVICE}.{NAMESPACE}.svc",  # what the aggregator verifies
            f"DNS:{ADAPTER_SERVICE}.{NAMESPACE}.svc.cluster.local",
            f"DNS:keda-operator.{NAMESPACE}.svc.cluster.local",
        ]
        issue(self.work_dir, "tls", "/CN=keda", "subjectAltName=" + ",".join(names))

    def _wait_established(self, crds: list[str], timeout: float = 60) -> None:
        """Read the conditions: right after an apply a CRD may have none yet, and
        `kubectl wait` then fails at once instead of waiting."""
        deadline = time.monotonic() + timeout
        waiting = list(crds)
        while waiting:
            done = self.cluster.kubectl("get", "crd", waiting[0], "-o", "json", check=False)
            if done.returncode == 0 and condition_true(json.loads(done.stdout), "Established"):
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {waiting[0]} not Established after {timeout}s")
            time.sleep(0.2)

    def _spawn(self, name: str, command: list[str]) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
        }
        with open(self.work_dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                command,
                env=env,
                cwd=self.work_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )

    def _wait_available(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}"
                    )
            done = self.cluster.kubectl("get", "apiservice", API_SERVICE, "-o", "json", check=False)
            if done.returncode == 0:
                last = json.loads(done.stdout)
                if condition_true(last, "Available"):
                    return
            time.sleep(0.5)
        conditions = (last.get("status") or {}).get("conditions")
        raise TimeoutError(
            f"APIService {API_SERVICE} not Available after {timeout}s: {conditions}\n"
            f"adapter log:\n{self.log('keda-adapter')[-3000:]}"
        )

    def stop(self, remove: bool = True) -> None:
        """Remove the APIService, stop the adapter, then the operator (by PID)."""
        self.cluster.kubectl("delete", "apiservice", API_SERVICE, "--ignore-not-found", check=False)
        for name in ("keda-adapter", "keda-operator"):
            if name in self.processes:
                stop_process(self.processes.pop(name), timeout=15)
        if remove:
            shutil.rmtree(self.work_dir, ignore_errors=True)
