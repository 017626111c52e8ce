"""Issue 8 (part): credentials stay secret, bad credentials are a condition, pods are restricted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_helpers import (
    Kubectl,
    assert_restricted_inside,
    condition,
    make_secret,
    seen_from_inside,
    taskqueue_manifest,
    wait_for,
)
from testbed.cluster import Cluster
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.e2e
PASSWORD = "planted-Pa55word-7f3a"


def test_password_never_leaks(cluster: Cluster, kube: Kubectl, operator_process: Any) -> None:
    server = RedisServer(password=PASSWORD).start()
    try:
        assert f":{PASSWORD}@" in server.pod_url
        make_secret(kube, "redis-url", server.pod_url)
        schedule = {
            "name": "tick",
            "schedule": "@hourly",
            "function": "taskqueue_worker.examples.noop",
        }
        kube.apply(taskqueue_manifest("secret", replicas=1, schedules=[schedule]))
        wait_for(
            lambda: (
                (condition(kube.get("taskqueue", "secret"), "RedisReachable") or {}).get("status")
                == "True"
            ),
            30,
            message="connected with the password",
        )
        wait_for(lambda: kube.list("pods", "taskqueue.dev/taskqueue=secret"), 30, message="pods")
        # Now a wrong password: a condition with a reason, still no password in sight.
        wrong = server.pod_url.replace(f":{PASSWORD}@", f":wrong-{PASSWORD}@")
        make_secret(kube, "redis-url", wrong)
        wait_for(
            lambda: (
                (condition(kube.get("taskqueue", "secret"), "RedisReachable") or {}).get("status")
                == "False"
            ),
            90,
            message="wrong password reported",
        )
        reason = condition(kube.get("taskqueue", "secret"), "RedisReachable") or {}
        assert reason["reason"] == "AuthenticationFailed" and reason["message"]
        exposed = {
            "status": json.dumps((kube.get("taskqueue", "secret") or {}).get("status")),
            "events": kube.run("get", "events", "-o", "json").stdout,
            "children": kube.run("get", "deployments,cronjobs,pods", "-o", "json").stdout,
            "operator log": operator_process.read_text(),
        }
        for where, text in exposed.items():
            assert PASSWORD not in text, f"the password leaked into {where}"
        assert "REDIS_URL" in exposed["children"]  # from the Secret, by reference only
    finally:
        server.cleanup()


def test_worker_and_schedule_pods_pass_the_restricted_standard(
    cluster: Cluster, kube: Kubectl, operator_process: Any, redis_secret: str
) -> None:
    kube.run(
        "label",
        "namespace",
        kube.namespace,
        "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        namespaced=False,
    )
    schedule = {"name": "tick", "schedule": "@hourly", "function": "taskqueue_worker.examples.noop"}
    kube.apply(taskqueue_manifest("strict", replicas=2, schedules=[schedule]))
    wait_for(
        lambda: (
            len(kube.list("pods", "taskqueue.dev/taskqueue=strict,taskqueue.dev/component=worker"))
            == 2
        ),
        60,
        message="worker pods admitted",
    )

    # From inside a worker container of the operator's own Deployment: what the restricted
    # security context promises is what the runtime does.
    def running_worker() -> str | None:
        for pod in kube.list(
            "pods", "taskqueue.dev/taskqueue=strict,taskqueue.dev/component=worker"
        ):
            if any(s.get("ready") for s in pod["status"].get("containerStatuses") or []):
                return str(pod["metadata"]["name"])
        return None

    worker = wait_for(running_worker, 90, 0.5, "a Ready worker pod")
    assert_restricted_inside(seen_from_inside(kube, worker, "worker"))
    kube.run("create", "job", "--from=cronjob/strict-tick", "strict-now")
    wait_for(lambda: kube.list("pods", "job-name=strict-now"), 30, message="schedule pod admitted")
    wait_for(
        lambda: ((kube.get("job", "strict-now") or {}).get("status") or {}).get("succeeded") == 1,
        90,
        0.5,
        "the schedule pod enqueued its job and exited 0",
    )
    # The same namespace refuses a pod that is not restricted: the check is real.
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "loose"},
        "spec": {"containers": [{"name": "c", "image": "taskqueue-worker"}]},
    }
    refused = kube.apply(privileged, check=False)
    assert refused.returncode != 0 and "restricted" in refused.stderr
