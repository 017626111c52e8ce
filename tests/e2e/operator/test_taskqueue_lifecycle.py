"""Issue 3 acceptance: a TaskQueue on the real control plane, real Redis, real workers."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import redis
from e2e_helpers import Kubectl, condition, make_secret, taskqueue_manifest, wait_for
from rq import Queue, SimpleWorker
from rq.job import Job
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.e2e

NOOP = "taskqueue_worker.examples.basic.noop"
FAIL = "taskqueue_worker.examples.basic.fail"


def unique_queues(kube: Kubectl) -> list[str]:
    """Queue names no other test's workers listen on (the session shares one Redis)."""
    suffix = kube.namespace[-8:]
    return [f"high-{suffix}", f"default-{suffix}"]


def status_of(kube: Kubectl, name: str) -> dict:
    return (kube.get("taskqueue", name) or {}).get("status") or {}


def test_children_columns_and_dead_letters(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    queues = unique_queues(kube)
    schedule = {
        "name": "nightly",
        "schedule": "0 3 * * *",
        "timeZone": "Europe/Berlin",
        "function": NOOP,
        "queue": queues[1],
        "retry": {"max": 2, "intervals": [5]},
    }
    kube.apply(taskqueue_manifest("shop", queues=queues, replicas=0, schedules=[schedule]))

    deployment = wait_for(lambda: kube.get("deployment", "shop-workers"), 20, message="Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 0
    assert pod["containers"][0]["args"] == ["--worker-class", "fork", *queues]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "TaskQueue"
    cronjob = wait_for(lambda: kube.get("cronjob", "shop-nightly"), 20, message="CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["timeZone"] == "Europe/Berlin"

    queue = Queue(queues[1], connection=redis_client)
    for _ in range(20):
        queue.enqueue(NOOP)
    started = time.monotonic()
    wait_for(lambda: status_of(kube, "shop").get("pending") == 20, 3.0, 0.1, "PENDING 20")
    print(f"PENDING 20 visible {time.monotonic() - started:.2f}s after the enqueue")

    table = kube.run("get", "taskqueues").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "STATUS",
        "QUEUES",
        "PENDING",
        "RUNNING",
        "DEAD",
        "OLDEST",
        "WORKERS",
        "DESIRED",
        "READY",
        "AGE",
    ]
    row = table[1].split()
    # STATUS is the Ready condition's reason: 0 replicas wanted, 0 ready.
    assert row[:6] == ["shop", "WorkersReady", ",".join(queues), "20", "0", "0"]
    # OLDEST: the age of the longest-waiting job, which kubectl computes from a timestamp.
    assert re.fullmatch(r"\d+s", row[6]) and row[7] == "0", row

    failing = Queue(queues[0], connection=redis_client)
    for index in range(2):
        failing.enqueue(FAIL, f"planted failure {index}")
    SimpleWorker([failing], connection=redis_client).work(burst=True)
    wait_for(lambda: status_of(kube, "shop").get("deadLetters") == 2, 5.0, 0.1, "DEAD 2")
    dead = condition(kube.get("taskqueue", "shop"), "DeadLetters")
    assert dead is not None and dead["status"] == "True", dead
    assert kube.run("get", "tq", "shop").stdout.splitlines()[1].split()[5] == "2"  # DEAD


def test_edits_roll_revert_prune_and_delete(
    kube: Kubectl, operator_process: Any, redis_secret: str
) -> None:
    queues = unique_queues(kube)
    schedules = [
        {"name": "a", "schedule": "@hourly", "function": NOOP},
        {"name": "b", "schedule": "@daily", "function": NOOP},
    ]
    kube.apply(taskqueue_manifest("edit", queues=queues, replicas=1, schedules=schedules))
    wait_for(lambda: kube.get("deployment", "edit-workers"), 20, message="Deployment")
    wait_for(lambda: kube.get("cronjob", "edit-a") and kube.get("cronjob", "edit-b"), 20)

    new_queues = [queues[1], "extra-" + queues[0]]
    kube.apply(taskqueue_manifest("edit", queues=new_queues, replicas=1, schedules=schedules[:1]))

    def args() -> list[str]:
        dep = kube.get("deployment", "edit-workers") or {}
        return dep["spec"]["template"]["spec"]["containers"][0]["args"]

    wait_for(lambda: args() == ["--worker-class", "fork", *new_queues], 15, message="new queues")
    wait_for(lambda: kube.get("cronjob", "edit-b") is None, 15, message="CronJob b deleted")
    assert kube.get("cronjob", "edit-a") is not None

    kube.run("set", "image", "deployment/edit-workers", "worker=evil/miner:1")

    def image() -> str:
        dep = kube.get("deployment", "edit-workers") or {}
        return dep["spec"]["template"]["spec"]["containers"][0]["image"]

    wait_for(lambda: image().endswith("taskqueue-worker:0.1.0"), 15, message="image reverted")

    kube.run("delete", "cronjob", "edit-a")
    wait_for(lambda: kube.get("cronjob", "edit-a"), 15, message="CronJob a re-created")

    kube.run("delete", "taskqueue", "edit", "--wait=true")
    wait_for(lambda: kube.get("deployment", "edit-workers") is None, 30, message="GC Deployment")
    wait_for(lambda: kube.get("cronjob", "edit-a") is None, 30, message="GC CronJob")


def test_cronjob_run_by_hand_enqueues_once_and_a_worker_runs_it(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    queues = unique_queues(kube)
    schedule = {
        "name": "tick",
        "schedule": "*/5 * * * *",
        "function": "taskqueue_worker.examples.basic.sleep",
        "args": [0.1],
        "queue": queues[1],
    }
    kube.apply(taskqueue_manifest("cron", queues=queues, replicas=1, schedules=[schedule]))
    wait_for(lambda: kube.get("cronjob", "cron-tick"), 20, message="CronJob")

    kube.run("create", "job", "--from=cronjob/cron-tick", "by-hand-1")

    def succeeded() -> bool:
        job = kube.get("job", "by-hand-1") or {}
        return (job.get("status") or {}).get("succeeded") == 1

    wait_for(succeeded, 60, 0.5, "Job by-hand-1 Succeeded")
    finished = f"rq:finished:{queues[1]}"
    wait_for(lambda: redis_client.zcard(finished) == 1, 60, 0.2, "the worker ran the job")
    assert redis_client.llen(f"rq:queue:{queues[1]}") == 0
    assert redis_client.llen(f"rq:queue:{queues[0]}") == 0
    job_id = redis_client.zrange(finished, 0, -1)[0].decode()
    job = Job.fetch(job_id, connection=redis_client)
    assert job.origin == queues[1]
    assert job.func_name == "taskqueue_worker.examples.basic.sleep"
    assert list(job.args) == [0.1]


def test_redis_outage_is_a_condition_and_recovers(kube: Kubectl, operator_process: Any) -> None:
    server = RedisServer().start()
    try:
        make_secret(kube, "own-redis", server.pod_url)
        spec = {"redis": {"urlFrom": {"secretKeyRef": {"name": "own-redis", "key": "url"}}}}
        kube.apply(taskqueue_manifest("outage", queues=unique_queues(kube), replicas=1, **spec))

        def reachable() -> str | None:
            found = condition(kube.get("taskqueue", "outage"), "RedisReachable")
            return found["status"] if found else None

        wait_for(lambda: reachable() == "True", 20, message="RedisReachable=True")
        server.stop()
        stopped = time.monotonic()
        wait_for(lambda: reachable() == "False", 10, 0.2, "RedisReachable=False")
        print(f"RedisReachable=False after {time.monotonic() - stopped:.1f}s")
        lost = condition(kube.get("taskqueue", "outage"), "RedisReachable") or {}
        assert lost["reason"] == "ConnectionFailed"
        assert "onnect" in lost["message"], lost
        time.sleep(3)
        assert (kube.get("deployment", "outage-workers") or {})["spec"]["replicas"] == 1
        events = kube.run("get", "events", "--field-selector", "involvedObject.name=outage").stdout
        assert "RedisUnreachable" in events

        server.start()
        back = time.monotonic()
        wait_for(lambda: reachable() == "True", 10, 0.2, "recovered")
        print(f"recovered {time.monotonic() - back:.1f}s after Redis returned")
        assert (kube.get("deployment", "outage-workers") or {})["spec"]["replicas"] == 1
    finally:
        server.cleanup()
