"""The test bed's network naming and addressing rules (no root, nothing created)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from testbed import network
from testbed.network import NodeNetwork, id_for_state


def test_names_fit_linux_interface_names_and_differ_per_state_folder() -> None:
    one = NodeNetwork(id_for_state(Path("/work/main/.testbed")), 7)
    other = NodeNetwork(id_for_state(Path("/tmp/tq-testbed-abc")), 7)
    for net in (one, other):
        for name in (net.host_veth, net.node_veth, net.bridge):
            assert len(name) <= 15  # IFNAMSIZ - 1
        assert net.netns.startswith(network.NETNS_PREFIX)
    assert {one.host_veth, one.node_veth, one.bridge}.isdisjoint(
        {other.host_veth, other.node_veth, other.bridge}
    )


def test_addresses_are_private_and_the_two_ends_share_a_30() -> None:
    net = NodeNetwork("abc123", 42)
    link = ipaddress.ip_network("10.213.42.0/30")
    assert ipaddress.ip_address(net.host_ip) in link
    assert ipaddress.ip_address(net.node_ip) in link
    assert net.host_ip != net.node_ip
    pods = ipaddress.ip_network(net.pod_cidr)
    assert pods.is_private and not pods.overlaps(ipaddress.ip_network(network.SERVICE_CIDR))
    assert ipaddress.ip_address(net.bridge_ip) in pods


def test_bridge_mac_is_fixed_and_locally_administered() -> None:
    mac = NodeNetwork("abc123", 42).bridge_mac
    assert mac == NodeNetwork("abc123", 42).bridge_mac
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b1  # locally administered, unicast


def test_cni_config_has_no_masquerade_and_keeps_its_state_in_the_folder(tmp_path: Path) -> None:
    net = NodeNetwork("abc123", 42)
    bridge = net.cni_config(tmp_path / "ipam")["plugins"][0]  # type: ignore[index]
    assert bridge["type"] == "bridge" and bridge["bridge"] == net.bridge
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")
    assert bridge["ipam"]["ranges"] == [[{"subnet": net.pod_cidr, "gateway": net.bridge_ip}]]


def test_free_index_skips_networks_already_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = [ipaddress.ip_network("10.213.5.0/24"), ipaddress.ip_network("10.214.6.0/24")]
    monkeypatch.setattr(network, "addresses_in_use", lambda: taken)
    assert network.free_index(5) == 7
    assert network.free_index(100) == 100


def test_node_commands_enter_only_the_network_namespace() -> None:
    net = NodeNetwork("abc123", 42)
    command = net.in_node("containerd", "--config", "x")
    assert command[:2] == ["nsenter", f"--net=/run/netns/{net.netns}"]
    assert "--mount" not in " ".join(command)  # volumes must be visible to containerd
