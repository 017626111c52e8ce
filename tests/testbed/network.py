"""The test bed's network: a node in a network namespace of its own, reached over one veth.

```
 machine's namespace (forwarding stays 0)   | node namespace tqtb-<id> (its own routing)
   kube-apiserver, etcd, Redis of the tests |   containerd, kubelet, kube-proxy, CoreDNS
   tq<id>h 10.213.N.1/30 ------------ veth ------ tq<id>n 10.213.N.2/30  (node InternalIP)
   route 10.214.N.0/24 via 10.213.N.2       |   bridge tq<id>b 10.214.N.1/24, fixed MAC
                                            |     pods 10.214.N.x (CNI bridge + host-local)
```

The machine's namespace gains two interfaces' worth of addresses and one route to the pods,
all through the test bed's own veth: no forwarding, no NAT, no default route in the node's
namespace, so nothing of the test bed has a path off the machine. Service IPs exist only
as kube-proxy's DNAT rules inside the node's namespace (pods reach them through the
bridge, their gateway); the machine's namespace has no route to them.

Names carry an id derived from the state folder, so a developer's test bed and CI's do not
collide; a registry in /run/taskqueue-testbed records which supervisor owns which id, so a
later start can remove what a killed run left (its namespace, veth, cgroups, mounts).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REGISTRY = Path("/run/taskqueue-testbed")
NETNS_PREFIX = "tqtb-"
LINK_NET = "10.213.{n}.0/30"
POD_NET = "10.214.{n}.0/24"
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_DNS = "10.96.0.10"
NODE_NAME = "testbed-node"


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done


def id_for_state(state: Path) -> str:
    return hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:6]


def addresses_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network on this machine's interfaces and routes."""
    taken = []
    for line in run("ip", "-4", "-o", "addr").stdout.splitlines():
        taken.append(ipaddress.ip_interface(line.split()[3]).network)
    for line in run("ip", "-4", "route").stdout.splitlines():
        first = line.split()[0]
        if first != "default" and "/" in first:
            taken.append(ipaddress.ip_network(first, strict=False))
    return taken


def free_index(preferred: int) -> int:
    """An N for 10.213.N.0/30 and 10.214.N.0/24 that no interface or route uses yet."""
    taken = addresses_in_use()
    for offset in range(250):
        n = (preferred + offset) % 250
        ours = [
            ipaddress.ip_network(LINK_NET.format(n=n)),
            ipaddress.ip_network(POD_NET.format(n=n)),
        ]
        if not any(net.overlaps(other) for net in ours for other in taken):
            return n
    raise RuntimeError("no free 10.213.N.0/30 + 10.214.N.0/24 pair for the test bed")


