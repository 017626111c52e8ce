"""The process-kubelet behaves as a kubelet: env, argv, restarts, grace periods, RBAC of the
pod's ServiceAccount. Real control plane, real processes; test bed only (reads pod folders)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from e2e_helpers import WORKER_IMAGE, Kubectl, wait_for
from testbed.cluster import Cluster

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def testbed_only(cluster: Cluster) -> None:
    if cluster.state_dir is None:
        pytest.skip("reads the process-kubelet's pod folders: test bed only")


def python_pod(name: str, code: str, **spec: Any) -> dict[str, Any]:
    """A pod of our worker image whose `command` replaces the entrypoint with Python."""
    container = {
        "name": "main",
        "image": WORKER_IMAGE,
        "command": ["python", "-c", code],
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def status(kube: Kubectl, pod: str) -> dict[str, Any]:
    return ((kube.get("pod", pod) or {}).get("status")) or {}


def container_status(kube: Kubectl, pod: str) -> dict[str, Any]:
    statuses = status(kube, pod).get("containerStatuses") or [{}]
    return statuses[0]


def wait_waiting(kube: Kubectl, pod: str) -> dict[str, Any]:
    """The first container's `waiting` state, once it has one."""
    return wait_for(
        lambda: container_status(kube, pod).get("state", {}).get("waiting"),
        20,
        0.2,
        "a waiting state",
    )


def phase_is(kube: Kubectl, pod: str, phase: str) -> bool:
    return status(kube, pod).get("phase") == phase


def pod_file(cluster: Cluster, kube: Kubectl, pod: str, name: str) -> Path:
    directory = cluster.pod_dir(kube.namespace, pod)
    assert directory is not None
    return directory / name


def read_when_there(path: Path, timeout: float = 20) -> str:
    return wait_for(lambda: path.exists() and path.read_text(), timeout, 0.1, str(path))


def test_container_sees_what_kubernetes_would_give_it(cluster: Cluster, kube: Kubectl) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db"},
            "stringData": {"user": "ada", "password": "pw"},
        }
    )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg"},
            "data": {"LEVEL": "debug"},
        }
    )
    code = (
        "import json, os, sys, tempfile; "
        "print(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ), "
        "'tmp': tempfile.gettempdir()}))"
    )
    pod = python_pod(
        "envy",
        code,
        metadata={"labels": {"app": "envy"}, "annotations": {"team": "quant"}},
        container={
            "args": ["$(USER)", "$$(USER)", "$(NOPE)"],
            "envFrom": [
                {"configMapRef": {"name": "cfg"}, "prefix": "CM_"},
                {"secretRef": {"name": "db"}},
                {"secretRef": {"name": "absent", "optional": True}},
            ],
            "env": [
                {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}},
                {"name": "DSN", "value": "pg://$(USER):$(password)@db?log=$(CM_LEVEL)"},
                {
                    "name": "LEVEL",
                    "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}},
                },
                {
                    "name": "MAYBE",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "nope", "key": "x", "optional": True}
                    },
                },
                *(
                    {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
                    for name, path in [
                        ("POD_NAME", "metadata.name"),
                        ("POD_NAMESPACE", "metadata.namespace"),
                        ("POD_UID", "metadata.uid"),
                        ("APP", "metadata.labels['app']"),
                        ("TEAM", "metadata.annotations['team']"),
                        ("POD_IP", "status.podIP"),
                        ("NODE", "spec.nodeName"),
                        ("SA", "spec.serviceAccountName"),
                    ]
                ),
            ],
        },
    )
    kube.apply(pod)
    wait_for(lambda: phase_is(kube, "envy", "Succeeded"), 30, 0.2, "envy Succeeded")
    seen = json.loads(read_when_there(pod_file(cluster, kube, "envy", "main.log")))
    env = seen["env"]
    body = kube.get("pod", "envy")
    assert body is not None
    assert seen["argv"] == ["ada", "$(USER)", "$(NOPE)"]
    assert env["DSN"] == "pg://ada:pw@db?log=debug"
    assert env["CM_LEVEL"] == env["LEVEL"] == "debug" and env["password"] == "pw"
    assert "MAYBE" not in env
    assert env["HOSTNAME"] == env["POD_NAME"] == "envy"
    assert env["POD_NAMESPACE"] == kube.namespace
    assert env["POD_UID"] == body["metadata"]["uid"]
    assert (env["APP"], env["TEAM"]) == ("envy", "quant")
    assert env["POD_IP"] == body["status"]["podIP"] == "127.0.0.1"
    assert env["NODE"] == body["spec"]["nodeName"]
    assert env["SA"] == "default"
    # The emptyDir stand-in is the pod's own, and the host's environment stays outside.
    assert seen["tmp"] == str(pod_file(cluster, kube, "envy", "tmp"))
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "PYTEST_CURRENT_TEST" not in env and "VIRTUAL_ENV" not in env
    terminated = container_status(kube, "envy")["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"


def test_missing_secret_waits_then_starts_once_it_exists(cluster: Cluster, kube: Kubectl) -> None:
    pod = python_pod(
        "patient",
        "import os; print('got', os.environ['TOKEN'])",
        container={
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "t"}}}]
        },
    )
    kube.apply(pod)
    waiting = wait_waiting(kube, "patient")
    assert waiting["reason"] == "CreateContainerConfigError", waiting
    assert "late" in waiting["message"]
    assert status(kube, "patient")["phase"] == "Pending"
    kube.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "late"}, "data": {"t": "eA=="}}
    )
    wait_for(lambda: phase_is(kube, "patient", "Succeeded"), 30, 0.2, "patient Succeeded")
    assert "got x" in pod_file(cluster, kube, "patient", "main.log").read_text()


def test_restart_policies(kube: Kubectl) -> None:
    # OnFailure: the first run fails (no marker yet in the pod's TMPDIR), the second succeeds.
    flaky = (
        "import os, sys, tempfile; m = os.path.join(tempfile.gettempdir(), 'ran'); "
        "first = not os.path.exists(m); open(m, 'w').close(); sys.exit(1 if first else 0)"
    )
    kube.apply(python_pod("flaky", flaky, restartPolicy="OnFailure"))
    kube.apply(python_pod("broken", "import sys; sys.exit(3)", restartPolicy="Never"))
    kube.apply(python_pod("looping", "print('bye')", restartPolicy="Always"))

    wait_for(lambda: phase_is(kube, "flaky", "Succeeded"), 40, 0.3, "flaky Succeeded")
    flaky_status = container_status(kube, "flaky")
    assert flaky_status["restartCount"] == 1
    assert flaky_status["state"]["terminated"]["exitCode"] == 0

    wait_for(lambda: phase_is(kube, "broken", "Failed"), 30, 0.3, "broken Failed")
    broken = container_status(kube, "broken")
    assert broken["restartCount"] == 0
    assert broken["state"]["terminated"]["exitCode"] == 3
    assert broken["state"]["terminated"]["reason"] == "Error"

    # Always restarts even a successful exit, with a growing back-off in between.
    wait_for(
        lambda: container_status(kube, "looping").get("restartCount", 0) >= 2,
        40,
        0.3,
        "two restarts",
    )
    assert status(kube, "looping")["phase"] == "Running"


