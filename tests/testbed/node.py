"""A real node: containerd + runc, a kubelet, kube-proxy and CoreDNS in the node's network
namespace (see testbed.network), with the images of this run imported into containerd.

Everything the node starts lives in two cgroups of the test bed's own (`tqtb-<id>` for the
components and the containerd shims, `tqtb-<id>-pods` as the kubelet's cgroupRoot), and
everything it mounts is under its state folder. That is what makes the teardown complete
even after a crash: kill what is in those cgroups (processes the test bed started), unmount
what is under the folder, delete the namespace. `remove_leftovers` does exactly that and is
also what a later start runs for a test bed whose supervisor was killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.controlplane import kubeconfig_text
from testbed.images import cache_dir
from testbed.network import CLUSTER_DNS, NODE_NAME, NodeNetwork, run
from testbed.processes import stop_process

CGROUP_ROOT = Path("/sys/fs/cgroup")
CNI_BIN = Path("/usr/lib/cni")


def component_cgroup(network: NodeNetwork) -> str:
    return f"tqtb-{network.id}"


def pods_cgroup(network: NodeNetwork) -> str:
    return f"tqtb-{network.id}-pods"


def hierarchies() -> list[Path]:
    """cgroup v1 hierarchies (cgroupfs driver), plus the v2 mount if it is the only one."""
    found = [p for p in CGROUP_ROOT.iterdir() if (p / "cgroup.procs").exists()]
    return found or [CGROUP_ROOT]


def pids_hierarchy() -> Path:
    pids = CGROUP_ROOT / "pids"
    return pids if pids.exists() else CGROUP_ROOT


def join_cgroup(name: str) -> None:
    """Run in the child before exec: the component and all it forks stay findable."""
    group = pids_hierarchy() / name
    group.mkdir(exist_ok=True)
    (group / "cgroup.procs").write_text(str(os.getpid()))


def make_cgroup(name: str) -> None:
    """The kubelet's cgroupRoot must exist in every hierarchy (cgroupfs driver); a v1
    cpuset group starts empty and needs its parent's CPUs and memory nodes."""
    for hierarchy in hierarchies():
        group = hierarchy / name
        group.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (group / knob).exists() and not (group / knob).read_text().strip():
                (group / knob).write_text((hierarchy / knob).read_text())


