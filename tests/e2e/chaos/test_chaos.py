"""Issue 8 (bounded chaos): jobs through an autoscaled TaskQueue while workers are killed,
pods deleted, the operator restarted twice and Redis (AOF) restarted once. No job is lost."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest
from e2e_helpers import Kubectl, make_secret, taskqueue_manifest, wait_for
from rq import Queue
from rq.job import Job
from rq.results import Result
from testbed.cluster import Cluster
from testbed.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
JOBS = int(os.environ.get("CHAOS_JOBS", "1000"))
TERMINAL = {"finished", "failed", "canceled", "stopped"}


class Chaos:
    """Runs the fault schedule in a thread and counts what it did."""

    def __init__(
        self, cluster: Cluster, kube: Kubectl, operator: Any, redis: RedisServer, name: str
    ) -> None:
        self.cluster, self.kube, self.operator, self.redis = cluster, kube, operator, redis
        self.name = name
        self.done: Counter[str] = Counter()
        self.random = random.Random(8)
        self.errors: list[str] = []

    def busy_pods(self) -> list[str]:
        client = self.redis.client()
        pods = []
        for key in client.smembers(f"rq:workers:{self.name}"):
            fields = client.hmget(key, "state", "hostname")
            if fields[0] == b"busy" and fields[1]:
                pods.append(fields[1].decode())
        return pods

    def kill_busy_worker(self) -> None:
        pods = self.busy_pods()
        if not pods:
            return
        pod = self.random.choice(pods)
        pid_file = self.cluster.pod_dir(self.kube.namespace, pod) / "worker.pid"  # type: ignore[operator]
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            self.done["SIGKILL busy worker"] += 1
        except (OSError, ValueError):
            pass

    def delete_pod(self) -> None:
        pods = self.kube.list("pods", "taskqueue.dev/taskqueue=chaos")
        if pods:
            pod = self.random.choice(pods)["metadata"]["name"]
            self.kube.run("delete", "pod", pod, "--wait=false", check=False)
            self.done["delete worker pod"] += 1

    def restart_operator(self) -> None:
        self.operator.restart()
        self.done["restart operator"] += 1

    def restart_redis(self) -> None:
        self.redis.stop()
        time.sleep(2)
        self.redis.start()
        self.done["restart Redis"] += 1

    def run(self) -> None:
        plan = [
            "kill",
            "delete",
            "kill",
            "operator",
            "kill",
            "delete",
            "redis",
            "kill",
            "delete",
            "operator",
            "kill",
            "kill",
        ]
        actions = {
            "kill": self.kill_busy_worker,
            "delete": self.delete_pod,
            "operator": self.restart_operator,
            "redis": self.restart_redis,
        }
        for step in plan:
            time.sleep(2.5)
            try:
                actions[step]()
            except Exception as error:  # the schedule goes on; the test reports it
                self.errors.append(f"{step}: {error}")


def test_no_job_is_lost_under_chaos(cluster: Cluster, kube: Kubectl, operator_process: Any) -> None:
    if cluster.state_dir is None:
        pytest.skip("kills worker processes through the process-kubelet")
    server = RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "everysec"]).start()
    try:
        make_secret(kube, "chaos-redis", server.url)
        name = f"chaos-{kube.namespace[-6:]}"
        manifest = taskqueue_manifest(
            "chaos",
            queues=[name],
            redis={"urlFrom": {"secretKeyRef": {"name": "chaos-redis", "key": "url"}}},
            scaling={
                "minReplicas": 1,
                "maxReplicas": 4,
                "targetBacklogPerWorker": 50,
                "scaleDownDelay": "5s",
                "abandonedJobs": "requeue",
            },
        )
        manifest["spec"]["worker"].update({"workerClass": "simple", "jobTimeout": "10s"})
        kube.apply(manifest)
        client = server.client()
        queue = Queue(name, connection=client)
        ids = [
            queue.enqueue(
                "taskqueue_worker.examples.sleep", 0.1, result_ttl=3600, failure_ttl=3600
            ).id
            for _ in range(JOBS)
        ]
        time.sleep(1.5)  # appendfsync everysec: the enqueues are on disk before Redis restarts

        chaos = Chaos(cluster, kube, operator_process, server, name)
        driver = threading.Thread(target=chaos.run)
        started = time.monotonic()
        driver.start()
        driver.join()

        def statuses() -> Counter[str]:
            counts: Counter[str] = Counter()
            for start in range(0, len(ids), 500):
                for job in Job.fetch_many(ids[start : start + 500], connection=server.client()):
                    counts[job.get_status() if job else "missing"] += 1
            return counts

        def all_terminal() -> bool:
            counts = statuses()
            return sum(counts[s] for s in TERMINAL) == len(ids)

        wait_for(all_terminal, 300, 2.0, "every job finished or failed")
        elapsed = time.monotonic() - started
        counts = statuses()
        executions = sum(
            1
            for i in ids
            for result in Job.fetch(i, connection=client).results()
            if result.type == Result.Type.SUCCESSFUL
        )
        failed = [
            Job.fetch(i, connection=client)
            for i in ids
            if Job.fetch(i, connection=client).get_status() == "failed"
        ]
        kills = chaos.done["SIGKILL busy worker"] + chaos.done["delete worker pod"]
        duplicates = executions - counts["finished"]
        print(
            f"\nchaos: {JOBS} jobs in {elapsed:.0f}s; faults {dict(chaos.done)}; "
            f"statuses {dict(counts)}; executions {executions} (duplicates {duplicates}); "
            f"failed {len(failed)}; errors {chaos.errors}"
        )
        assert counts["missing"] == 0, "a job vanished"
        assert counts["finished"] + counts["failed"] == len(ids)
        for job in failed:  # a failure always says why
            assert job.latest_result() is not None and job.latest_result().exc_string
        assert duplicates <= max(kills, 0) + chaos.done["restart Redis"] * 4
        assert chaos.done["restart operator"] == 2 and chaos.done["restart Redis"] == 1
    finally:
        server.cleanup()
