"""Which way the plugin reaches Redis, and what it says when it cannot (fake API objects)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from taskqueue_plugin.errors import EXIT_REDIS, RedisUnavailable
from taskqueue_plugin.forward import _api_message
from taskqueue_plugin.resolve import did_you_mean, missing_taskqueue_message
from taskqueue_plugin.route import (
    ClusterName,
    Direct,
    Forward,
    choose_path,
    cluster_name,
    probe_direct,
    redis_address,
)

URL = "redis://:hunter22@redis.quant.svc:6379/0"


class FakeCluster:
    """`route.Cluster` over dicts as the API server returns them."""

    def __init__(
        self,
        services: Mapping[tuple[str, str], dict[str, Any]] | None = None,
        slices: Mapping[tuple[str, str], list[dict[str, Any]]] | None = None,
        pods: list[dict[str, Any]] | None = None,
    ) -> None:
        self.services_by_name = dict(services or {})
        self.slices = dict(slices or {})
        self.pod_list = pods or []
        self.calls: list[str] = []

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"service {namespace}/{name}")
        return self.services_by_name.get((namespace, name))

    def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        self.calls.append(f"slices {namespace}/{service}")
        return self.slices.get((namespace, service), [])

    def services(self, namespace: str) -> list[dict[str, Any]]:
        return [body for (ns, _), body in self.services_by_name.items() if ns == namespace]

    def pods_with_ip(self, namespace: str, ip: str) -> list[dict[str, Any]]:
        return [p for p in self.pod_list if p["status"].get("podIP") == ip]

    def pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        self.calls.append(f"pods {namespace} {dict(selector)}")
        return [
            p
            for p in self.pod_list
            if all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]


def service(
    name: str = "redis",
    port: int = 6379,
    target: int | str | None = None,
    port_name: str | None = None,
    selector: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"port": port, "protocol": "TCP"}
    if target is not None:
        entry["targetPort"] = target
    if port_name:
        entry["name"] = port_name
    body: dict[str, Any] = {"ports": [entry], **spec}
    if selector is not None:
        body["selector"] = selector
    return {"metadata": {"name": name}, "spec": body}


def endpoint(pod: str | None, ready: bool | None = True, hostname: str | None = None) -> dict:
    entry: dict[str, Any] = {"addresses": ["10.244.0.7"]}
    if ready is not None:
        entry["conditions"] = {"ready": ready}
    if pod:
        entry["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "quant"}
    if hostname:
        entry["hostname"] = hostname
    return entry


def endpoint_slice(*endpoints: dict[str, Any], port: int = 6379, name: str | None = None) -> dict:
    return {
        "endpoints": list(endpoints),
        "ports": [{"port": port, "protocol": "TCP", **({"name": name} if name else {})}],
    }


def pod(name: str, ready: bool = True, ports: list[dict[str, Any]] | None = None) -> dict:
    return {
        "metadata": {"name": name, "labels": {"app": "redis"}},
        "spec": {"containers": [{"name": "redis", "ports": ports or []}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def unreachable(host: str, port: int) -> str:
    return "the name does not resolve here"


def choose(cluster: FakeCluster, url: str = URL, namespace: str = "quant") -> Any:
    return choose_path(url, namespace, lambda: cluster, unreachable)


# ----------------------------------------------------------------------- the URL's host


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("redis", ClusterName("redis", "quant")),
        ("redis.cache", ClusterName("redis", "cache")),
        ("redis.cache.svc", ClusterName("redis", "cache", explicit=True)),
        ("redis.cache.svc.cluster.local", ClusterName("redis", "cache", explicit=True)),
        ("Redis.Cache.svc.corp.example.", ClusterName("redis", "cache", explicit=True)),
        ("redis-0.redis.cache.svc", ClusterName("redis", "cache", "redis-0", explicit=True)),
        (
            "redis-0.redis-headless.cache.svc.cluster.local",
            ClusterName("redis-headless", "cache", "redis-0", explicit=True),
        ),
        ("redis.example.com", None),
        ("10.96.12.4", None),
        ("::1", None),
        ("a.b.c.d.svc", None),
    ],
)
def test_cluster_name(host: str, expected: ClusterName | None) -> None:
    assert cluster_name(host, "quant") == expected


def test_redis_address() -> None:
    assert redis_address("redis://:pw@redis.quant.svc/0") == ("redis.quant.svc", 6379)
    assert redis_address("rediss://r:6380/1") == ("r", 6380)
    assert redis_address("unix:///run/redis.sock") is None


# ------------------------------------------------------------------------- the choice


def test_direct_when_the_host_answers_and_the_cluster_is_not_read() -> None:
    def no_cluster() -> FakeCluster:
        raise AssertionError("the cluster is read only when the direct dial failed")

    path = choose_path(URL, "quant", no_cluster, lambda host, port: None, cluster_dns=True)
    assert path == Direct("redis.quant.svc", 6379)
    assert path.describe() == "redis: direct to redis.quant.svc:6379"
    plain = choose_path("redis://redis-host:6379/0", "quant", no_cluster, lambda h, p: None)
    assert plain == Direct("redis-host", 6379)
    unix = choose_path("unix:///run/redis.sock?password=pw", "quant", no_cluster)
    assert unix.describe() == "redis: direct to unix:///run/redis.sock?password=***"


def test_forward_to_the_ready_pod_of_the_endpoint_slices() -> None:
    cluster = FakeCluster(
        services={("quant", "redis"): service(target="redis", port_name="tcp")},
        slices={
            ("quant", "redis"): [
                endpoint_slice(
                    endpoint("redis-1", ready=False),
                    endpoint("redis-2"),
                    endpoint("redis-0", ready=None),  # nil is ready
                    port=7000,
                    name="tcp",
                )
            ]
        },
    )
    path = choose(cluster)
    assert path == Forward("redis-0", "quant", 7000, "redis", 6379)
    assert path.describe() == (
        "redis: via port-forward to pod redis-0 (service redis:6379) through the API server"
    )


def test_headless_service_pod_name() -> None:
    cluster = FakeCluster(
        services={("cache", "redis-headless"): service("redis-headless", clusterIP="None")},
        slices={
            ("cache", "redis-headless"): [
                endpoint_slice(
                    endpoint("redis-0", hostname="redis-0"),
                    endpoint("redis-1", hostname="redis-1"),
                )
            ]
        },
    )
    url = "redis://redis-1.redis-headless.cache.svc.cluster.local:6379/0"
    assert choose(cluster, url) == Forward("redis-1", "cache", 6379, "redis-headless", 6379)


def test_short_names_are_services_of_the_taskqueue_namespace() -> None:
    cluster = FakeCluster(
        services={("quant", "redis"): service()},
        slices={("quant", "redis"): [endpoint_slice(endpoint("redis-0"))]},
    )
    assert choose(cluster, "redis://redis:6379/0").pod == "redis-0"
    assert cluster.calls[0] == "service quant/redis"


def test_selector_when_there_are_no_endpoint_slices() -> None:
    ports = [{"name": "redis", "containerPort": 6380}]
    cluster = FakeCluster(
        services={("quant", "redis"): service(target="redis", selector={"app": "redis"})},
        pods=[pod("redis-b", ready=False, ports=ports), pod("redis-c", ports=ports)],
    )
    assert choose(cluster) == Forward("redis-c", "quant", 6380, "redis", 6379)


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (
            FakeCluster(
                services={("quant", "redis"): service(selector={"app": "redis"})},
                slices={("quant", "redis"): [endpoint_slice(endpoint("redis-0", ready=False))]},
            ),
            "no ready pod behind Service 'redis' in namespace 'quant' (not ready: redis-0)",
        ),
        (
            FakeCluster(services={("quant", "redis"): service(selector={"app": "redis"})}),
            "no ready pod behind Service 'redis' in namespace 'quant' "
            "(its selector app=redis matches no pod)",
        ),
        (
            FakeCluster(
                services={("quant", "redis"): service(selector={"app": "redis"})},
                pods=[pod("redis-0", ready=False)],
            ),
            "no ready pod behind Service 'redis' in namespace 'quant' (not ready: redis-0)",
        ),
        (
            FakeCluster(
                services={("quant", "redis"): service()},
                slices={("quant", "redis"): [endpoint_slice(endpoint(None))]},
            ),
            "no ready pod behind Service 'redis' in namespace 'quant' (its endpoints are "
            "addresses, not pods: 10.244.0.7; port-forward reaches only pods",
        ),
        (
            FakeCluster(services={("quant", "redis"): service()}),
            "(it has no selector and no endpoints)",
        ),
        (
            FakeCluster(services={("quant", "redis"): service(port=6380)}),
            "Service 'redis' in namespace 'quant' has no port 6379 (its ports: 6380)",
        ),
        (
            FakeCluster(
                services={
                    ("quant", "redis"): service(type="ExternalName", externalName="r.example")
                }
            ),
            "Service 'redis' in namespace 'quant' is an ExternalName for r.example",
        ),
        (
            FakeCluster(),
            "cannot reach Redis at redis://:***@redis.quant.svc:6379/0: redis.quant.svc is a "
            "name of the cluster's DNS, and there is no Service 'redis' in namespace 'quant'",
        ),
    ],
)
def test_what_is_said_when_there_is_no_pod(cluster: FakeCluster, message: str) -> None:
    with pytest.raises(RedisUnavailable) as raised:
        choose(cluster)
    assert message in str(raised.value)
    assert raised.value.code == EXIT_REDIS
    assert "hunter22" not in str(raised.value)


def test_headless_pod_that_is_not_there() -> None:
    cluster = FakeCluster(
        services={("quant", "redis"): service()},
        slices={("quant", "redis"): [endpoint_slice(endpoint("redis-0", hostname="redis-0"))]},
    )
    with pytest.raises(
        RedisUnavailable,
        match=r"no ready pod 'redis-3' behind Service 'redis' in namespace 'quant' "
        r"\(its pods: redis-0\)",
    ):
        choose(cluster, "redis://redis-3.redis.quant.svc:6379/0")


def test_an_external_host_says_what_to_do() -> None:
    with pytest.raises(RedisUnavailable) as raised:
        choose(FakeCluster(), "redis://:hunter22@redis.corp.example:6379/0")
    message = str(raised.value)
    assert message.startswith(
        "cannot reach Redis at redis://:***@redis.corp.example:6379/0 from this machine "
        "(the name does not resolve here), and redis.corp.example is not a Service of the "
        "cluster"
    )
    assert "worker pod cannot relay without exec" in message and "--redis-url" in message


def test_a_short_name_that_is_no_service() -> None:
    with pytest.raises(RedisUnavailable, match="no Service 'cache' in namespace 'quant'"):
        choose(FakeCluster(), "redis://cache:6379/0")


def test_an_ip_of_the_namespace() -> None:
    clustered = service(selector={"app": "redis"}, clusterIP="10.96.4.4")
    cluster = FakeCluster(
        services={("quant", "redis"): clustered},
        slices={("quant", "redis"): [endpoint_slice(endpoint("redis-0"))]},
        pods=[pod("redis-0") | {"status": pod("redis-0")["status"] | {"podIP": "10.244.0.9"}}],
    )
    assert choose(cluster, "redis://10.96.4.4:6379/0") == Forward(
        "redis-0", "quant", 6379, "redis", 6379
    )
    assert choose(cluster, "redis://10.244.0.9:6379/0") == Forward("redis-0", "quant", 6379)
    with pytest.raises(RedisUnavailable, match=r"10\.1\.2\.3 is not a Service of the cluster"):
        choose(cluster, "redis://10.1.2.3:6379/0")


# ------------------------------------------------------------------------ direct probe


def test_probe_direct() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        assert probe_direct("127.0.0.1", port) is None
    assert probe_direct("127.0.0.1", port) == "connection refused"
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]

        def answer(reply: bytes) -> None:
            conn, _ = listening.accept()
            conn.recv(16)
            conn.sendall(reply)
            conn.close()

        for reply, expected in [
            (b"-NOAUTH Authentication required.\r\n", None),
            (b"+PONG\r\n", None),
            (b"HTTP/1.1 400 Bad Request\r\n", f"what answers at 127.0.0.1:{port} is not Redis"),
        ]:
            thread = threading.Thread(target=answer, args=(reply,))
            thread.start()
            assert probe_direct("127.0.0.1", port, resp=True) == expected
            thread.join()
    assert probe_direct("no-such-host.invalid", 6379) == "the name does not resolve here"


# ------------------------------------------------------------------------------ names


def test_did_you_mean() -> None:
    assert did_you_mean("backtest", ["backtests", "ingest"]) == "; did you mean 'backtests'?"
    assert did_you_mean("zzz", ["backtests"]) == ""
    assert did_you_mean("x", None) == ""


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ("backtest", "quant", True, None, ["backtests", "ingest"], []),
            "no TaskQueue 'backtest' in namespace 'quant'; did you mean 'backtests'?",
        ),
        (
            ("backtests", "qaunt", False, ["quant", "default"], None, None),
            "no such namespace 'qaunt'; did you mean 'quant'?",
        ),
        (("backtests", "qaunt", False, None, None, None), "no such namespace 'qaunt'"),
        (
            ("backtests", "default", True, None, [], ["quant"]),
            "no TaskQueue 'backtests' in namespace 'default'; there is one in namespace "
            "'quant' (-n quant)",
        ),
        (
            ("zz", "quant", True, None, [], []),
            "no TaskQueue 'zz' in namespace 'quant' (it has no TaskQueues)",
        ),
        (
            ("zz", "quant", None, None, ["ingest", "backtests"], None),
            "no TaskQueue 'zz' in namespace 'quant' (its TaskQueues: backtests, ingest)",
        ),
        (("zz", "quant", None, None, None, None), "no TaskQueue 'zz' in namespace 'quant'"),
    ],
)
def test_missing_taskqueue_message(arguments: tuple[Any, ...], message: str) -> None:
    assert missing_taskqueue_message(*arguments) == message


def test_api_message_from_a_refused_handshake() -> None:
    status = {
        "kind": "Status",
        "message": 'pods "redis-0" is forbidden: User "bob" cannot create resource '
        '"pods/portforward"',
        "code": 403,
    }
    body = repr(json.dumps(status).encode())
    reason = f"Handshake status 403 Forbidden -+-+- {{'audit-id': 'x'}} -+-+- {body}"

    class Refused(Exception):
        def __init__(self) -> None:
            super().__init__("(0)")
            self.reason = reason

    assert _api_message(Refused()) == status["message"]
    assert _api_message(RuntimeError("Handshake status 500 Internal Server Error")) == (
        "500 Internal Server Error"
    )


def test_the_link_announces_its_path_once() -> None:
    from taskqueue_plugin.forward import RedisLink
    from taskqueue_plugin.main import _link, build_parser
    from taskqueue_plugin.resolve import Target

    lines: list[str] = []

    def no_api() -> None:
        raise AssertionError("a direct path needs no API client")

    link = RedisLink(
        "redis://redis-host:6379/0", "quant", no_api, lines.append, probe=lambda h, p: None
    )
    assert link.dial is None and link.dial is None and link.via == ""
    assert lines == ["redis: direct to redis-host:6379"]
    link.close()

    options = build_parser().parse_args(["status", "tq", "--redis-url", "redis://r:6379/0"])
    assert _link(options, Target("tq", None, "redis://r:6379/0", "rq", ())) is None
    options = build_parser().parse_args(["status", "tq", "-n", "quant"])
    assert isinstance(_link(options, Target("tq", "quant", URL, "rq", ())), RedisLink)


def test_a_svc_name_asks_the_cluster_first_and_sends_no_dns_query() -> None:
    # Only a cluster's DNS knows redis.quant.svc: dialling it from a laptop would send the
    # lookup to the laptop's resolver, and on to the Internet's.
    cluster = FakeCluster(
        services={("quant", "redis"): service()},
        slices={("quant", "redis"): [endpoint_slice(endpoint("redis-0"))]},
    )

    def no_probe(host: str, port: int) -> str | None:
        raise AssertionError(f"{host} was dialled (a DNS query) though it is a Service")

    path = choose_path(URL, "quant", lambda: cluster, no_probe)
    assert path == Forward("redis-0", "quant", 6379, "redis", 6379)
    with pytest.raises(RedisUnavailable, match="no Service 'redis' in namespace 'quant'"):
        choose_path(URL, "quant", lambda: FakeCluster(), no_probe)