def cgroup_pids(name: str) -> list[int]:
    root = pids_hierarchy() / name
    if not root.exists():
        return []
    pids: list[int] = []
    for procs in root.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def kill_cgroup(name: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (pids := cgroup_pids(name)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove_cgroup(name: str) -> None:
    for hierarchy in hierarchies():
        root = hierarchy / name
        if not root.exists():
            continue
        for group in sorted(
            (p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        ):
            with contextlib.suppress(OSError):
                group.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def mounts_under(folder: Path) -> list[str]:
    prefix = str(folder.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: -len(p))


def unmount_under(folder: Path) -> None:
    for _ in range(3):  # a mount can hide another one at the same point
        points = mounts_under(folder)
        if not points:
            return
        for point in points:
            run("umount", "-l", point, check=False)


def remove_leftovers(network: NodeNetwork, state: Path | None, network_too: bool = True) -> None:
    """Everything a node of `network` can leave behind, also when its supervisor died."""
    kill_cgroup(pods_cgroup(network))
    kill_cgroup(component_cgroup(network))
    remove_cgroup(pods_cgroup(network))
    remove_cgroup(component_cgroup(network))
    if state is not None and state.exists():
        unmount_under(state)
    if not network_too:
        return
    network.destroy()
    cni = Path("/var/lib/cni")
    for leftover in [
        *cni.glob(f"results/{network.cni_network}-*"),
        cni / "networks" / network.cni_network,
    ]:
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(
            missing_ok=True
        )


CONTAINERD_CONFIG = """version = 2
root = "{root}"
state = "{state}"
{disabled}
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"""


def ctr(socket_path: Path, *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        ["ctr", "--address", str(socket_path), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def wait_containerd(process: subprocess.Popen[bytes], socket_path: Path, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"containerd exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(RuntimeError):
            ctr(socket_path, "version", timeout=5)
            return
        if time.monotonic() > deadline:
            raise TimeoutError("containerd did not answer in 30 s")
        time.sleep(0.1)


def image_store(archives: list[Path]) -> Path:
    """A containerd root with `archives` imported (content and unpacked overlay snapshots),
    made once per set of images in the cache. Each node starts from a hard-linked copy of
    it: importing takes tens of seconds per start, a linked copy about one. Safe because
    blobs and committed snapshots are never written to; the bolt databases, which are, are
    copied (see `copy_image_store`)."""
    version = subprocess.run(["containerd", "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256(version.encode())
    for archive in archives:
        info = archive.stat()
        digest.update(f"{archive}:{info.st_size}:{info.st_mtime_ns}".encode())
    stores = cache_dir() / "containerd"
    store = stores / digest.hexdigest()[:16]
    if (store / "ready").exists():
        return store / "root"
    stores.mkdir(parents=True, exist_ok=True)
    with open(stores / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (store / "ready").exists():
            return store / "root"
        for old in stores.iterdir():  # stores of other image sets: not needed any more
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix="tqct-"))  # a short path for the socket
        try:
            config = CONTAINERD_CONFIG.format(
                root=store / "root",
                state=work / "state",
                socket=work / "sock",
                opt=work / "opt",
                disabled='disabled_plugins = ["io.containerd.grpc.v1.cri"]',
            )
            (work / "config.toml").write_text(config)
            with open(work / "log", "wb") as log:
                process = subprocess.Popen(
                    ["containerd", "--config", str(work / "config.toml")],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                wait_containerd(process, work / "sock", work / "log")
                for archive in archives:
                    ctr(work / "sock", "images", "import", "--snapshotter", "overlayfs",
                        str(archive))  # fmt: skip
            finally:
                stop_process(process, timeout=10)
            unmount_under(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        (store / "ready").write_text("\n".join(str(a) for a in archives) + "\n")
    return store / "root"


def copy_image_store(store: Path, root: Path) -> None:
    """Hard links of everything but the databases, which are real copies."""
    subprocess.run(["cp", "-al", str(store), str(root)], check=True, capture_output=True)
    for database in store.rglob("*.db"):
        target = root / database.relative_to(store)
        target.unlink()
        shutil.copy2(database, target)


@dataclass
class Node:
    """The node of one test bed; `start()` returns once containerd answers and the
    kubelet, kube-proxy and CoreDNS run (the caller waits for the Node to be Ready)."""

    network: NodeNetwork
    bin_dir: Path
    state: Path
    certs: Path
    api_server: str
    sandbox_image: str  # the pause image, imported with the others
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.state / "containerd" / "containerd.sock"

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    def kubeconfig(self, user: str) -> Path:
        """A kubeconfig for the node's components, with the client certificate `user`."""
        path = self.state / f"{user}.kubeconfig"
        path.write_text(
            kubeconfig_text(
                self.api_server,
                self.certs / "ca.crt",
                {
                    "client-certificate": str(self.certs / f"{user}.crt"),
                    "client-key": str(self.certs / f"{user}.key"),
                },
            )
        )
        return path

    def _spawn(self, name: str, command: list[str]) -> None:
        group = component_cgroup(self.network)
        with open(self.state / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                self.network.in_node(*command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lambda: join_cgroup(group),
            )

    def start(self, archives: list[Path]) -> None:
        for sub in ("containerd", "kubelet", "cni/net.d", "cni/ipam", "pod-logs", "volume-plugins"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        copy_image_store(image_store(archives), self.state / "containerd" / "root")
        self._start_containerd()
        self._start_kubelet()
        self._start_proxy()
        self._start_dns()

    def ctr(self, *args: str, timeout: float = 300) -> str:
        return ctr(self.socket, *args, timeout=timeout)

    def _start_containerd(self) -> None:
        root = self.state / "containerd"
        cni = self.state / "cni"
        (cni / "net.d" / "10-testbed.conflist").write_text(
            json.dumps(self.network.cni_config(cni / "ipam"), indent=1)
        )
        config = CONTAINERD_CONFIG.format(
            root=root / "root",
            state=root / "state",
            socket=self.socket,
            opt=root / "opt",
            disabled="",
        )
        config += f"""[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_tls_streaming = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which("runc") or "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni / "net.d"}"
    max_conf_num = 1
"""
        (root / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(root / "config.toml")])
        wait_containerd(self.processes["containerd"], self.socket, self.state / "containerd.log")

    def _start_kubelet(self) -> None:
        kubelet = self.state / "kubelet"
        make_cgroup(pods_cgroup(self.network))
        (self.state / "resolv.conf").write_text(f"nameserver {self.network.node_ip}\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.network.node_ip,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.certs / "ca.crt")},
            },
            # Only the API server (client certificate of our CA) reaches this port.
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{pods_cgroup(self.network)}",
            "failCgroupV1": False,
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "resolvConf": str(self.state / "resolv.conf"),
            "podLogsDir": str(self.state / "pod-logs"),
            "clusterDNS": [CLUSTER_DNS],
            "clusterDomain": "cluster.local",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # Images are imported, never pulled: garbage collection must not remove them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
        }
        (kubelet / "config.json").write_text(json.dumps(config, indent=1))
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={kubelet / 'config.json'}",
                f"--kubeconfig={self.kubeconfig('node')}",
                f"--root-dir={kubelet}",
                f"--cert-dir={kubelet / 'pki'}",
                f"--node-ip={self.network.node_ip}",
                f"--hostname-override={NODE_NAME}",
                f"--volume-plugin-dir={self.state / 'volume-plugins'}",
                "--v=1",
            ],
        )

    def _start_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig("kube-proxy"))},
            "mode": "iptables",
            "hostnameOverride": NODE_NAME,
            "bindAddress": self.network.node_ip,
            "clusterCIDR": self.network.pod_cidr,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # A network namespace of our own cannot set the machine's conntrack limits.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"minSyncPeriod": "0s", "syncPeriod": "30s"},
            "nodePortAddresses": [f"{self.network.node_ip}/32"],
        }
        path = self.state / "kube-proxy.json"
        path.write_text(json.dumps(config, indent=1))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={path}", "--v=1"])

    def _start_dns(self) -> None:
        """CoreDNS serves cluster.local only: no `forward`, so a name outside the cluster
        is refused here and no query ever leaves the machine."""
        corefile = self.state / "Corefile"
        corefile.write_text(
            f""".:53 {{
    bind {self.network.node_ip}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self.kubeconfig("admin")}
        pods insecure
        ttl 5
    }}
    cache 5
}}
"""
        )
        self._spawn("coredns", [str(self.bin_dir / "coredns"), "-conf", str(corefile)])
        deadline = time.monotonic() + 30
        while True:
            self._check_alive("coredns")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.network.node_ip, 53), 1),
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("CoreDNS did not listen in 30 s")
            time.sleep(0.1)

    def _check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            log = (self.state / f"{name}.log").read_text()[-3000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")

    def exited(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def stop(self) -> None:
        """The kubelet first (it stops syncing pods), then the pods' processes by their
        cgroup, then containerd and the rest; then whatever is left, as after a crash."""
        if "kubelet" in self.processes:
            stop_process(self.processes.pop("kubelet"), timeout=10)
        kill_cgroup(pods_cgroup(self.network))
        for name in ("kube-proxy", "coredns", "containerd"):
            if name in self.processes:
                stop_process(self.processes.pop(name), timeout=10)
        # The network stays until the control plane stopped: the API server listens on its
        # veth, and without that address its shutdown hangs until SIGKILL.
        remove_leftovers(self.network, self.state, network_too=False)
        if not mounts_under(self.state):  # never delete through a mount (a local PV's data)
            shutil.rmtree(self.state, ignore_errors=True)
