"""Where the cluster's pods reach the tests' Redis: 127.0.0.1 without a cluster, the address
this machine uses towards a node elsewhere (kind's bridge)."""

from __future__ import annotations

import pytest
from testbed.pod_network import POD_HOST_ENV, pod_redis_host, source_address_towards
from testbed.redis_server import RedisServer


def test_pods_use_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POD_HOST_ENV, raising=False)
    assert pod_redis_host() == "127.0.0.1"
    monkeypatch.setenv(POD_HOST_ENV, "172.18.0.1")
    assert pod_redis_host() == "172.18.0.1"


def test_a_local_node_is_reached_from_loopback() -> None:
    assert source_address_towards("127.0.0.1") == "127.0.0.1"


def test_secrets_get_the_pods_address_and_the_tests_keep_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(POD_HOST_ENV, raising=False)  # the e2e session sets it
    server = RedisServer(port=6390, password="pw", pod_host="172.18.0.1")
    assert server.url == "redis://:pw@127.0.0.1:6390/0"
    assert server.pod_url == "redis://:pw@172.18.0.1:6390/0"
    assert RedisServer(port=6390).pod_url == "redis://127.0.0.1:6390/0"
