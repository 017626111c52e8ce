"""Which address of this machine the cluster's pods can reach, for the Redis the tests start.

On the test bed, pods reach this machine at the host end of the node's veth (the session's
`cluster` fixture exports it as $TASKQUEUE_E2E_POD_REDIS_HOST). On kind, pods reach the host
through the Docker network's bridge: the address this machine itself uses to reach a node.
Without a cluster it is 127.0.0.1. The e2e tests put `RedisServer.pod_url` (this host) into
Secrets and keep `url` (127.0.0.1) for themselves."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import kubernetes

POD_HOST_ENV = "TASKQUEUE_E2E_POD_REDIS_HOST"
LOOPBACK = "127.0.0.1"


def pod_redis_host() -> str:
    """The address pods use for Redis servers started by the tests (127.0.0.1 by default)."""
    return os.environ.get(POD_HOST_ENV) or LOOPBACK


def source_address_towards(ip: str) -> str:
    """The local address the kernel would use to send to `ip` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((ip, 9))
        return str(probe.getsockname()[0])


def node_internal_ips(kubeconfig: Path) -> list[str]:
    client = kubernetes.config.new_client_from_config(str(kubeconfig))
    try:
        nodes = kubernetes.client.CoreV1Api(client).list_node(_request_timeout=10).items
    finally:
        client.close()
    return [
        address.address
        for node in nodes
        for address in node.status.addresses or []
        if address.type == "InternalIP"
    ]


def detect_pod_redis_host(kubeconfig: Path) -> str:
    """This machine's address as the nodes of `kubeconfig`'s cluster see it: right for kind
    and the test bed; a remote cluster needs an explicit --pod-redis-host."""
    ips = node_internal_ips(kubeconfig)
    return source_address_towards(ips[0]) if ips else LOOPBACK


def use_pod_redis_host(explicit: str | None, kubeconfig: Path | None) -> None:
    """Set the pods' address for every RedisServer of this process: `explicit`, else the
    environment's, else detected from `kubeconfig`'s nodes (none: the test bed, loopback)."""
    host = explicit or os.environ.get(POD_HOST_ENV)
    if host is None and kubeconfig is not None:
        host = detect_pod_redis_host(kubeconfig)
    if host:
        os.environ[POD_HOST_ENV] = host


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback
