"""Chaos, the long version (issue 8): N short jobs through an autoscaled TaskQueue while
busy workers are SIGKILLed, worker pods deleted, the operator restarted twice and Redis
(AOF, appendfsync everysec) restarted once. Every job id is accounted for at the end.

    .venv/bin/python bench/chaos.py [--jobs 10000] [--baseline-jobs N] [--fault-interval 5]
    .venv/bin/python bench/chaos.py --kubeconfig ~/.kube/config [--pod-redis-host ADDRESS]
    .venv/bin/python bench/chaos.py --kubeconfig ~/.kube/config --redis-url URL \\
        [--redis-restart-command 'kubectl -n redis delete pod redis-0']

The baseline is the same job count through the same TaskQueue with no chaos, measured
first in the same run (same test bed, same operator, a fresh Redis and namespace);
`--baseline-jobs 0` skips it. Faults are spread over the run by progress: a kill or pod
deletion every `--fault-interval` seconds until 95% of the jobs left the queue, the
operator restarted at 25% and 70%, Redis at 50%.

Without --kubeconfig it starts its own test bed (control plane + a real node) and
Redis. With --kubeconfig, kills are forced pod deletions (the kubelet SIGKILLs the
container). Its own Redis then also listens where the pods reach this machine (found from
the nodes' InternalIP, as in the e2e tests: right for kind; else --pod-redis-host); with
--redis-url the pods must reach that one, restarted only with --redis-restart-command.
The operator always runs here, as in the e2e tests.

Exit code 1 when a job is lost (neither finished nor failed with a reason) or the
duplicate executions exceed the kills (SIGKILLs + pod deletions).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402
from chaos_driver import (  # noqa: E402
    DELETE,
    KILL,
    OPERATOR,
    REDIS,
    Accounting,
    Chaos,
    account,
    aof_redis,
    create_taskqueue,
    enqueue_jobs,
    restart_local_redis,
    wait_all_terminal,
)
from e2e_helpers import Kubectl, OperatorProcess, install_crd  # noqa: E402
from taskqueue_contract.keys import Keys  # noqa: E402
from testbed.cluster import Cluster, open_cluster  # noqa: E402
from testbed.pod_network import use_pod_redis_host  # noqa: E402
from testbed.redis_server import RedisServer  # noqa: E402


@dataclass
class Run:
    label: str
    report: Accounting
    drained: float  # seconds from the first enqueue until every job was seen terminal
    chaos: Chaos | None = None


class Target:
    """Where a run's Redis lives: our own redis-server, or the user's (--redis-url)."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.server: RedisServer | None = None

    def start(self) -> str:
        if self.options.redis_url:
            client = redis.Redis.from_url(self.options.redis_url)
            client.flushdb()  # the accounting reads job ids: a clean database per run
            return str(self.options.redis_url)
        self.server = aof_redis().start()
        return self.server.pod_url

    def client(self) -> redis.Redis:
        url = self.options.redis_url or (self.server and self.server.url)
        return redis.Redis.from_url(url)

    def restarter(self) -> Callable[[], None] | None:
        if self.server is not None:
            server = self.server
            return lambda: restart_local_redis(server)
        command = self.options.redis_restart_command
        if command:
            return lambda: subprocess.run(command, shell=True, check=True, timeout=300)
        return None

    def cleanup(self) -> None:
        if self.server is not None:
            self.server.cleanup()


def one_run(
    cluster: Cluster,
    operator: OperatorProcess,
    options: argparse.Namespace,
    jobs: int,
    chaotic: bool,
) -> Run:
    label = "chaos" if chaotic else "baseline"
    namespace = f"chaos-bench-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(namespace)
    kube = Kubectl(cluster, namespace)
    target = Target(options)
    stop = threading.Event()
    driver: threading.Thread | None = None
    chaos: Chaos | None = None
    try:
        queue = create_taskqueue(kube, target.start())
        client = target.client()
        started = time.monotonic()
        ids = enqueue_jobs(client, queue, jobs)
        print(f"{label}: {jobs} jobs enqueued in {time.monotonic() - started:.1f}s", flush=True)
        if chaotic:
            time.sleep(1.5)  # appendfsync everysec: the enqueues are on disk first
            restarter = target.restarter()
            milestones = [(0.25, "operator"), (0.5, "redis"), (0.7, "operator")]
            if restarter is None:
                print("no --redis-restart-command: Redis is not restarted")
                milestones.remove((0.5, "redis"))
            chaos = Chaos(
                cluster,
                kube,
                operator,
                target.client,
                restarter or (lambda: None),
                queue,
                seed=options.seed,
            )
            last = [0.0]

            def progress() -> float:
                # Redis may be restarting: keep the last figure.
                with contextlib.suppress(redis.exceptions.RedisError):
                    last[0] = 1 - client.llen(Keys().queue(queue)) / max(jobs, 1)
                return last[0]

            driver = threading.Thread(
                target=chaos.run_spread,
                args=(progress, stop, options.fault_interval, milestones),
                daemon=True,
            )
            driver.start()
        timeout = options.timeout or 300 + jobs / 5
        if driver is not None:
            driver.join(timeout)
            if driver.is_alive():
                raise TimeoutError(f"the chaos schedule did not end in {timeout:.0f}s")
        wait_all_terminal(client, ids, timeout)
        drained = time.monotonic() - started
        return Run(label, account(client, queue, ids), drained, chaos)
    finally:
        stop.set()
        if driver is not None:
            driver.join(30)
        kube.run("delete", "taskqueue", "chaos", "--wait=false", check=False, namespaced=True)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        target.cleanup()


