"""etcd + kube-apiserver + kube-controller-manager + kube-scheduler, stopped by PID.

`apiserver_only`: etcd and kube-apiserver alone (benchmarks of an API client).

etcd, the controllers and the scheduler listen on free loopback ports; the API server on
`address` (the machine's end of the test bed's veth, so that the node's namespace reaches
it; 127.0.0.1 without a node). Certificates are made with the `openssl` command line: a
CA, the API server's serving certificate, an admin client certificate in `system:masters`,
the node's (`system:node:testbed-node`) and kube-proxy's client certificates, the
service-account signing key, and the aggregation layer's front-proxy CA and client
certificate (for extension API servers such as KEDA's metrics adapter). Everything lives
in one directory, removed on stop.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from testbed.certs import issue, make_ca, openssl
from testbed.network import NODE_NAME, SERVICE_CIDR
from testbed.ports import free_port
from testbed.processes import stop_process

# Controllers a one-node cluster without a cloud can serve (pod CIDRs come from the CNI's
# host-local range, not from node IPAM).
CONTROLLERS = ",".join(
    [
        "*",
        "-nodeipam",
        "-service-lb-controller",
        "-node-route-controller",
        "-cloud-node-lifecycle-controller",
        "-bootstrap-signer-controller",
        "-token-cleaner-controller",
    ]
)


FRONT_PROXY_USER = "front-proxy-client"


def make_certificates(directory: Path, address: str) -> None:
    """CA, serving cert for `address` and the `kubernetes` Service, client certificates
    (admin, node, kube-proxy), service-account key pair, front-proxy CA and client."""
    make_ca(directory, subject="/CN=taskqueue-testbed-ca")
    issue(
        directory,
        "server",
        "/CN=kube-apiserver",
        f"subjectAltName=IP:{address},IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local",
    )
    issue(directory, "admin", "/O=system:masters/CN=testbed-admin")
    issue(directory, "node", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
    issue(directory, "kube-proxy", "/CN=system:kube-proxy")
    # The aggregation layer: the API server proxies to extension API servers (KEDA's
    # external metrics) with this client certificate, and they trust the user it names in
    # X-Remote-User because the front-proxy CA (read from kube-system's
    # extension-apiserver-authentication ConfigMap) signed it.
    make_ca(directory, name="front-proxy-ca", subject="/CN=taskqueue-testbed-front-proxy-ca")
    issue(directory, "front-proxy-client", f"/CN={FRONT_PROXY_USER}", ca="front-proxy-ca")
    openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)


def kubeconfig_text(server: str, ca: Path, user: dict[str, str]) -> str:
    """A kubeconfig with one cluster and one user (client cert files or a token)."""
    user_lines = "".join(f"    {key}: {value}\n" for key, value in user.items())
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: testbed\n  cluster:\n    server: {server}\n"
        f"    certificate-authority: {ca}\n"
        f"users:\n- name: testbed\n  user:\n{user_lines}"
        "contexts:\n- name: testbed\n  context: {cluster: testbed, user: testbed}\n"
        "current-context: testbed\n"
    )


@dataclass
class ControlPlane:
    """One control plane. `start()` returns when /readyz answers ok."""

    bin_dir: Path
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tq-cp-")))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    address: str = "127.0.0.1"
    """Where the API server listens and what it advertises (the `kubernetes` Service)."""
    apiserver_port: int = 0
    controller_manager_port: int = 0
    scheduler_port: int = 0
    apiserver_only: bool = False
    """etcd and the API server alone (bench/many_taskqueues.py): no controller makes
    ReplicaSets or pods, so every request the API server serves is the client's."""

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.work_dir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.work_dir / "ca.crt"

    @property
    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def admin_kubeconfig(self, server: str) -> str:
        """A kubeconfig for `server` (this API server, or another one on the same etcd)
        with the admin client certificate."""
        admin = {
            "client-certificate": str(self.work_dir / "admin.crt"),
            "client-key": str(self.work_dir / "admin.key"),
        }
        return kubeconfig_text(server, self.ca_file, admin)

    def _spawn(self, name: str, command: list[str]) -> None:
        self.commands[name] = command
        with open(self.work_dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                start_new_session=True,
            )

    def start(self, timeout: float = 60.0) -> ControlPlane:
        """Start etcd, the API server (wait for /readyz) and the controller-manager (wait
        for /healthz). On failure, what was started is stopped again (the data is kept)."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop(remove=False)
            raise

    def _start(self, timeout: float) -> ControlPlane:
        make_certificates(self.work_dir, self.address)
        etcd_port, peer_port = free_port(), free_port()
        self.apiserver_port = free_port()
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--data-dir",
                str(self.work_dir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",  # a throwaway cluster: speed over durability
                "--log-level",
                "warn",
            ],
        )
        wd = self.work_dir
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={self.apiserver_port}",
                # logs, exec, port-forward: the kubelet by its InternalIP, never a DNS name
                # (the node's name must not become a query to the machine's resolver).
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={wd / 'admin.crt'}",
                f"--kubelet-client-key={wd / 'admin.key'}",
                f"--tls-cert-file={wd / 'server.crt'}",
                f"--tls-private-key-file={wd / 'server.key'}",
                f"--client-ca-file={wd / 'ca.crt'}",
                f"--requestheader-client-ca-file={wd / 'front-proxy-ca.crt'}",
                f"--requestheader-allowed-names={FRONT_PROXY_USER}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={wd / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={wd / 'front-proxy-client.key'}",
                # Dial an APIService's endpoint address itself: Service IPs exist only as
                # kube-proxy's rules inside the node's namespace, not on this machine.
                "--enable-aggregator-routing=true",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={wd / 'sa.pub'}",
                f"--service-account-signing-key-file={wd / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=false",
                "--profiling=false",
                # Close open watches on SIGTERM (0 keeps them: a stop then waits ~60 s).
                "--shutdown-watch-termination-grace-period=2s",
                "--v=1",
            ],
        )
        self.kubeconfig.write_text(self.admin_kubeconfig(self.server))
        self._wait_ready(timeout)
        if self.apiserver_only:
            return self
        self.controller_manager_port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--service-account-private-key-file={wd / 'sa.key'}",
                f"--root-ca-file={wd / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                f"--controllers={CONTROLLERS}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # The node is ours: never evict pods because a heartbeat came late.
                "--node-monitor-grace-period=60s",
                "--v=1",
            ],
        )
        self._wait_healthz("kube-controller-manager", self.controller_manager_port, timeout)
        self.scheduler_port = free_port()
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.scheduler_port}",
                "--v=1",
            ],
        )
        self._wait_healthz("kube-scheduler", self.scheduler_port, timeout)
        return self

    def _wait_healthz(self, name: str, port: int, timeout: float) -> None:
        """Its /healthz (always allowed, self-signed serving cert) answers once it runs."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self._poll(f"https://127.0.0.1:{port}/healthz", context, timeout, name)

    def revive(self) -> list[str]:
        """Start a crashed controller-manager or scheduler again, as systemd or a static pod
        would: they exit (fatally, by design) when the API server is away at start."""
        revived = []
        for name in ("kube-controller-manager", "kube-scheduler"):
            process = self.processes.get(name)
            if process is None or process.poll() is None:
                continue
            self.processes.pop(name)
            self.start_component(name)
            revived.append(name)
        return revived

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Stop one component by its PID and start it again with the same command line
        (tests of API server restarts); returns when it is healthy again."""
        self.stop_component(name)
        self.start_component(name, timeout)

    def stop_component(self, name: str) -> None:
        self._stop_one(name)

    def start_component(self, name: str, timeout: float = 60.0) -> None:
        """Start a stopped component again, same command line, same port."""
        self._spawn(name, self.commands[name])
        if name == "kube-apiserver":
            self._wait_ready(timeout)
        elif name == "kube-controller-manager":
            self._wait_healthz(name, self.controller_manager_port, timeout)
        elif name == "kube-scheduler":
            self._wait_healthz(name, self.scheduler_port, timeout)

    def _wait_ready(self, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.work_dir / "admin.crt"), str(self.work_dir / "admin.key"))
        self._poll(f"{self.server}/readyz", context, timeout, "kube-apiserver")

    def _poll(self, url: str, context: ssl.SSLContext, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name in ("etcd", what):  # what this wait depends on
                process = self.processes.get(name)
                if process is not None and process.poll() is not None:
                    log = (self.work_dir / f"{name}.log").read_text()[-2000:]
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError as error:
                last = str(error)
            time.sleep(0.1)
        raise TimeoutError(f"{what} not ready after {timeout}s: {last}")

    def _stop_one(self, name: str) -> None:
        stop_process(self.processes.pop(name), timeout=15)

    def stop(self, remove: bool = True) -> None:
        """Stop in reverse order by PID: controllers, API server, etcd."""
        # A restarted component is last in the dict: stop in dependency order, not by age.
        order = ["kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
        for name in sorted(self.processes, key=lambda n: order.index(n) if n in order else -1):
            self._stop_one(name)
        if remove:
            shutil.rmtree(self.work_dir, ignore_errors=True)
