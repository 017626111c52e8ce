"""Issue 8: rediss:// to a Redis that serves TLS only, with a test CA, and requires client
certificates. Workers, a schedule's enqueue pod, the operator and the plugin all connect
with the CA and client certificate from Secrets; TLS mistakes are a condition with a reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Kubectl, condition, make_secret, taskqueue_manifest, wait_for
from rq import Queue
from rq.job import Job
from taskqueue_plugin.main import main as plugin_main
from testbed.cluster import Cluster
from testbed.redis_server import RedisServer, RedisTLS

pytestmark = pytest.mark.e2e
NOOP = "taskqueue_worker.examples.noop"
TLS_SPEC = {
    "caFrom": {"secretKeyRef": {"name": "redis-ca", "key": "ca.crt"}},
    "clientCertificateSecretRef": {"name": "redis-client"},
}


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tls=RedisTLS(tmp_path / "tls")).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def tls_secrets(kube: Kubectl, tls_redis: RedisServer) -> None:
    """The Secrets TLS_SPEC names: the test CA, and the client certificate (tls type)."""
    tls = tls_redis.tls
    assert tls is not None
    secret(kube, "redis-ca", {"ca.crt": tls.pem("ca.crt")})
    client = {"tls.crt": tls.pem("client.crt"), "tls.key": tls.pem("client.key")}
    secret(kube, "redis-client", client, "kubernetes.io/tls")


def secret(kube: Kubectl, name: str, data: dict[str, str], kind: str = "Opaque") -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body = {"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": {"name": name}}
    kube.apply(body | {"data": encoded})


def reachable(kube: Kubectl, name: str) -> dict[str, Any]:
    return condition(kube.get("taskqueue", name), "RedisReachable") or {}


def test_workers_schedules_operator_and_plugin_over_tls(
    cluster: Cluster,
    kube: Kubectl,
    crd_installed: None,
    operator_process: Any,
    tls_redis: RedisServer,
    tls_secrets: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    make_secret(kube, "redis-url", tls_redis.pod_url)
    queue_name = f"tls-{kube.namespace[-8:]}"
    schedule = {"name": "tick", "schedule": "@hourly", "function": NOOP, "queue": queue_name}
    redis = {"urlFrom": {"secretKeyRef": {"name": "redis-url", "key": "url"}}, "tls": TLS_SPEC}
    kube.apply(
        taskqueue_manifest(
            "secure",
            redis=redis,
            queues=[queue_name],
            scaling={"minReplicas": 0, "maxReplicas": 2},
            schedules=[schedule],
        )
    )
    wait_for(lambda: reachable(kube, "secure").get("status") == "True", 30, 0.2, "TLS reachable")

    # A real worker pod drains jobs over TLS (the operator scales it up from 0 by reading
    # the queue over TLS).
    client = tls_redis.client()
    queue = Queue(queue_name, connection=client)
    jobs = [queue.enqueue(NOOP) for _ in range(5)]
    wait_for(
        lambda: all(Job.fetch(j.id, connection=client).get_status() == "finished" for j in jobs),
        90,
        0.5,
        "5 jobs finished by a worker over TLS",
    )

    # The schedule's pod enqueues over TLS too.
    kube.run("create", "job", "--from=cronjob/secure-tick", "tick-now")
    wait_for(
        lambda: ((kube.get("job", "tick-now") or {}).get("status") or {}).get("succeeded"),
        60,
        0.5,
        "the schedule's enqueue pod succeeded",
    )
    wait_for(lambda: len(queue.finished_job_registry) >= 6, 60, 0.5, "the scheduled job ran")

    # The plugin reads the same Secrets to reach Redis.
    capfd.readouterr()
    args = ["status", "secure", "-o", "json", "-n", kube.namespace]
    code = plugin_main([*args, "--kubeconfig", str(cluster.kubeconfig)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert json.loads(out)["queues"][0]["finished"] >= 6

    # The certificates reached pods only by reference.
    children = kube.run("get", "deployments,cronjobs,pods", "-o", "json").stdout
    assert "BEGIN" not in children and "REDIS_TLS_CLIENT_KEY" in children


def test_tls_and_url_mistakes_are_conditions_with_reasons(
    kube: Kubectl,
    crd_installed: None,
    operator_process: Any,
    tls_redis: RedisServer,
    tls_secrets: None,
    tmp_path: Path,
) -> None:
    other_ca = RedisTLS(tmp_path / "other")  # did not sign Redis's certificate
    secret(kube, "wrong-ca", {"ca.crt": other_ca.pem("ca.crt")})
    make_secret(kube, "tls-url", tls_redis.pod_url)
    make_secret(kube, "plain-url", tls_redis.pod_url.replace("rediss://", "redis://"))
    make_secret(kube, "bad-url", "redis://127.0.0.1:not-a-port/0")
    cases = {
        # Redis's certificate is not signed by the CA we were told to trust.
        "wrong-ca": (
            "tls-url",
            {"caFrom": {"secretKeyRef": {"name": "wrong-ca", "key": "ca.crt"}}},
            "TLSHandshakeFailed",
        ),
        # Certificates configured, but the Secret's URL is redis://.
        "plain-scheme": ("plain-url", TLS_SPEC, "TLSMisconfigured"),
        # No TLS at all against a TLS-only port: the server hangs up.
        "no-tls": ("plain-url", None, "ConnectionFailed"),
        # A URL redis-py cannot parse (the CRD checks only inline URLs, not Secrets).
        "bad-url": ("bad-url", None, "InvalidURL"),
        # The CA's Secret does not exist (yet): which one is named in the message.
        "missing-ca": (
            "tls-url",
            {"caFrom": {"secretKeyRef": {"name": "not-there", "key": "ca.crt"}}},
            "SecretMissing",
        ),
    }
    for name, (url_secret, tls_spec, _) in cases.items():
        redis: dict[str, Any] = {"urlFrom": {"secretKeyRef": {"name": url_secret, "key": "url"}}}
        if tls_spec is not None:
            redis["tls"] = tls_spec
        kube.apply(taskqueue_manifest(name, redis=redis, replicas=1))
    for name, (_, _, reason) in cases.items():
        wait_for(lambda n=name: reachable(kube, n).get("status") == "False", 30, 0.2, name)
        found = reachable(kube, name)
        assert found["reason"] == reason, (name, found)
        assert found["message"] and "Traceback" not in found["message"]
        assert len(found["message"]) < 300, found["message"]
        print(f"{name}: {found['reason']}: {found['message']}")
    assert "Secret" in reachable(kube, "missing-ca")["message"]
    assert "not-there: 404 Not Found" in reachable(kube, "missing-ca")["message"]
    # No crash loop: one Warning per TaskQueue, and replicas are kept, not zeroed. Its
    # reason names what to fix (an outage alone is RedisUnreachable).
    events = json.loads(kube.run("get", "events", "-o", "json").stdout)["items"]
    for name, (_, _, reason) in cases.items():
        expected = "RedisUnreachable" if reason == "ConnectionFailed" else reason
        warnings = [
            e
            for e in events
            if e["involvedObject"]["name"] == name
            and e["type"] == "Warning"
            and e["reason"] in (expected, "RedisUnreachable")
        ]
        assert [e["reason"] for e in warnings] == [expected], (name, warnings)
        assert (kube.get("deployment", f"{name}-workers") or {})["spec"]["replicas"] == 1
