"""Shared fixtures. Servers are real processes started here and stopped by PID."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq.worker import BaseWorker
from testbed.cluster import Cluster, open_cluster
from testbed.pod_network import POD_HOST_ENV, use_pod_redis_host
from testbed.redis_server import RedisServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=None,
        help="run the e2e tests against this existing cluster (e.g. kind) instead of the test bed",
    )
    parser.addoption(
        "--pod-redis-host",
        default=None,
        help=(
            "this machine's address as the cluster's pods reach it, for the Redis servers the "
            f"tests start (also ${POD_HOST_ENV}); found from the nodes' InternalIP by default"
        ),
    )


def given_kubeconfig(config: pytest.Config) -> Path | None:
    given = config.getoption("--kubeconfig") or os.environ.get("KUBECONFIG")
    return Path(given) if given else None


def stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM ends the run as Ctrl-C does, so every fixture's teardown runs (the test bed
    also stops by itself when this process is gone, however it ended). Later signals are
    ignored, so that the teardown completes (a Ctrl-C in a terminal reaches pytest both
    directly and through .ci/run)."""
    INTERRUPTED.append(signum)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


INTERRUPTED: list[int] = []


@pytest.fixture(autouse=True)
def interrupts_end_the_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An RQ worker that works in this process installs its own SIGINT/SIGTERM handlers
    (a warm shutdown, then SystemExit) and never puts ours back: after the first such test a
    Ctrl-C or SIGTERM failed one test and the run went on. Workers in this process keep the
    run's handlers; a test that sets its own gets ours back afterwards."""
    monkeypatch.setattr(BaseWorker, "_install_signal_handlers", lambda self: None)
    yield
    install_interrupt_handlers()


def install_interrupt_handlers() -> None:
    if INTERRUPTED:
        return  # stopping: the teardown runs to its end
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    signal.signal(signal.SIGINT, stop_on_sigterm)


def pytest_configure(config: pytest.Config) -> None:
    """Every RedisServer of this run listens where the pods can reach it (see pod_network)."""
    install_interrupt_handlers()
    try:
        use_pod_redis_host(config.getoption("--pod-redis-host"), given_kubeconfig(config))
    except Exception as error:  # the cluster tests will say it is unreachable
        print(f"could not find the pods' address of this machine: {error}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole session; tests flush what they use."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on a freshly flushed database of the session's Redis."""
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The test bed (control plane + a real node), or the cluster of --kubeconfig/KUBECONFIG.
    On the test bed, pods reach this machine at the host end of the node's veth: every
    RedisServer started from now on also listens there."""
    with open_cluster(given_kubeconfig(request.config)) as cluster:
        if host := cluster.addresses.get("host_ip"):
            os.environ[POD_HOST_ENV] = host
        yield cluster


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted after it (without waiting for the pods to drain)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.create_namespace(name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
