"""Issue 2 acceptance: the test bed is a real Kubernetes control plane with a process-kubelet."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from e2e_helpers import WORKER_IMAGE, Kubectl, wait_for
from rq import Worker
from testbed.cluster import Cluster
from testbed.processes import exited

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]


def needs_testbed(cluster: Cluster) -> None:
    if cluster.state_dir is None:
        pytest.skip("inspects the process-kubelet's processes: test bed only")


def worker_deployment(replicas: int, grace: int = 20) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "workers"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "workers"}},
            "template": {
                "metadata": {"labels": {"app": "workers"}},
                "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "containers": [
                        {
                            "name": "worker",
                            "image": WORKER_IMAGE,
                            "args": ["testbed-queue"],
                            "env": [
                                {
                                    "name": "REDIS_URL",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "redis-url", "key": "url"}
                                    },
                                },
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                            ],
                        }
                    ],
                },
            },
        },
    }


def pods(kube: Kubectl, selector: str = "app=workers") -> list[dict[str, Any]]:
    return [p for p in kube.list("pods", selector) if not p["metadata"].get("deletionTimestamp")]


def alive(pid: int) -> bool:
    """Running: a zombie is not alive (its parent, the kubelet, reaps it)."""
    return not exited(pid)


def test_node_is_ready(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    ready = [
        n
        for n in nodes
        for c in n["status"]["conditions"]
        if c["type"] == "Ready" and c["status"] == "True"
    ]
    assert ready


def registered(client: redis.Redis, pods: list[str]) -> bool:
    """Every pod's RQ worker is in Redis (past start-up, where a SIGTERM exits at once)."""
    names = [worker.name for worker in Worker.all(connection=client)]
    return all(any(name.startswith(f"{pod}-") for name in names) for pod in pods)


def test_deployment_runs_processes_and_scale_down_honours_deletion_cost(
    cluster: Cluster, kube: Kubectl, redis_secret: str, redis_client: redis.Redis
) -> None:
    needs_testbed(cluster)
    kube.apply(worker_deployment(3))
    wait_for(
        lambda: (
            len(
                [
                    p
                    for p in pods(kube)
                    if p["status"].get("phase") == "Running"
                    and all(c.get("ready") for c in p["status"].get("containerStatuses", []))
                ]
            )
            == 3
        ),
        60,
        0.5,
        "3 pods Running and Ready",
    )
    running = pods(kube)
    names = [pod["metadata"]["name"] for pod in running]
    # Ready on the test bed means "process alive": wait for the workers themselves, so the
    # scale-down below meets running workers (a warm shutdown), not ones still starting.
    wait_for(lambda: registered(redis_client, names), 30, 0.2, "3 workers registered")
    pids = {}
    for pod in running:
        name = pod["metadata"]["name"]
        pid_file = cluster.pod_dir(kube.namespace, name) / "worker.pid"  # type: ignore[operator]
        pids[name] = int(wait_for(lambda f=pid_file: f.exists() and f.read_text(), 10))
        assert alive(pids[name])
    costs = {pod["metadata"]["name"]: str(100 * i) for i, pod in enumerate(running)}
    for name, cost in costs.items():
        kube.run("annotate", "pod", name, f"controller.kubernetes.io/pod-deletion-cost={cost}")
    keep = max(costs, key=lambda n: int(costs[n]))
    kube.run("scale", "deployment", "workers", "--replicas=1")
    wait_for(
        lambda: [p["metadata"]["name"] for p in kube.list("pods", "app=workers")] == [keep],
        40,
        0.5,
        "only the costliest pod left",
    )
    for name, pid in pids.items():
        if name != keep:
            assert not alive(pid), f"{name}'s process still runs"
            pod_dir = cluster.pod_dir(kube.namespace, name)
            assert pod_dir is not None
            log = (pod_dir / "worker.log").read_text()
            assert "warm shut" in log.lower() or "shutdown" in log.lower(), log[-500:]
            # It left on SIGTERM within the grace period (0: warm shutdown), not SIGKILL (-9).
            assert (pod_dir / "worker.exit").read_text().strip() == "0"
    assert alive(pids[keep])


