"""Issue 14 part 1: the plugin reaches a Redis inside the cluster through the API server.

The test bed has no Redis image, so "Redis in the cluster" is a relay pod of the worker
image (a few lines of `python -c`: every TCP connection on its port 7000 is relayed to
the tests' redis-server on this machine) behind a Service with a selector and a named
target port. The Secret's URL is `redis://:<password>@relay.<ns>.svc:6379/0`, which this
machine cannot resolve: the plugin must find the Service's ready pod and port-forward
to its port 7000 through the API server, saying so in one line on stderr.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import pytest
from e2e_helpers import WORKER_IMAGE, Kubectl, make_secret, taskqueue_manifest, wait_for
from taskqueue_contract.keys import Keys
from taskqueue_plugin.errors import EXIT_NOT_FOUND, EXIT_REDIS
from taskqueue_plugin.forward import PROXY_THREAD
from taskqueue_plugin.main import main
from testbed.certs import LOOPBACK_SAN, issue
from testbed.redis_server import RedisServer, RedisTLS

pytestmark = pytest.mark.e2e
PASSWORD = "forward-e2e-Secret-37"
FAIL = "taskqueue_worker.examples.fail"
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RELAY = """
import socket, sys, threading
upstream = (sys.argv[1], int(sys.argv[2]))
def pump(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for end in (source, sink):
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
server = socket.create_server(("0.0.0.0", 7000))
print("relaying :7000 to", upstream, flush=True)
while True:
    client, peer = server.accept()
    try:
        far = socket.create_connection(upstream, timeout=5)
    except OSError as error:
        print("upstream refused", error, flush=True); client.close(); continue
    far.settimeout(None)
    print("connection from", peer, flush=True)
    for pair in ((client, far), (far, client)):
        threading.Thread(target=pump, args=pair, daemon=True).start()
"""


def relay(server: RedisServer) -> list[dict[str, Any]]:
    """The relay pod (label app=relay, port 7000 named `redis`) and Service relay:6379."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "relay-0", "labels": {"app": "relay"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "relay",
                    "image": WORKER_IMAGE,
                    "command": ["python", "-c", RELAY, server.pod_host, str(server.port)],
                    "ports": [{"name": "redis", "containerPort": 7000}],
                    "readinessProbe": {"tcpSocket": {"port": 7000}, "periodSeconds": 1},
                    "securityContext": RESTRICTED,
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "relay"},
        "spec": {
            "selector": {"app": "relay"},
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
        },
    }
    return [pod, service]


@pytest.fixture
def in_cluster_redis(kube: Kubectl) -> Iterator[RedisServer]:
    """A Redis with a password, reachable only as `relay.<ns>.svc:6379` in the cluster;
    the Secret `redis-url` holds that URL."""
    server = RedisServer(password=PASSWORD).start()
    try:
        for item in relay(server):
            kube.apply(item)
        make_secret(kube, "redis-url", f"redis://:{PASSWORD}@relay.{kube.namespace}.svc:6379/0")
        yield server
    finally:
        server.cleanup()


def ready(kube: Kubectl, pod: str) -> bool:
    """Ready as the plugin sees it: in the Service's EndpointSlices, which the EndpointSlice
    controller updates a moment after the pod's own Ready condition (CI met the gap)."""
    conditions = ((kube.get("pod", pod) or {}).get("status") or {}).get("conditions") or []
    if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
        return False
    return any(
        (endpoint.get("targetRef") or {}).get("name") == pod
        and (endpoint.get("conditions") or {}).get("ready")
        for slice_ in kube.list("endpointslices")
        for endpoint in slice_.get("endpoints") or []
    )


TRANSCRIPT: list[str] = []


def run_plugin(
    capfd: pytest.CaptureFixture[str], kubeconfig: Path, namespace: str, *args: str
) -> tuple[int, str, str]:
    capfd.readouterr()
    started = time.monotonic()
    code = main([*args, "-n", namespace, "--kubeconfig", str(kubeconfig)])
    took = time.monotonic() - started
    captured = capfd.readouterr()
    TRANSCRIPT.append(
        f"$ kubectl taskqueue {' '.join(args)}  # rc={code}, {took:.2f}s\n"
        f"{captured.err}{captured.out[:600]}"
    )
    return code, captured.out, captured.err


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(PROXY_THREAD) and t.is_alive()]