def figures(run: Run) -> dict[str, str]:
    report, done = run.report, (run.chaos.done if run.chaos else {})
    with_reason = len(report.failed) - len(report.failed_without_reason)
    return {
        "jobs run": f"{report.jobs}",
        "finished": f"{report.statuses['finished']}",
        "failed with a reason": f"{with_reason}",
        "failed, not in failed registry": f"{len(report.failed_not_in_registry)}",
        "lost": f"{report.lost}",
        "duplicated executions": f"{report.duplicates}",
        "runs restarted after a kill": f"{report.reruns}",
        "SIGKILLs of busy workers": f"{done.get(KILL, 0)}",
        "worker pod deletions": f"{done.get(DELETE, 0)}",
        "operator restarts": f"{done.get(OPERATOR, 0)}",
        "Redis restarts": f"{done.get(REDIS, 0)}",
        "wall time (first enqueue -> last end) s": f"{report.wall:.1f}",
        "drained (seen terminal) s": f"{run.drained:.1f}",
        "throughput jobs/s": f"{report.jobs / report.wall:.1f}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--baseline-jobs", type=int, default=None, help="default: --jobs")
    parser.add_argument("--fault-interval", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=0, help="per run; default 300 + jobs/5")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--redis-url", default=None, help="with --kubeconfig: reachable by pods")
    parser.add_argument("--redis-restart-command", default=None)
    parser.add_argument("--pod-redis-host", default=None, help="this machine, as pods reach it")
    options = parser.parse_args()
    if not options.redis_url:
        use_pod_redis_host(options.pod_redis_host, options.kubeconfig)
    baseline_jobs = options.jobs if options.baseline_jobs is None else options.baseline_jobs

    runs: list[Run] = []
    began = time.monotonic()
    with open_cluster(options.kubeconfig, prefix="tq-chaos-bench-") as cluster:
        install_crd(cluster)
        operator = OperatorProcess(cluster.kubeconfig)
        try:
            operator.start()
            if baseline_jobs:
                runs.append(one_run(cluster, operator, options, baseline_jobs, chaotic=False))
            runs.append(one_run(cluster, operator, options, options.jobs, chaotic=True))
        finally:
            operator.stop()

    table = [figures(run) for run in runs]
    print(f"\nchaos bench, {time.monotonic() - began:.0f}s in all")
    print(f"{'':42}" + "".join(f"{run.label:>12}" for run in runs))
    for key in table[0]:
        print(f"{key:42}" + "".join(f"{row[key]:>12}" for row in table))
    chaos_run = runs[-1]
    assert chaos_run.chaos is not None
    if len(runs) == 2:
        baseline, chaotic = (run.report.jobs / run.report.wall for run in runs)
        print(f"throughput ratio chaos / baseline: {chaotic / baseline:.2f}")
    else:
        print("no baseline (--baseline-jobs 0)")
    if chaos_run.chaos.errors:
        print(f"chaos steps that failed: {chaos_run.chaos.errors}")
    for run in runs:
        if run.report.failed:
            reasons = {
                (job.latest_result().exc_string or "").strip().splitlines()[-1]
                for job in run.report.failed
                if job.latest_result() is not None and job.latest_result().exc_string
            }
            print(f"{run.label} failure reasons: {sorted(reasons)}")
    kills = chaos_run.chaos.kills
    lost = sum(run.report.lost for run in runs)
    ok = lost == 0 and chaos_run.report.duplicates <= kills
    print(
        f"{'PASS' if ok else 'FAIL'}: lost {lost} (goal 0); duplicated executions "
        f"{chaos_run.report.duplicates} <= kills {kills} (SIGKILLs + pod deletions); runs "
        f"restarted after a kill {chaos_run.report.reruns} (not gated: a killed run records "
        "no result, so it is not a duplicated execution)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
