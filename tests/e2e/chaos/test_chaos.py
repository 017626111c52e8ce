"""Issue 8 (bounded chaos): jobs through an autoscaled TaskQueue while workers are killed,
pods deleted, the operator restarted twice and Redis (AOF) restarted once. No job is lost.

The longer by-hand version is `bench/chaos.py`; both use `chaos_driver`."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from chaos_driver import (
    OPERATOR,
    REDIS,
    Chaos,
    account,
    aof_redis,
    create_taskqueue,
    enqueue_jobs,
    restart_local_redis,
    wait_all_terminal,
)
from e2e_helpers import Kubectl
from testbed.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
JOBS = int(os.environ.get("CHAOS_JOBS", "1000"))


def test_no_job_is_lost_under_chaos(cluster: Cluster, kube: Kubectl, operator_process: Any) -> None:
    if cluster.state_dir is None:
        pytest.skip("SIGKILLs worker containers' processes on this machine: test bed only")
    server = aof_redis().start()
    try:
        queue = create_taskqueue(kube, server.pod_url)
        client = server.client()
        ids = enqueue_jobs(client, queue, JOBS)
        time.sleep(1.5)  # appendfsync everysec: the enqueues are on disk before Redis restarts

        chaos = Chaos(
            cluster,
            kube,
            operator_process,
            server.client,
            lambda: restart_local_redis(server),
            queue,
        )
        started = time.monotonic()
        chaos.run()
        wait_all_terminal(client, ids, 300)
        elapsed = time.monotonic() - started
        report = account(client, queue, ids)
        print(
            f"\nchaos: {JOBS} jobs in {elapsed:.0f}s; faults {dict(chaos.done)}; "
            f"statuses {dict(report.statuses)}; executions {report.executions} "
            f"(duplicates {report.duplicates}); restarted after a kill {report.reruns}; "
            f"failed {len(report.failed)}; "
            f"errors {chaos.errors}"
        )
        assert report.statuses["missing"] == 0, "a job vanished"
        assert report.statuses["finished"] + report.statuses["failed"] == len(ids)
        assert report.failed_without_reason == [], "a failure always says why"
        assert report.duplicates <= max(chaos.kills, 0) + chaos.done[REDIS] * 4
        assert chaos.done[OPERATOR] == 2 and chaos.done[REDIS] == 1
    finally:
        server.cleanup()
