"""The test bed is a real cluster: a control plane and a real node (containerd + runc, a
kubelet, kube-proxy, CoreDNS) in a network namespace of its own, running this run's images.

Issue 12's acceptance, as a user would check it: the node is Ready on containerd; a worker
pod runs the image built in this run, as uid 10001 on a root it cannot write, without
capabilities; logs, exec and port-forward work; Services and cluster DNS work; nothing of
the test bed has a route off the machine; SIGTERM reaches containers (warm shutdown); a
local PersistentVolume and an emptyDir are real mounts."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from e2e_helpers import (
    WORKER_IMAGE,
    Follow,
    Kubectl,
    assert_restricted_inside,
    seen_from_inside,
    wait_for,
)
from rq import Worker
from testbed.cluster import Cluster
from testbed.manifests import host_service, local_volume, object_list
from testbed.network import NodeNetwork
from testbed.processes import exited

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def needs_testbed(cluster: Cluster) -> None:
    if cluster.state_dir is None:
        pytest.skip("inspects this machine's side of the node: test bed only")


def python_pod(name: str, code: str, **extra: Any) -> dict[str, Any]:
    """A restricted pod of the worker image running `python -c code`."""
    container = {
        "name": "main",
        "image": WORKER_IMAGE,
        "command": ["python", "-c", code],
        "securityContext": RESTRICTED,
        **extra.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [container], **extra},
    }


def phase(kube: Kubectl, name: str) -> str | None:
    return ((kube.get("pod", name) or {}).get("status") or {}).get("phase")


def run_to_end(kube: Kubectl, pod: dict[str, Any], timeout: float = 60) -> str:
    """Apply a restartPolicy Never pod, wait for Succeeded, return its log."""
    pod["spec"]["restartPolicy"] = "Never"
    kube.apply(pod)
    name = pod["metadata"]["name"]
    wait_for(lambda: phase(kube, name) in ("Succeeded", "Failed"), timeout, 0.3, f"{name} done")
    log = kube.run("logs", name).stdout
    assert phase(kube, name) == "Succeeded", log
    return log


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
                            "securityContext": RESTRICTED,
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
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def pods(kube: Kubectl, selector: str = "app=workers") -> list[dict[str, Any]]:
    return [p for p in kube.list("pods", selector) if not p["metadata"].get("deletionTimestamp")]


def test_node_is_ready_on_containerd(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    ready = [
        n
        for n in nodes
        for c in n["status"]["conditions"]
        if c["type"] == "Ready" and c["status"] == "True"
    ]
    assert ready
    wide = cluster.kubectl("get", "nodes", "-o", "wide").stdout
    print(f"\n{wide}")
    if cluster.state_dir is not None:
        node = ready[0]
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
        internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert internal == [cluster.addresses["node_ip"]]
        assert "containerd://" in wide


def registered(client: redis.Redis, pods: list[str]) -> bool:
    """Every pod's RQ worker is in Redis (past start-up, where a SIGTERM exits at once)."""
    names = [worker.name for worker in Worker.all(connection=client)]
    return all(any(name.startswith(f"{pod}-") for name in names) for pod in pods)


def test_sigterm_reaches_containers_and_scale_down_honours_deletion_cost(
    cluster: Cluster, kube: Kubectl, redis_secret: str, redis_client: redis.Redis
) -> None:
    kube.apply(worker_deployment(3))

    def ready() -> list[dict[str, Any]]:
        return [
            p
            for p in pods(kube)
            if p["status"].get("phase") == "Running"
            and all(c.get("ready") for c in p["status"].get("containerStatuses", []))
        ]

    wait_for(lambda: len(ready()) == 3, 90, 0.5, "3 pods Running and Ready")
    running = pods(kube)
    names = [pod["metadata"]["name"] for pod in running]
    wait_for(lambda: registered(redis_client, names), 30, 0.2, "3 workers registered")
    pids = {name: cluster.container_pid(kube.namespace, name, "worker") for name in names}
    follows = {name: Follow(kube, name) for name in names}
    costs = {name: str(100 * i) for i, name in enumerate(names)}
    for name, cost in costs.items():
        kube.run("annotate", "pod", name, f"controller.kubernetes.io/pod-deletion-cost={cost}")
    keep = max(costs, key=lambda n: int(costs[n]))
    kube.run("scale", "deployment", "workers", "--replicas=1")
    wait_for(
        lambda: [p["metadata"]["name"] for p in kube.list("pods", "app=workers")] == [keep],
        60,
        0.5,
        "only the costliest pod left",
    )
    for name in names:
        if name == keep:
            continue
        log = follows[name].close()
        assert "warm shut" in log.lower(), log[-800:]
        pid = pids[name]
        if pid is not None:
            assert exited(pid), f"{name}'s process still runs"
    follows[keep].process.kill()
    keep_pid = pids[keep]
    if keep_pid is not None:
        assert not exited(keep_pid)


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
    log = kube.run("logs", pod["metadata"]["name"]).stdout
    assert f"hello from {pod['metadata']['name']}" in log