def test_status_and_dlq_through_the_api_server(
    cluster: Any,
    kube: Kubectl,
    crd_installed: None,
    in_cluster_redis: RedisServer,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    queue_name = f"fwd-{kube.namespace[-8:]}"
    kube.apply(taskqueue_manifest("backtests", queues=[queue_name], replicas=0))
    failing = (
        "import sys, redis\n"
        "from rq import Queue, SimpleWorker\n"
        "c = redis.Redis.from_url(sys.argv[1]); q = Queue(sys.argv[2], connection=c)\n"
        "for i in range(3): q.enqueue('taskqueue_worker.examples.fail', f'in cluster {i}')\n"
        "SimpleWorker([q], connection=c).work(burst=True)\n"
    )
    subprocess.run(
        [sys.executable, "-c", failing, in_cluster_redis.url, queue_name],
        check=True,
        capture_output=True,
        timeout=60,
    )
    wait_for(lambda: ready(kube, "relay-0"), 90, 0.3, "relay-0 Ready")
    line = "redis: via port-forward to pod relay-0 (service relay:6379) through the API server"

    # In-process: the path line, the figures, and no forward left behind.
    code, out, err = run_plugin(
        capfd, cluster.kubeconfig, kube.namespace, "dlq", "list", "backtests", "-o", "json"
    )
    assert code == 0, err
    assert line in err.splitlines()
    listed = json.loads(out)
    assert listed["total"] == 3
    assert sorted(i["exception"] for i in listed["items"]) == [
        f"RuntimeError: in cluster {i}" for i in range(3)
    ]
    assert proxy_threads() == []

    code, out, err = run_plugin(
        capfd, cluster.kubeconfig, kube.namespace, "status", "backtests", "-o", "json"
    )
    assert code == 0, err
    assert line in err.splitlines()
    status = json.loads(out)
    assert status["redisError"] is None, status
    assert status["queues"][0]["name"] == queue_name and status["queues"][0]["failed"] == 3
    assert proxy_threads() == []

    # As a user runs it: kubectl finds kubectl-taskqueue on PATH.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    for command in (["status", "backtests"], ["dlq", "list", "backtests"]):
        started = time.monotonic()
        done = subprocess.run(
            [str(cluster.kubectl_bin), "taskqueue", *command, "-n", kube.namespace],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        TRANSCRIPT.append(
            f"$ kubectl taskqueue {' '.join(command)}  # kubectl, rc={done.returncode}, "
            f"{time.monotonic() - started:.2f}s\n{done.stderr}{done.stdout}"
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == line
        assert PASSWORD not in done.stdout + done.stderr
    assert "RuntimeError: in cluster 2" in done.stdout

    # The Service's ClusterIP in the URL instead of its name: the same pod.
    cluster_ip = (kube.get("service", "relay") or {})["spec"]["clusterIP"]
    make_secret(kube, "ip-url", f"redis://:{PASSWORD}@{cluster_ip}:6379/0")
    by_ip = taskqueue_manifest("byip", queues=[queue_name], replicas=0)
    by_ip["spec"]["redis"] = {"urlFrom": {"secretKeyRef": {"name": "ip-url", "key": "url"}}}
    kube.apply(by_ip)
    code, out, err = run_plugin(capfd, cluster.kubeconfig, kube.namespace, "dlq", "list", "byip")
    assert code == 0, err
    assert err.strip() == line and "RuntimeError: in cluster 1" in out

    # Writes and the export go the same way.
    export = tmp_path / "jobs.parquet"
    code, out, err = run_plugin(
        capfd, cluster.kubeconfig, kube.namespace, "jobs", "export", "byip", "--to", str(export)
    )
    assert code == 0 and err.strip() == line, err
    assert len(pd.read_parquet(export)) == 3
    code, out, err = run_plugin(
        capfd, cluster.kubeconfig, kube.namespace, "dlq", "purge", "backtests", "--all", "--yes"
    )
    assert code == 0 and out.startswith("purged 3 failed job(s)"), err
    assert in_cluster_redis.client().zcard(Keys("rq").failed(queue_name)) == 0

    # What to fix, said: a near-miss name, an unknown namespace, a Service without pods.
    code, _, err = run_plugin(capfd, cluster.kubeconfig, kube.namespace, "status", "backtest")
    assert code == EXIT_NOT_FOUND
    assert (
        err.strip()
        == f"error: no TaskQueue 'backtest' in namespace '{kube.namespace}'; did you mean "
        "'backtests'?"
    )
    typo = kube.namespace[:-1]
    code, _, err = run_plugin(capfd, cluster.kubeconfig, typo, "status", "backtests")
    assert code == EXIT_NOT_FOUND
    assert err.startswith(f"error: no such namespace '{typo}'; did you mean '{kube.namespace}'")

    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ghost"},
            "spec": {"selector": {"app": "ghost"}, "ports": [{"port": 6379}]},
        }
    )
    make_secret(kube, "ghost-url", f"redis://:{PASSWORD}@ghost.{kube.namespace}.svc:6379/0")
    ghost = taskqueue_manifest("ghost", replicas=0)
    ghost["spec"]["redis"] = {"urlFrom": {"secretKeyRef": {"name": "ghost-url", "key": "url"}}}
    kube.apply(ghost)
    code, _, err = run_plugin(capfd, cluster.kubeconfig, kube.namespace, "dlq", "list", "ghost")
    with capfd.disabled():
        print("\n" + "\n".join(TRANSCRIPT))
    assert code == EXIT_REDIS
    assert f"no ready pod behind Service 'ghost' in namespace '{kube.namespace}'" in err
    assert PASSWORD not in err


TLS_SPEC = {
    "caFrom": {"secretKeyRef": {"name": "redis-ca", "key": "ca.crt"}},
    "clientCertificateSecretRef": {"name": "redis-client"},
}


@pytest.fixture
def in_cluster_tls_redis(kube: Kubectl, tmp_path: Path) -> Iterator[RedisServer]:
    """TLS only, client certificates required; the serving certificate names
    `relay.<ns>.svc` (and 127.0.0.1), not the pods' address of this machine."""
    tls = RedisTLS(tmp_path / "tls")
    issue(tls.directory, "redis", "/CN=redis", f"{LOOPBACK_SAN},DNS:relay.{kube.namespace}.svc")
    server = RedisServer(tls=tls).start()
    try:
        for item in relay(server):
            kube.apply(item)
        alias = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "alias"},
            "spec": {"selector": {"app": "relay"}, "ports": [{"port": 6379, "targetPort": 7000}]},
        }
        kube.apply(alias)
        secret(kube, "redis-ca", {"ca.crt": tls.pem("ca.crt")})
        client = {"tls.crt": tls.pem("client.crt"), "tls.key": tls.pem("client.key")}
        secret(kube, "redis-client", client, "kubernetes.io/tls")
        make_secret(kube, "redis-url", f"rediss://relay.{kube.namespace}.svc:6379/0")
        make_secret(kube, "alias-url", f"rediss://alias.{kube.namespace}.svc:6379/0")
        yield server
    finally:
        server.cleanup()