def test_cronjob_to_job_to_completed_pod(
    cluster: Cluster, kube: Kubectl, redis_secret: str
) -> None:
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "hello"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "say",
                                    "image": WORKER_IMAGE,
                                    "command": [
                                        "python",
                                        "-c",
                                        "import os; print('hello from', os.environ['HOSTNAME'])",
                                    ],
                                }
                            ],
                        }
                    }
                }
            },
        },
    }
    kube.apply(cronjob)
    kube.run("create", "job", "--from=cronjob/hello", "hello-now")

    def succeeded() -> bool:
        return ((kube.get("job", "hello-now") or {}).get("status") or {}).get("succeeded") == 1

    wait_for(succeeded, 60, 0.5, "Job Succeeded")
    pod = kube.list("pods", "job-name=hello-now")[0]
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    if cluster.pod_dir(kube.namespace, pod["metadata"]["name"]):
        log = (cluster.pod_dir(kube.namespace, pod["metadata"]["name"]) / "say.log").read_text()  # type: ignore[operator]
        assert f"hello from {pod['metadata']['name']}" in log


def test_env_from_secret_and_unknown_image(cluster: Cluster, kube: Kubectl) -> None:
    needs_testbed(cluster)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "planted"},
            "stringData": {"token": "s3cr3t-value"},
        }
    )
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "read",
                    "image": WORKER_IMAGE,
                    "command": ["python", "-c", "import os; print('token=' + os.environ['TOKEN'])"],
                    "env": [
                        {
                            "name": "TOKEN",
                            "valueFrom": {"secretKeyRef": {"name": "planted", "key": "token"}},
                        }
                    ],
                }
            ],
        },
    }
    kube.apply(probe)
    wait_for(
        lambda: ((kube.get("pod", "reader") or {}).get("status") or {}).get("phase") == "Succeeded",
        30,
        0.3,
        "reader done",
    )
    log = (cluster.pod_dir(kube.namespace, "reader") / "read.log").read_text()  # type: ignore[operator]
    assert "token=s3cr3t-value" in log

    unknown = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "alien"},
        "spec": {"containers": [{"name": "x", "image": "docker.io/library/nginx:1"}]},
    }
    kube.apply(unknown)

    def waiting() -> dict[str, Any] | None:
        statuses = ((kube.get("pod", "alien") or {}).get("status") or {}).get(
            "containerStatuses"
        ) or []
        return statuses[0]["state"].get("waiting") if statuses else None

    state = wait_for(waiting, 20, 0.3, "a waiting reason")
    assert state["reason"] == "ImageNotInTestbed" and "nginx" in state["message"]
    time.sleep(1)
    assert (kube.get("pod", "alien") or {})["status"]["phase"] == "Pending"


def test_crd_cel_rule_is_enforced_by_the_api_server(cluster: Cluster, kube: Kubectl) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.testbed.example"},
        "spec": {
            "group": "testbed.example",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "low": {"type": "integer"},
                                        "high": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.low <= self.high",
                                            "message": "low must not exceed high",
                                        }
                                    ],
                                }
                            },
                        },
                    },
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.testbed.example")
    good = {
        "apiVersion": "testbed.example/v1",
        "kind": "Widget",
        "metadata": {"name": "ok"},
        "spec": {"low": 1, "high": 2},
    }
    kube.apply(good)
    bad = {**good, "metadata": {"name": "bad"}, "spec": {"low": 3, "high": 2}}
    result = kube.apply(bad, check=False)
    assert result.returncode != 0 and "low must not exceed high" in result.stderr


def test_make_testbed_up_and_down(cluster: Cluster) -> None:
    """The developer commands, on their own cluster next to the session's."""
    needs_testbed(cluster)
    state = REPO / ".testbed"
    if (state / "serve.pid").exists():
        pytest.skip("a developer test bed is already running in .testbed")
    try:
        subprocess.run(
            ["make", "-C", str(REPO), "testbed-up"], check=True, timeout=180, capture_output=True
        )
        nodes = subprocess.run(
            [
                str(state / "bin" / "kubectl"),
                "--kubeconfig",
                str(state / "kubeconfig"),
                "get",
                "nodes",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert nodes.returncode == 0 and "Ready" in nodes.stdout, nodes.stderr
    finally:
        subprocess.run(
            ["make", "-C", str(REPO), "testbed-down"], check=True, timeout=120, capture_output=True
        )
    assert not (state / "serve.pid").exists()