def test_secret_env_exec_and_images_never_pulled(cluster: Cluster, kube: Kubectl) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "planted"},
            "stringData": {"token": "s3cr3t-value"},
        }
    )
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "planted", "key": "token"}}}]
    code = "import os; print('token=' + os.environ['TOKEN'])"
    log = run_to_end(kube, python_pod("reader", code, container={"env": env}))
    assert "token=s3cr3t-value" in log

    # An image that is not on the node is never pulled (no registry, no DNS off the machine).
    alien = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "alien"},
        "spec": {
            "containers": [
                {"name": "x", "image": "docker.io/library/nginx:1", "imagePullPolicy": "Never"}
            ]
        },
    }
    kube.apply(alien)

    def waiting() -> dict[str, Any] | None:
        statuses = ((kube.get("pod", "alien") or {}).get("status") or {}).get(
            "containerStatuses"
        ) or []
        return statuses[0]["state"].get("waiting") if statuses else None

    state = wait_for(lambda: (w := waiting()) and w.get("reason") == "ErrImageNeverPull" and w, 60)
    assert "nginx" in state["message"]


def test_worker_pod_runs_the_built_image_restricted(
    cluster: Cluster, kube: Kubectl, redis_secret: str
) -> None:
    """The acceptance: imageID is this run's build; exec shows uid 10001, a root it cannot
    write, no capabilities; the probes really run (the pod becomes Ready through them)."""
    deployment = worker_deployment(1)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"] = {
        "exec": {"command": ["taskqueue-worker", "--probe"]},
        "periodSeconds": 2,
    }
    kube.apply(deployment)

    def ready_pod() -> dict[str, Any] | None:
        for pod in pods(kube):
            statuses = pod["status"].get("containerStatuses") or []
            if statuses and statuses[0].get("ready"):
                return pod
        return None

    pod = wait_for(ready_pod, 90, 0.5, "a Ready worker pod")
    name = pod["metadata"]["name"]
    status = pod["status"]["containerStatuses"][0]
    print(f"\nimage {status['image']} imageID {status['imageID']}")
    if cluster.state_dir is not None:
        built = cluster.built_images
        assert status["imageID"].split("@")[-1] == built[WORKER_IMAGE], (status, built)
    seen = seen_from_inside(kube, name, "worker")
    print(seen)
    assert_restricted_inside(seen)