@dataclass(frozen=True)
class NodeNetwork:
    """Names and addresses of one test bed's node network."""

    id: str
    n: int

    @classmethod
    def allocate(cls, state: Path) -> NodeNetwork:
        ident = id_for_state(state)
        return cls(ident, free_index(int(ident, 16) % 250))

    @classmethod
    def recorded(cls, addresses: dict[str, str]) -> NodeNetwork:
        """The network of a running test bed, from its `network.json`."""
        n = int(addresses["host_ip"].split(".")[2])
        return cls(addresses["netns"].removeprefix(NETNS_PREFIX), n)

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.id}"

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def host_veth(self) -> str:
        return f"tq{self.id}h"

    @property
    def node_veth(self) -> str:
        return f"tq{self.id}n"

    @property
    def bridge(self) -> str:
        return f"tq{self.id}b"

    @property
    def host_ip(self) -> str:
        """The machine's end of the veth: the API server and the tests' Redis listen here."""
        return str(ipaddress.ip_network(LINK_NET.format(n=self.n))[1])

    @property
    def node_ip(self) -> str:
        """The node's InternalIP (kubelet, CoreDNS)."""
        return str(ipaddress.ip_network(LINK_NET.format(n=self.n))[2])

    @property
    def pod_cidr(self) -> str:
        return POD_NET.format(n=self.n)

    @property
    def bridge_ip(self) -> str:
        return str(ipaddress.ip_network(self.pod_cidr)[1])

    @property
    def bridge_mac(self) -> str:
        """Fixed: a bridge otherwise takes its lowest port's MAC and changes it when that pod
        goes away; the other pods' ARP entries go stale and their connections stall."""
        return f"02:74:71:{self.n:02x}:00:01"

    @property
    def cni_network(self) -> str:
        return self.netns

    def in_node(self, *command: str) -> list[str]:
        """`command` in the node's network namespace only (same mount namespace, so the
        kubelet's volume mounts and containerd's rootfs mounts see each other)."""
        return ["nsenter", f"--net={self.netns_path}", "--", *command]

    def create(self) -> None:
        ns = self.netns
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", self.node_veth,
            "netns", ns)  # fmt: skip
        run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_veth)
        run("ip", "link", "set", self.host_veth, "up")
        for command in (
            ["link", "set", "lo", "up"],
            ["addr", "add", f"{self.node_ip}/30", "dev", self.node_veth],
            ["link", "set", self.node_veth, "up"],
            ["link", "add", self.bridge, "type", "bridge"],
            ["link", "set", self.bridge, "address", self.bridge_mac],
            ["addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge],
            ["link", "set", self.bridge, "up"],
        ):
            run("ip", "-n", ns, *command)
        # The node routes between its veth and its bridge, and kube-proxy's DNAT needs to
        # see bridged traffic (pod -> Service IP -> pod on the same bridge).
        run(*self.in_node("sysctl", "-q", "-w", "net.ipv4.ip_forward=1"))
        run(*self.in_node("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"),
            check=False)  # fmt: skip
        run("ip", "route", "add", self.pod_cidr, "via", self.node_ip, "dev", self.host_veth)

    def cni_config(self, data_dir: Path) -> dict[str, object]:
        return {
            "cniVersion": "1.0.0",
            "name": self.cni_network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,  # the gateway is the bridge, inside the node's namespace
                    "ipMasq": False,
                    "hairpinMode": True,  # a pod reaching itself through its Service
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(data_dir),
                        "ranges": [[{"subnet": self.pod_cidr, "gateway": self.bridge_ip}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ],
        }

    def check_isolated(self) -> None:
        """The network rule, asserted: forwarding 0 in the machine's namespace, no NAT rule of
        ours there, our routes only through our veth, and the node namespace without any
        route off its own veth and bridge."""
        if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0":
            raise RuntimeError("net.ipv4.ip_forward is not 0 in the machine's namespace")
        ours = [
            ipaddress.ip_network(LINK_NET.format(n=self.n)),
            ipaddress.ip_network(self.pod_cidr),
        ]
        for line in run("ip", "-4", "route").stdout.splitlines():
            words = line.split()
            if words[0] == "default" or "/" not in words[0]:
                continue
            net = ipaddress.ip_network(words[0], strict=False)
            if (
                any(net.overlaps(o) for o in ours)
                and words[words.index("dev") + 1] != self.host_veth
            ):
                raise RuntimeError(f"route to the test bed's addresses off its veth: {line}")
        nat = run("iptables", "-t", "nat", "-S", check=False).stdout
        for net in (*ours, ipaddress.ip_network(SERVICE_CIDR)):
            if str(net) in nat:
                raise RuntimeError(f"a NAT rule for {net} in the machine's namespace")
        for line in run("ip", "-n", self.netns, "-4", "route").stdout.splitlines():
            words = line.split()
            if words[0] == "default" or words[words.index("dev") + 1] not in (
                self.node_veth,
                self.bridge,
            ):
                raise RuntimeError(f"the node's namespace has a route out: {line}")

    def destroy(self) -> None:
        """Deleting the namespace removes its veth end (so the peer and our route too) and
        the bridge; the host end is removed explicitly in case the namespace is gone."""
        run("ip", "netns", "del", self.netns, check=False)
        run("ip", "link", "del", self.host_veth, check=False)


def register(network: NodeNetwork, state: Path) -> None:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    entry = {"pid": os.getpid(), "state": str(state), "n": network.n}
    (REGISTRY / network.id).write_text(json.dumps(entry) + "\n")


def unregister(network: NodeNetwork) -> None:
    (REGISTRY / network.id).unlink(missing_ok=True)


def abandoned() -> list[tuple[NodeNetwork, Path]]:
    """Test beds whose supervisor is gone, and namespaces of ours nobody registered."""
    found: dict[str, tuple[NodeNetwork, Path]] = {}
    live: set[str] = set()
    if REGISTRY.exists():
        for entry in REGISTRY.iterdir():
            record = json.loads(entry.read_text() or "{}")
            if record and Path(f"/proc/{record['pid']}").exists():
                live.add(entry.name)
                continue
            found[entry.name] = (
                NodeNetwork(entry.name, int(record.get("n", 0))),
                Path(record.get("state", "/nonexistent")),
            )
    for line in run("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0]
        ident = name.removeprefix(NETNS_PREFIX)
        if name.startswith(NETNS_PREFIX) and ident not in live and ident not in found:
            found[ident] = (NodeNetwork(ident, 0), Path("/nonexistent"))
    return list(found.values())
