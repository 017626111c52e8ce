"""Issue 7 acceptance for the plugin: `kubectl taskqueue` against a real control plane.

The Redis URL (with a password) is only in a Secret; the plugin finds it through the
TaskQueue. Jobs fail in a real worker pod (a container on the test bed's node).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from e2e_helpers import Kubectl, make_secret, taskqueue_manifest, wait_for
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from taskqueue_plugin.errors import EXIT_NOT_FOUND
from taskqueue_plugin.main import main
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.e2e
PASSWORD = "plugin-e2e-Secret-91"
FAIL = "taskqueue_worker.examples.fail"


@pytest.fixture
def secret_redis(kube: Kubectl) -> Iterator[RedisServer]:
    """A Redis with a password, its URL in the Secret `redis-url` and nowhere else."""
    server = RedisServer(password=PASSWORD).start()
    try:
        make_secret(kube, "redis-url", server.pod_url)
        yield server
    finally:
        server.cleanup()


class Plugin:
    """The plugin as `main()`, with this cluster's kubeconfig and the test's namespace."""

    def __init__(self, capfd: pytest.CaptureFixture[str], kubeconfig: Path, namespace: str):
        self.capfd = capfd
        self.base = ["-n", namespace, "--kubeconfig", str(kubeconfig)]
        self.outputs: list[str] = []

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capfd.readouterr()
        code = main([*args, *self.base])
        captured = self.capfd.readouterr()
        self.outputs.append(captured.out + captured.err)
        return code, captured.out, captured.err

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "-o", "json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def plugin(capfd: pytest.CaptureFixture[str], cluster: Any, kube: Kubectl) -> Plugin:
    return Plugin(capfd, cluster.kubeconfig, kube.namespace)


def test_dead_letters_through_the_cluster(
    kube: Kubectl,
    crd_installed: None,
    operator_process: Any,
    secret_redis: RedisServer,
    plugin: Plugin,
    tmp_path: Path,
) -> None:
    queue_name = f"plugin-{kube.namespace[-8:]}"
    kube.apply(taskqueue_manifest("plugin", queues=[queue_name], replicas=1))
    client = secret_redis.client()
    queue = Queue(queue_name, connection=client)
    failed = FailedJobRegistry(queue_name, connection=client)

    # A real worker pod fails five jobs.
    jobs = [queue.enqueue(FAIL, f"planted e2e {i}") for i in range(5)]
    wait_for(lambda: len(failed.get_job_ids(cleanup=False)) == 5, 60, message="5 failed")

    listed = plugin.json("dlq", "list", "plugin")
    assert listed["total"] == 5
    assert sorted(item["exception"] for item in listed["items"]) == [
        f"RuntimeError: planted e2e {i}" for i in range(5)
    ]
    pods = {p["metadata"]["name"] for p in kube.list("pods", "taskqueue.dev/taskqueue=plugin")}
    assert {item["worker"] for item in listed["items"]} and pods

    status = plugin.json("status", "plugin")
    assert status["taskqueue"]["namespace"] == kube.namespace
    assert status["queues"][0]["failed"] == 5
    assert {w["pod"] for w in status["workers"]} <= pods and status["workers"]
    wait_for(
        lambda: (plugin.json("status", "plugin")["status"] or {}).get("readyReplicas") == 1,
        30,
        message="readyReplicas 1 read from the API",
    )
    code, text, _ = plugin("status", "plugin")
    assert code == 0 and "Replicas:     desired 1, current 1, ready 1" in text

    # Requeue: the same pod runs them again (and they fail again: a second failure result).
    code, out, err = plugin("dlq", "requeue", "plugin", "--all")
    assert code == 0, err
    assert out.startswith(f"requeued 5 failed job(s) of TaskQueue {kube.namespace}/plugin")
    wait_for(
        lambda: all(client.xlen(f"rq:results:{job.id}") == 2 for job in jobs),
        60,
        message="every job ran a second time",
    )
    wait_for(lambda: len(failed.get_job_ids(cleanup=False)) == 5, 30, message="failed again")

    export = tmp_path / "jobs.parquet"
    code, out, err = plugin("jobs", "export", "plugin", "--to", str(export))
    assert code == 0, err
    frame = pd.read_parquet(export)
    assert sorted(frame["job_id"]) == sorted(job.id for job in jobs)
    assert set(frame["status"]) == {"failed"} and str(frame["status"].dtype) == "category"
    assert str(frame["ended_at"].dtype) == "datetime64[ns, UTC]"
    assert set(frame["exception"]) == {f"RuntimeError: planted e2e {i}" for i in range(5)}

    code, out, err = plugin("dlq", "purge", "plugin", "--all", "--yes")
    assert code == 0 and out.startswith("purged 5 failed job(s)"), err
    assert failed.get_job_ids(cleanup=False) == []
    assert not any(Job.exists(job.id, connection=client) for job in jobs)

    for output in plugin.outputs:
        assert PASSWORD not in output


def test_clear_errors_for_missing_objects(
    kube: Kubectl, crd_installed: None, plugin: Plugin, secret_redis: RedisServer
) -> None:
    code, _, err = plugin("dlq", "list", "nope")
    assert code == EXIT_NOT_FOUND
    assert err.startswith(f"error: no TaskQueue 'nope' in namespace '{kube.namespace}'")

    orphan = taskqueue_manifest("orphan", replicas=0)
    orphan["spec"]["redis"] = {"urlFrom": {"secretKeyRef": {"name": "absent", "key": "url"}}}
    kube.apply(orphan)
    code, _, err = plugin("status", "orphan")
    assert code == EXIT_NOT_FOUND and 'Secret "absent"' in err and "not found" in err

    wrong_key = taskqueue_manifest("wrongkey", replicas=0)
    wrong_key["spec"]["redis"] = {"urlFrom": {"secretKeyRef": {"name": "redis-url", "key": "x"}}}
    kube.apply(wrong_key)
    code, _, err = plugin("dlq", "list", "wrongkey")
    assert code == EXIT_NOT_FOUND and 'has no key "x"' in err
    assert len(err.strip().splitlines()) == 1

    kube.apply(taskqueue_manifest("fine", replicas=0))
    code, _, err = plugin("dlq", "show", "fine", "no-such-job")
    assert code == EXIT_NOT_FOUND and 'no job "no-such-job"' in err


def test_other_key_prefix_and_kubectl_plugin_lookup(
    cluster: Any,
    kube: Kubectl,
    crd_installed: None,
    secret_redis: RedisServer,
    plugin: Plugin,
) -> None:
    manifest = taskqueue_manifest("prefixed", queues=["pq"], replicas=0)
    manifest["spec"]["redis"]["keyPrefix"] = "tqe2e"
    kube.apply(manifest)
    failing = (
        "import sys, redis\n"
        "from rq import Queue, SimpleWorker\n"
        "c = redis.Redis.from_url(sys.argv[1]); q = Queue('pq', connection=c)\n"
        "for i in range(2): q.enqueue('taskqueue_worker.examples.fail', f'prefixed {i}')\n"
        "SimpleWorker([q], connection=c).work(burst=True)\n"
    )
    subprocess.run(
        [sys.executable, "-c", failing, secret_redis.url],
        env={**os.environ, "RQ_KEY_PREFIX": "tqe2e"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    listed = plugin.json("dlq", "list", "prefixed")
    assert listed["total"] == 2

    # kubectl finds `kubectl-taskqueue` on PATH and hands it the arguments (kubectl refuses
    # its own flags before a plugin's name, so the kubeconfig comes from KUBECONFIG).
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    done = subprocess.run(
        [str(cluster.kubectl_bin), "taskqueue", "dlq", "list", "prefixed", "-n", kube.namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "RuntimeError: prefixed 1" in done.stdout and PASSWORD not in done.stdout
