"""Issue 6 acceptance: the chart renders, validates against the real API server, installs,
tests, upgrades and uninstalls; its RBAC is what the operator needs and no more."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
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
from testbed.ports import free_port
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


def test_a_bad_resource_quantity_fails_at_the_schema_step_and_leaves_no_release(
    cluster: Cluster, namespace: str
) -> None:
    """Not at apply with the API server's 5 KB refusal, after a failed release was made."""
    result = cluster.helm(
        "install",
        "badquantity",
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        "resources.limits.memory=lots",
        check=False,
    )
    assert result.returncode != 0
    assert "schema" in result.stderr and "/resources/limits/memory" in result.stderr
    assert "'lots'" in result.stderr and len(result.stderr) < 1000, result.stderr
    listed = cluster.helm("list", "--namespace", namespace, "--all", "-q").stdout
    assert "badquantity" not in listed


def test_notes_say_the_monitoring_objects_were_skipped_and_why(
    cluster: Cluster, namespace: str
) -> None:
    """The test bed has no Prometheus Operator: no monitoring.coreos.com API."""
    result = cluster.helm(
        "install",
        "notes",
        str(CHART),
        "--namespace",
        namespace,
        "--dry-run=server",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
    )
    notes = result.stdout[result.stdout.index("NOTES:") :]
    assert "SKIPPED: the ServiceMonitor" in notes and "SKIPPED: the PrometheusRule" in notes
    assert notes.count("does not\nserve the monitoring.coreos.com/v1 API") == 2, notes
    assert "kind: ServiceMonitor" not in result.stdout
    assert "kind: PrometheusRule" not in result.stdout
    quiet = cluster.helm("install", "quiet", str(CHART), "-n", namespace, "--dry-run=server")
    assert "SKIPPED" not in quiet.stdout


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
        # `helm test` also runs a job on a TaskQueue of its own, on this Redis Secret.
        "--set",
        "test.redis.secretName=redis-url",
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

        # The operator pod's /metrics (through the API server's pod proxy): the job the
        # worker pod ran is counted, under our names only, without _created series.
        operator_pod = pods[0]["metadata"]["name"]
        proxy = f"/api/v1/namespaces/{namespace}/pods/{operator_pod}:9090/proxy/metrics"

        last: list[str] = []

        def counted() -> str | None:
            done = kube.run("get", "--raw", proxy, namespaced=False, check=False)
            last[:] = [done.stderr] + [
                line for line in done.stdout.splitlines() if "viahelm" in line
            ]
            line = (
                f'taskqueue_jobs_finished_total{{namespace="{namespace}",queue="viahelm",'
                'taskqueue="viahelm"} 1.0'
            )
            return done.stdout if line in done.stdout.splitlines() else None

        try:
            scraped = wait_for(counted, 30, 0.5, "the finished job counted in /metrics")
        except AssertionError:
            print("\n".join(last))
            raise
        print("\n".join(line for line in scraped.splitlines() if 'taskqueue="viahelm"' in line))
        assert "_created" not in scraped
        assert not [line for line in scraped.splitlines() if line.startswith("rq_")]

        dashboard_reached_by_port_forward_only(cluster, namespace, deployment, pods[0])

        # The chart's tests: the operator is up, and a TaskQueue of the test's own (1
        # worker pod Ready, the TaskQueue Ready, one job finished, deleted). Its pod is
        # deleted once it succeeds: its log is followed while it runs.
        test_pod = f"{release}-taskqueue-operator-test-tq"
        log: list[str] = []
        follower = threading.Thread(target=follow_log, args=(kube, test_pod, log), daemon=True)
        follower.start()
        started = time.monotonic()
        tested = cluster.helm(
            "test", release, "--namespace", namespace, "--timeout", "300s", check=False
        )
        print(f"helm test ({time.monotonic() - started:.1f} s):\n{tested.stdout}{tested.stderr}")
        follower.join(timeout=10)
        print(f"{test_pod} log:\n{''.join(log)}")
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert f"{test_pod}\n" in tested.stdout
        assert "OK: a TaskQueue was reconciled end to end" in "".join(log)
        # It cleaned up: its TaskQueue, the TaskQueue's workers, and its own pod.
        wait_for(
            lambda: not kube.list("taskqueues", "app.kubernetes.io/component=helm-test"),
            30,
            0.5,
            "the helm test's TaskQueue deleted",
        )
    finally:
        server.cleanup()

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


def dashboard_reached_by_port_forward_only(
    cluster: Cluster, namespace: str, deployment: str, pod: dict[str, Any]
) -> None:
    """The README's way in: `kubectl port-forward deploy/<release>-taskqueue-operator 8081`.
    The dashboard has no authentication, so inside the pod it binds to 127.0.0.1: the
    pod's own address does not serve it (while its metrics port, on all addresses, does)."""
    local = free_port()
    forward = subprocess.Popen(
        [
            *(str(cluster.kubectl_bin), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace),
            *("port-forward", f"deploy/{deployment}", f"{local}:8081"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def served() -> list[dict[str, Any]] | None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{local}/api/taskqueues", timeout=5
                ) as reply:
                    views = json.loads(reply.read())
            except OSError:
                return None
            return views if any(v["name"] == "viahelm" and v["conditions"] for v in views) else None

        views = wait_for(served, 60, 0.5, "the dashboard through kubectl port-forward")
        (view,) = [v for v in views if v["name"] == "viahelm"]
        assert view["health"]["reason"], view["health"]
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as reply:
            assert "<title>TaskQueues</title>" in reply.read().decode()
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    if cluster.state_dir is not None:  # the test bed routes to pod IPs from this machine
        pod_ip = pod["status"]["podIP"]
        with socket.create_connection((pod_ip, 9090), timeout=5):
            pass  # the path to the pod works
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((pod_ip, 8081), timeout=5).close()


def follow_log(kube: Kubectl, pod: str, into: list[str]) -> None:
    """The pod's log until it ends: it waits for the pod to start running first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        phase = ((kube.get("pod", pod) or {}).get("status") or {}).get("phase")
        if phase in ("Running", "Succeeded", "Failed"):
            break
        time.sleep(0.2)
    done = kube.run("logs", "-f", pod, check=False)
    into.append(done.stdout or done.stderr)


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
