"""Issue 6 acceptance: the chart renders, validates against the real API server, installs,
tests, upgrades and uninstalls; its RBAC is what the operator needs and no more."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import Kubectl, condition, make_secret, taskqueue_manifest, wait_for
from rq import Queue
from testbed.cluster import Cluster
from testbed.manifests import host_service, object_list
from testbed.redis_server import RedisServer

NOOP = "taskqueue_worker.examples.noop"

pytestmark = pytest.mark.e2e
CHART = Path(__file__).resolve().parents[3] / "charts" / "taskqueue-operator"


def rendered(cluster: Cluster, *values: str) -> list[dict[str, Any]]:
    text = cluster.helm(
        "template", "tq", str(CHART), "--namespace", "tq-system", "--skip-tests", *values
    ).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_lint(cluster: Cluster) -> None:
    result = cluster.helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_every_manifest_passes_server_dry_run(cluster: Cluster, mode: str) -> None:
    watched = f"watched-{uuid.uuid4().hex[:6]}"
    values = ["--set", f"watchNamespaces={{{watched}}}"] if mode == "namespaced" else []
    for name in ("tq-system", watched):
        cluster.kubectl("create", "namespace", name, check=False)
    documents = rendered(cluster, *values)
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "ServiceAccount", "Service"} <= kinds
    assert ("ClusterRoleBinding" in kinds) if mode == "cluster" else ("RoleBinding" in kinds)
    for doc in documents:
        result = cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=json.dumps(doc), check=False
        )
        assert result.returncode == 0, f"{doc['kind']}/{doc['metadata']['name']}: {result.stderr}"
    cluster.kubectl("delete", "namespace", watched, "--wait=false", check=False)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("replicaCount=two", "replicaCount"),
        ("unknownKey=1", "unknownKey"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
    ],
)
def test_bad_values_fail_with_the_schema_message(
    cluster: Cluster, value: str, message: str
) -> None:
    result = cluster.helm(
        "install",
        "bad",
        str(CHART),
        "--namespace",
        "tq-bad",
        "--set",
        value,
        "--dry-run",
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr and "schema" in result.stderr.lower(), result.stderr


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[str]:
    """The chart installed in the test's namespace, the operator running as a pod."""
    if cluster.state_dir is None:
        pytest.skip("installs the operator image; on a real cluster load it first (README)")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    # The API server's Pod Security admission refuses the operator pod, the helm test pod
    # and the worker pods unless each passes the `restricted` standard.
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    name = f"tq-{namespace[-6:]}"
    cluster.helm(
        "install",
        name,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--wait",
        "--timeout",
        "120s",
    )
    try:
        yield name
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, check=False)


@pytest.fixture
def only_the_charts_operator(operator_process: Any) -> Iterator[None]:
    """The session's operator (a process on this machine, watching every namespace) is
    paused: otherwise two operators reconcile the release's TaskQueue, and the one on this
    machine cannot resolve the cluster's Service names it is given."""
    operator_process.stop()
    try:
        yield
    finally:
        operator_process.start()