def test_sigkilled_process_is_restarted_and_reported(cluster: Cluster, kube: Kubectl) -> None:
    kube.apply(python_pod("victim", "import time; time.sleep(3600)", restartPolicy="Always"))
    wait_for(lambda: container_status(kube, "victim").get("ready"), 30, 0.2, "victim ready")
    assert status(kube, "victim")["conditions"]
    ready = {c["type"]: c["status"] for c in status(kube, "victim")["conditions"]}
    assert ready["Ready"] == "True"
    pid_file = pod_file(cluster, kube, "victim", "main.pid")
    first = int(read_when_there(pid_file))
    os.kill(first, signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        current = container_status(kube, "victim")
        return current if current.get("restartCount") == 1 and current.get("ready") else None

    current = wait_for(restarted, 30, 0.2, "a restart")
    assert current["lastState"]["terminated"]["exitCode"] == 137  # 128 + SIGKILL
    assert int(pid_file.read_text()) != first
    assert pod_file(cluster, kube, "victim", "main.exit").read_text().strip() == "-9"


def test_deletion_sigterm_grace_then_sigkill(cluster: Cluster, kube: Kubectl) -> None:
    polite = (
        "import signal, sys, time\n"
        "def bye(*_):\n    print('got SIGTERM', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\nprint('up', flush=True)\ntime.sleep(3600)\n"
    )
    stubborn = (
        "import signal, time\nsignal.signal(signal.SIGTERM, lambda *_: print('ignored', "
        "flush=True))\nprint('up', flush=True)\ntime.sleep(3600)\n"
    )
    kube.apply(python_pod("polite", polite, terminationGracePeriodSeconds=30))
    kube.apply(python_pod("stubborn", stubborn, terminationGracePeriodSeconds=30))
    for name in ("polite", "stubborn"):
        wait_for(lambda n=name: container_status(kube, n).get("ready"), 30, 0.2, f"{name} ready")
        wait_for(lambda n=name: "up" in pod_file(cluster, kube, n, "main.log").read_text(), 10)

    started = time.monotonic()
    kube.run("delete", "pod", "polite", "--wait=false")
    wait_for(lambda: kube.get("pod", "polite") is None, 20, 0.2, "polite gone")
    assert time.monotonic() - started < 20  # well inside its 30 s: it left on SIGTERM
    assert "got SIGTERM" in pod_file(cluster, kube, "polite", "main.log").read_text()
    assert pod_file(cluster, kube, "polite", "main.exit").read_text().strip() == "0"

    # `--grace-period` on delete (deletionGracePeriodSeconds) overrides the pod's 30 s.
    started = time.monotonic()
    kube.run("delete", "pod", "stubborn", "--grace-period=3", "--wait=false")
    wait_for(lambda: kube.get("pod", "stubborn") is None, 25, 0.2, "stubborn gone")
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 25, elapsed
    assert "ignored" in pod_file(cluster, kube, "stubborn", "main.log").read_text()
    assert pod_file(cluster, kube, "stubborn", "main.exit").read_text().strip() == "-9"


def test_pod_service_account_rbac_is_real(cluster: Cluster, kube: Kubectl) -> None:
    ns = kube.namespace
    kube.run("create", "serviceaccount", "lister")
    kube.run("create", "role", "pod-reader", "--verb=get,list", "--resource=pods")
    kube.run(
        "create",
        "rolebinding",
        "lister-reads",
        "--role=pod-reader",
        "--serviceaccount",
        f"{ns}:lister",
    )
    code = (
        "import kubernetes, os\n"
        "kubernetes.config.load_kube_config()\n"
        "core = kubernetes.client.CoreV1Api()\n"
        f"print('pods', len(core.list_namespaced_pod('{ns}').items))\n"
        "try:\n"
        f"    core.list_namespaced_secret('{ns}')\n"
        "    print('secrets allowed')\n"
        "except kubernetes.client.ApiException as error:\n"
        "    print('secrets', error.status)\n"
        "print('whoami', kubernetes.client.AuthenticationV1Api().create_self_subject_review("
        "{'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'})"
        ".status.user_info.username)\n"
    )
    kube.apply(python_pod("rbac", code, serviceAccountName="lister"))
    kube.apply(
        python_pod(
            "no-token",
            "import os; print('KUBECONFIG' in os.environ)",
            automountServiceAccountToken=False,
        )
    )
    wait_for(lambda: phase_is(kube, "rbac", "Succeeded"), 40, 0.3, "rbac Succeeded")
    log = pod_file(cluster, kube, "rbac", "main.log").read_text()
    assert re.search(r"^pods [12]$", log, re.M), log
    assert "secrets 403" in log, log
    assert f"whoami system:serviceaccount:{ns}:lister" in log, log
    wait_for(lambda: phase_is(kube, "no-token", "Succeeded"), 30, 0.3, "no-token Succeeded")
    assert pod_file(cluster, kube, "no-token", "main.log").read_text().strip() == "False"
    # The account's own automountServiceAccountToken: false is honoured too (by admission).
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "quiet"},
            "automountServiceAccountToken": False,
        }
    )
    kube.apply(
        python_pod(
            "quiet", "import os; print('KUBECONFIG' in os.environ)", serviceAccountName="quiet"
        )
    )
    wait_for(lambda: phase_is(kube, "quiet", "Succeeded"), 30, 0.3, "quiet Succeeded")
    assert pod_file(cluster, kube, "quiet", "main.log").read_text().strip() == "False"


def test_new_pod_starts_fast(cluster: Cluster, kube: Kubectl) -> None:
    """From create to Running and Ready, seen through a watch: the kubelet watches, binds
    and starts without polling. A generous bound (a shared 2-core machine); the figure is
    printed for the record."""
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    watcher = kubernetes.watch.Watch()
    body = python_pod("quick", "import time; time.sleep(600)")
    started = time.monotonic()
    core.create_namespaced_pod(kube.namespace, body)
    latency = None
    for event in watcher.stream(
        core.list_namespaced_pod,
        kube.namespace,
        field_selector="metadata.name=quick",
        timeout_seconds=30,
    ):
        pod = event["object"]
        conditions = {c.type: c.status for c in (pod.status.conditions or [])}
        if pod.status.phase == "Running" and conditions.get("Ready") == "True":
            latency = time.monotonic() - started
            watcher.stop()
    assert latency is not None, "never Running and Ready"
    print(f"pod start latency (create -> Running+Ready): {latency:.3f}s")
    assert latency < 10


def test_pod_with_init_containers_is_held_pending_with_a_reason(
    cluster: Cluster, kube: Kubectl
) -> None:
    pod = python_pod("with-init", "print('main')")
    pod["spec"]["initContainers"] = [
        {"name": "setup", "image": WORKER_IMAGE, "command": ["python", "-c", "print('init')"]}
    ]
    kube.apply(pod)
    waiting = wait_waiting(kube, "with-init")
    assert waiting["reason"] == "InitContainersNotInTestbed" and "setup" in waiting["message"]
    assert status(kube, "with-init")["phase"] == "Pending"
    # Held means not run at all: no container process was ever started for it.
    time.sleep(1)
    pod_dir = cluster.pod_dir(kube.namespace, "with-init")
    if pod_dir is not None:
        assert not list(pod_dir.glob("*.pid")), "a container of a held pod was started"
