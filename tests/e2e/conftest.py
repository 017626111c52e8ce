"""Fixtures for operator e2e tests: the CRD, a running operator, a Redis Secret."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from e2e_helpers import Kubectl, OperatorProcess, install_crd, make_secret
from testbed.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(cluster: Any) -> Iterator[RedisServer]:
    """The session's Redis for e2e tests: started once the cluster is known, so it also
    listens where that cluster's pods reach this machine (`pod_url`)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def crd_installed(cluster: Any) -> None:
    install_crd(cluster)


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
    make_secret(kube, "redis-url", redis_server.pod_url)
    return "redis-url"