def test_install_test_upgrade_uninstall(
    only_the_charts_operator: None,
    cluster: Cluster,
    kube: Kubectl,
    namespace: str,
    release: str,
) -> None:
    deployment = f"{release}-taskqueue-operator"
    pods = kube.list("pods", f"app.kubernetes.io/instance={release}")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    status = pods[0]["status"]["containerStatuses"][0]
    built = cluster.built_images
    assert status["imageID"].split("@")[-1] == built[status["image"]], (status, built)
    server = RedisServer().start()
    try:
        # The operator pod and the workers reach Redis by a plain Service name, as users
        # write it: a Service without selector in front of this machine's Redis.
        kube.apply(object_list(host_service("redis", server.pod_host, server.port, 6379)))
        make_secret(kube, "redis-url", f"redis://redis.{namespace}.svc:6379/0")
        kube.apply(taskqueue_manifest("viahelm", queues=["viahelm"], replicas=1))
        wait_for(lambda: kube.get("deployment", "viahelm-workers"), 30, message="children")
        job = Queue("viahelm", connection=server.client()).enqueue(NOOP)
        wait_for(
            lambda: job.get_status(refresh=True) == "finished",
            120,
            0.5,
            "a job run by a worker pod",
        )

        def observed() -> dict[str, Any]:
            return (kube.get("taskqueue", "viahelm") or {}).get("status") or {}

        def report() -> str:
            logs = kube.run("logs", f"deploy/{deployment}", "--tail=40", check=False).stdout
            return f"status: {observed()}\noperator log:\n{logs}"

        def reached() -> bool:
            redis_condition = condition(kube.get("taskqueue", "viahelm"), "RedisReachable") or {}
            return bool(
                observed().get("observedGeneration") == 1
                and redis_condition.get("status") == "True"
            )

        try:
            wait_for(reached, 90, 0.5, "status from the operator pod, Redis via the Service")
        except AssertionError:
            print(report())
            raise
    finally:
        server.cleanup()

    tested = cluster.helm("test", release, "--namespace", namespace, "--timeout", "120s")
    assert "Succeeded" in tested.stdout, tested.stdout

    before = pods[0]["metadata"]["name"]
    cluster.helm(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--reuse-values",
        "--set",
        "verbose=true",
        "--wait",
        "--timeout",
        "120s",
    )
    after = wait_for(
        lambda: [
            p["metadata"]["name"]
            for p in kube.list("pods", f"app.kubernetes.io/instance={release}")
            if not p["metadata"].get("deletionTimestamp")
        ],
        60,
        message="the new operator pod",
    )
    assert before not in after
    args = (kube.get("deployment", deployment) or {})["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert "--verbose" in args

    cluster.helm("uninstall", release, "--namespace", namespace)

    def leftovers() -> str:
        return cluster.kubectl(
            "get",
            "all,serviceaccounts,roles,rolebindings",
            "-n",
            namespace,
            "-l",
            f"app.kubernetes.io/instance={release}",
            "-o",
            "name",
        ).stdout.strip()

    # The operator pod takes its grace period to stop; then nothing of the release is left.
    wait_for(lambda: leftovers() == "", 60, 0.5, "no operator objects left")
    assert (
        cluster.kubectl(
            "get", "clusterrole", f"{release}-taskqueue-operator-discovery", check=False
        ).returncode
        != 0
    )


def can_i(cluster: Cluster, account: str, *args: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *args, f"--as={account}", check=False)
    return result.stdout.strip() == "yes"


def test_rbac_is_least_privilege(cluster: Cluster, namespace: str, release: str) -> None:
    account = f"system:serviceaccount:{namespace}:{release}-taskqueue-operator"
    must = [
        ("watch", "taskqueues.taskqueue.dev"),
        ("patch", "taskqueues.taskqueue.dev", "status"),
        ("create", "deployments.apps"),
        ("patch", "deployments.apps", "scale"),
        ("delete", "cronjobs.batch"),
        ("patch", "pods"),
        ("get", "secrets"),
        ("create", "events"),
    ]
    for verb, resource, *sub in must:
        extra = [f"--subresource={sub[0]}"] if sub else []
        assert can_i(cluster, account, verb, resource, "-n", namespace, *extra), (verb, resource)
    other = "default"
    must_not = [
        ("get", "secrets", "-n", other),
        ("list", "secrets", "-n", namespace),
        ("delete", "deployments.apps", "-n", namespace),
        ("delete", "pods", "-n", namespace),
        ("create", "pods", "--subresource=exec", "-n", namespace),
        ("update", "taskqueues.taskqueue.dev", "-n", namespace),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("*", "*", "-n", namespace),
        ("watch", "taskqueues.taskqueue.dev", "-n", other),
    ]
    for verb, resource, *scope in must_not:
        assert not can_i(cluster, account, verb, resource, *scope), (verb, resource, scope)