def test_services_dns_and_port_forward(cluster: Cluster, kube: Kubectl, redis_server: Any) -> None:
    """A selector-less Service `redis` in front of the tests' Redis: pods use the plain
    Service name as users write it; CoreDNS answers only for the cluster."""
    needs_testbed(cluster)
    host = cluster.addresses["host_ip"]
    kube.apply(object_list(host_service("redis", host, redis_server.port, 6379)))
    code = (
        "import socket, time, redis\n"
        f"client = redis.Redis.from_url('redis://redis.{kube.namespace}.svc:6379/0')\n"
        # kube-proxy programs a new Service within a moment; until then it has no route.
        "for attempt in range(40):\n"
        "    try:\n"
        "        print('ping', client.ping(), 'after', attempt, 'retries'); break\n"
        "    except redis.ConnectionError:\n"
        "        time.sleep(0.5)\n"
        "print('api', socket.gethostbyname('kubernetes.default.svc.cluster.local'))\n"
        "try:\n"
        "    socket.gethostbyname('example.com'); print('outside resolved')\n"
        "except OSError as error:\n"
        "    print('outside refused', error)\n"
        "s = socket.socket(); s.settimeout(3)\n"
        "try:\n"
        "    s.connect(('192.0.2.1', 53)); print('outside connected')\n"
        "except OSError as error:\n"
        "    print('no route out', error)\n"
    )
    log = run_to_end(kube, python_pod("svc", code))
    print(f"\n{log}")
    assert "ping True" in log
    assert "api 10.96.0.1" in log
    assert "outside refused" in log and "outside connected" not in log
    assert "no route out" in log

    # port-forward: the API server -> the kubelet (InternalIP) -> containerd -> the pod.
    server = python_pod(
        "web", "import http.server as h; h.test(h.SimpleHTTPRequestHandler, port=8000)"
    )
    server["spec"]["containers"][0]["workingDir"] = "/opt/venv"
    kube.apply(server)
    wait_for(lambda: phase(kube, "web") == "Running", 60, 0.3, "web Running")
    forward = subprocess.Popen(
        [str(cluster.kubectl_bin), "--kubeconfig", str(cluster.kubeconfig), "-n", kube.namespace,
         "port-forward", "pod/web", ":8000"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()  # Forwarding from 127.0.0.1:PORT -> 8000
        port = int(line.split("127.0.0.1:")[1].split()[0])

        def fetch() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
                    return str(reply.read().decode())
            except OSError:
                return ""

        assert "pyvenv.cfg" in wait_for(fetch, 20, 0.5, "the page through port-forward")
    finally:
        forward.kill()
        forward.wait()


def test_network_rule_holds(cluster: Cluster) -> None:
    """Forwarding 0 on the machine, no NAT rule of ours there, routes only via our veth, and
    the node's namespace has no route off its veth and bridge."""
    needs_testbed(cluster)
    addresses = cluster.addresses
    NodeNetwork.recorded(addresses).check_isolated()
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    # The node answers on its InternalIP (the kubelet), from this machine, over the veth.
    with socket.create_connection((addresses["node_ip"], 10250), timeout=2):
        pass


def test_local_persistent_volume_and_logs(cluster: Cluster, kube: Kubectl, tmp_path: Path) -> None:
    """The demo's data volume: a local PersistentVolume on the node, bound to a claim,
    written by a restricted pod, the file then on this machine's disk."""
    needs_testbed(cluster)
    data = tmp_path / "pv"
    data.mkdir()
    data.chmod(0o777)
    pv_name = f"pv-{kube.namespace}"
    volume = local_volume(pv_name, str(data), "data", kube.namespace)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(object_list(volume)))
    try:
        assert "written" in write_through_claim(kube, "from the pod")
        assert (data / "hello.txt").read_text() == "from the pod"
    finally:
        cluster.kubectl("delete", "namespace", kube.namespace, "--wait=true", check=False)
        cluster.kubectl("delete", "pv", pv_name, "--wait=false", check=False)


def write_through_claim(kube: Kubectl, text: str) -> str:
    """A restricted pod writes `text` to /data/hello.txt on the claim `data`; its log."""
    code = f"open('/data/hello.txt', 'w').write({text!r}); print('written')"
    pod = python_pod(
        "writer",
        code,
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    )
    return run_to_end(kube, pod, timeout=90)


def test_default_storage_class_binds_a_claim_without_a_class(
    cluster: Cluster, kube: Kubectl
) -> None:
    """What examples/*.yaml rely on: a claim naming no storageClassName gets the default
    class (`standard`, as on kind), which binds it to one of the test bed's local volumes
    when its first pod is scheduled; a restricted pod (uid 10001) can write it."""
    needs_testbed(cluster)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    kube.apply(claim)
    try:
        created = kube.get("pvc", "data") or {}
        assert created["spec"].get("storageClassName") == "standard", created["spec"]
        assert "written" in write_through_claim(kube, "x")
        bound = kube.get("pvc", "data") or {}
        assert bound["status"]["phase"] == "Bound", bound.get("status")
        volume = json.loads(
            cluster.kubectl("get", "pv", bound["spec"]["volumeName"], "-o", "json").stdout
        )
        path = Path(volume["spec"]["local"]["path"])
        assert cluster.state_dir is not None and path.is_relative_to(cluster.state_dir)
        assert (path / "hello.txt").read_text() == "x"
    finally:
        cluster.kubectl("delete", "namespace", kube.namespace, "--wait=true", check=False)


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
            ["make", "-C", str(REPO), "testbed-up"], check=True, timeout=300, capture_output=True
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
