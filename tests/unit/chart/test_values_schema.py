"""values.schema.json catches bad values at `helm template` / `helm install`'s schema step,
naming the value (not the API server at apply, with a 5 KB dump and a failed release);
the helm test's TaskQueue renders from the values that name its Redis."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

CHART = Path(__file__).resolve().parents[3] / "charts/taskqueue-operator"


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    from testbed.build import bin_dir

    helm = bin_dir() / "helm"
    if not helm.exists():
        pytest.fail("run `make binaries` (it builds helm)")
    return subprocess.run(
        [str(helm), "template", "t", str(CHART), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("value", "path", "shown"),
    [
        ("resources.limits.memory=lots", "/resources/limits/memory", "'lots'"),
        ("resources.requests.cpu=fast", "/resources/requests/cpu", "'fast'"),
        ("resources.requests.memory=128MB", "/resources/requests/memory", "'128MB'"),
        ("resources.requests.cpu=-1", "/resources/requests/cpu", "-1"),
        ("resources.limit.memory=1Gi", "/resources", "'limit'"),
        ("test.redis.url=redis://:secret@r:6379", "/test/redis/url", "secret@r"),
    ],
)
def test_a_bad_value_fails_at_the_schema_step_naming_it(value: str, path: str, shown: str) -> None:
    done = helm_template("--set", value)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert f"at '{path}'" in done.stderr and shown in done.stderr, done.stderr
    assert len(done.stderr) < 1000, done.stderr


@pytest.mark.parametrize(
    "quantities",
    [
        ["resources.requests.cpu=100m", "resources.limits.memory=1Gi"],
        ["resources.requests.cpu=0.5", "resources.requests.memory=134217728"],
        ["resources.limits.cpu=2", "resources.limits.memory=1e9", "resources.limits.memory=500M"],
        ["resources.requests.ephemeral-storage=1Gi"],
    ],
)
def test_kubernetes_quantities_pass(quantities: list[str]) -> None:
    args = [arg for quantity in quantities for arg in ("--set", quantity)]
    done = helm_template(*args)
    assert done.returncode == 0, done.stderr


def documents(*args: str) -> list[dict]:
    done = helm_template(*args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_the_taskqueue_test_needs_a_redis_and_takes_it_from_a_secret_or_a_url() -> None:
    def test_pods(*args: str) -> list[dict]:
        return [
            d
            for d in documents(*args)
            if d["kind"] == "Pod" and d["metadata"]["name"].endswith("-test-tq")
        ]

    assert test_pods() == []  # no Redis named: only the operator check
    (pod,) = test_pods("--set", "test.redis.secretName=redis-url")
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "redis-url", "key": "url"}}
    assert '"urlFrom"' in env["TQ_REDIS_SPEC"]["value"]
    (pod,) = test_pods("--set", "test.redis.url=redis://redis:6379/0", "--set", "test.namespace=w")
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["REDIS_URL"]["value"] == "redis://redis:6379/0"
    assert pod["metadata"]["namespace"] == "w" == env["TQ_NAMESPACE"]["value"]
    assert pod["spec"]["containers"][0]["image"].startswith(
        "ghcr.io/taskqueue-dev/taskqueue-worker:"
    )


def test_the_test_pods_role_is_its_own_taskqueue_and_reading_pods() -> None:
    (role,) = [
        d
        for d in documents("--set", "test.redis.url=redis://redis:6379/0")
        if d["kind"] == "Role" and d["metadata"]["name"].endswith("-test-tq")
    ]
    verbs = {
        (tuple(r["resources"]), tuple(r.get("resourceNames", ())), *r["verbs"])
        for r in role["rules"]
    }
    name = role["metadata"]["name"]
    assert verbs == {
        (("taskqueues",), (), "create"),
        (("taskqueues",), (name,), "get", "delete"),
        (("pods",), (), "list"),
    }