def secret(kube: Kubectl, name: str, data: dict[str, str], kind: str = "Opaque") -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body = {"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": {"name": name}}
    kube.apply(body | {"data": encoded})


def test_tls_and_another_key_prefix_through_the_api_server(
    cluster: Any,
    kube: Kubectl,
    crd_installed: None,
    in_cluster_tls_redis: RedisServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """rediss:// through the forward with the Secrets' CA and client certificate: the
    server name checked is the URL's host (a second Service to the same pod is refused);
    keyPrefix tqfwd runs the command in a child process, which opens its own forward."""
    tls = in_cluster_tls_redis.tls
    assert tls is not None
    secure = taskqueue_manifest("secure", queues=["fq"], replicas=0)
    secure["spec"]["redis"] |= {"tls": TLS_SPEC, "keyPrefix": "tqfwd"}
    kube.apply(secure)
    alias = taskqueue_manifest("alias", queues=["fq"], replicas=0)
    alias["spec"]["redis"] = {
        "urlFrom": {"secretKeyRef": {"name": "alias-url", "key": "url"}},
        "tls": TLS_SPEC,
        "keyPrefix": "tqfwd",
    }
    kube.apply(alias)
    failing = (
        "import sys, redis\n"
        "from rq import Queue, SimpleWorker\n"
        "c = redis.Redis.from_url(sys.argv[1]); q = Queue('fq', connection=c)\n"
        "for i in range(2): q.enqueue('taskqueue_worker.examples.fail', f'over tls {i}')\n"
        "SimpleWorker([q], connection=c).work(burst=True)\n"
    )
    url = in_cluster_tls_redis.url + "?" + urlencode(tls.client_kwargs())
    subprocess.run(
        [sys.executable, "-c", failing, url],
        env={**os.environ, "RQ_KEY_PREFIX": "tqfwd"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    wait_for(lambda: ready(kube, "relay-0"), 90, 0.3, "relay-0 Ready")
    TRANSCRIPT.clear()

    code, out, err = run_plugin(
        capfd, cluster.kubeconfig, kube.namespace, "dlq", "list", "secure", "-o", "json"
    )
    assert code == 0, err
    assert err.strip() == (
        "redis: via port-forward to pod relay-0 (service relay:6379) through the API server"
    )
    assert json.loads(out)["total"] == 2

    code, out, err = run_plugin(capfd, cluster.kubeconfig, kube.namespace, "status", "secure")
    assert code == 0, err
    assert (
        "via port-forward to pod relay-0" in err and "Queues:       fq   (key prefix tqfwd)" in out
    )

    code, out, err = run_plugin(capfd, cluster.kubeconfig, kube.namespace, "dlq", "list", "alias")
    with capfd.disabled():
        print("\n" + "\n".join(TRANSCRIPT))
    assert code == EXIT_REDIS
    assert "via port-forward to pod relay-0 (service alias:6379)" in err
    assert "certificate verify failed" in err and "alias" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2
    assert proxy_threads() == []
