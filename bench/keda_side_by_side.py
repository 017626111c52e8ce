"""The real KEDA and our operator side by side, on the same traces, in one run (issue 16).

    PYTHONPATH=tests .venv/bin/python bench/keda_side_by_side.py [--replays bursty,batch,spike]
        [--max-replicas 10] [--tail 330]          (make bench-keda; root: it starts a test bed)

Starts its own test bed (control plane + a containerd node), one Redis the pods reach, our
operator and KEDA (v2.21.0 built from the Go module proxy: its operator and metrics adapter
as host processes, the API server's aggregation layer serving external.metrics.k8s.io and
the HPA controller of kube-controller-manager; see tests/testbed/keda_run.py). For each
replay (bench/sidebyside/replays.py: windows of the committed traces, at real speed) four
systems run at once, each in its own namespace with its own RQ queue on that Redis and the
same worker image:

- ours: a TaskQueue with its default spec and `scaling: {}` (autoscaling at its defaults:
  targetQueueSeconds 10 s, scaleDownDelay 2 s, maxReplicas 10; jobTimeout 360 s);
- keda: the same worker Deployment (terminationGracePeriodSeconds 30, Kubernetes' default)
  and a ScaledObject, redis trigger on `rq:queue:<q>`, listLength 5, KEDA's defaults
  (pollingInterval 30 s, cooldownPeriod 300 s; maxReplicaCount 10, as ours);
- keda-5s: the same with pollingInterval 5 s;
- at-max: the same Deployment held at maxReplicas from before the first job, no autoscaler
  (the baseline that separates the cap from the autoscaler: no system capped at 10 can wait
  much less, and none should cost more worker-seconds).

Each job of the replay is enqueued into the four queues at the same instant
(`examples.sleep(service)`). A sampler reads every system's Deployment (desired replicas,
pods) and queue length every 0.25 s. After the window it waits until every system is back
at zero with nothing pending (at-max: nothing pending), or `--tail` seconds (KEDA's
cooldown is 300 s; a replay may ask for longer); the horizon is the same for all four.
Figures per replay and system: first job -> desired >= 1, the load event's first job ->
desired > 1, p50/p95/max wait (enqueue -> start; a job that never started counts with the
wait it had at the end), worker-seconds (pods alive), jobs interrupted (a worker went away
under them) and lost (interrupted and not finished by the end); then ratios ours/KEDA, and
each system's p95 wait and worker-seconds over at-max's. `--from-json` prints a saved
report again. Writes bench/out/keda_side_by_side.{json,png} (`--out`). A benchmark: no
asserts on figures; exit 1 only when a step fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import kubernetes  # noqa: E402
import redis  # noqa: E402
from e2e_helpers import (  # noqa: E402
    WORKER_IMAGE,
    Kubectl,
    OperatorProcess,
    install_crd,
    make_secret,
    wait_for,
)
from keda_manifests import keda_worker_deployment, scaled_object  # noqa: E402
from rq import Queue  # noqa: E402
from rq.job import Job, JobStatus  # noqa: E402
from sidebyside.metrics import (  # noqa: E402
    Figures,
    JobOutcome,
    Sample,
    figures,
    raised_after,
    ratio,
)
from sidebyside.replays import REPLAYS, Replay, event_onset, jobs  # noqa: E402
from taskqueue_contract.keys import Keys  # noqa: E402
from testbed.cluster import Cluster, open_cluster  # noqa: E402
from testbed.keda_build import keda_version  # noqa: E402
from testbed.keda_run import Keda  # noqa: E402
from testbed.pod_network import POD_HOST_ENV  # noqa: E402
from testbed.redis_server import RedisServer  # noqa: E402

OUT = ROOT / "bench" / "out" / "keda_side_by_side.json"
SLEEP = "taskqueue_worker.examples.sleep"
DEPLOYMENT = "rq-workers"  # ours: worker_deployment_name("rq"); KEDA's: the same name
ABANDON_COUNT_META = "taskqueue_abandoned"  # what our operator counts on a requeued job
SAMPLE_EVERY = 0.25
# Every system's jobs get the TaskQueue default jobTimeout (RQ's own default, 180 s, would
# cut the batch replay's longest jobs), and keep their records past the horizon (RQ's
# default result_ttl, 500 s, would expire the first jobs' before they are read).
JOB_TIMEOUT = 360
KEEP_RECORDS = 7200
# KEDA's pollingInterval per system: None keeps KEDA's default (30 s).
KEDA_SYSTEMS: dict[str, int | None] = {"keda": None, "keda-5s": 5}
AT_MAX = "at-max"
SYSTEMS = ["ours", *KEDA_SYSTEMS, AT_MAX]


class BenchFailure(RuntimeError):
    """A step did not complete (a timeout): the run fails with this reason."""


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so every finally block runs


@dataclass
class System:
    name: str
    namespace: str
    queue: str
    samples: list[Sample] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    enqueued: list[float] = field(default_factory=list)


def taskqueue(queue: str) -> dict[str, Any]:
    """A TaskQueue with its default spec: only what has no default is written, and
    `scaling: {}` (autoscaling with every default; without it, a fixed spec.replicas)."""
    return {
        "apiVersion": "taskqueue.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": "rq"},
        "spec": {
            "redis": {"urlFrom": {"secretKeyRef": {"name": "redis-url", "key": "url"}}},
            "queues": [queue],
            "worker": {"image": WORKER_IMAGE},
            "scaling": {},
        },
    }


def prepare(
    cluster: Cluster, replay: str, redis_server: RedisServer, max_replicas: int
) -> list[System]:
    systems = []
    address = urlsplit(redis_server.pod_url).netloc
    for name in SYSTEMS:
        system = System(name, f"{name}-{replay}", f"{name}-{replay}")
        cluster.create_namespace(system.namespace)
        kube = Kubectl(cluster, system.namespace)
        make_secret(kube, "redis-url", redis_server.pod_url)
        if name == "ours":
            kube.apply(taskqueue(system.queue))
        elif name == AT_MAX:
            deployment = keda_worker_deployment("rq", system.namespace, system.queue, "redis-url")
            deployment["spec"]["replicas"] = max_replicas
            kube.apply(deployment)
        else:
            kube.apply(keda_worker_deployment("rq", system.namespace, system.queue, "redis-url"))
            kube.apply(
                scaled_object(
                    "rq", DEPLOYMENT, address, system.queue, max_replicas, KEDA_SYSTEMS[name]
                )
            )
        systems.append(system)
    for system in systems:
        kube = Kubectl(cluster, system.namespace)
        wait_for(
            lambda k=kube: k.get("deployment", DEPLOYMENT), 60, 0.5, f"{system.name}'s Deployment"
        )
        if system.name == AT_MAX:
            wait_for(
                lambda k=kube: (
                    ((k.get("deployment", DEPLOYMENT) or {}).get("status") or {}).get(
                        "readyReplicas", 0
                    )
                    == max_replicas
                ),
                300,
                1.0,
                f"{system.name}'s {max_replicas} workers Ready",
            )
        elif system.name != "ours":
            wait_for(
                lambda k=kube: any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in ((k.get("scaledobject", "rq") or {}).get("status") or {}).get(
                        "conditions", []
                    )
                ),
                60,
                0.5,
                f"{system.name}'s ScaledObject Ready",
            )
    return systems


class Sampler:
    """Every SAMPLE_EVERY: each system's Deployment (spec.replicas, status.replicas) and
    queue length, stamped on the replay's clock."""

    def __init__(self, cluster: Cluster, client: redis.Redis, systems: list[System]) -> None:
        self.api = cluster.api_client()
        self.apps = kubernetes.client.AppsV1Api(self.api)
        self.client = client
        self.systems = systems
        self.origin = time.monotonic()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self, origin: float) -> Sampler:
        self.origin = origin
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.api.close()

    def _run(self) -> None:
        while not self.stopping.is_set():
            for system in self.systems:
                try:
                    body = self.apps.read_namespaced_deployment(DEPLOYMENT, system.namespace)
                    pending = int(self.client.llen(Keys().queue(system.queue)))
                except (kubernetes.client.ApiException, redis.RedisError, OSError):
                    continue  # a missed sample: the next one follows
                system.samples.append(
                    Sample(
                        time.monotonic() - self.origin,
                        int(body.spec.replicas or 0),
                        int(body.status.replicas or 0),
                        pending,
                    )
                )
            self.stopping.wait(SAMPLE_EVERY)


def play(replay: Replay, systems: list[System], client: redis.Redis, origin: float) -> None:
    """Enqueue each job into every system's queue at its offset on the replay's clock."""
    queues = {system.name: Queue(system.queue, connection=client) for system in systems}
    for offset, service in jobs(replay):
        delay = origin + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for system in systems:
            job = queues[system.name].enqueue(
                SLEEP,
                service,
                job_timeout=JOB_TIMEOUT,
                result_ttl=KEEP_RECORDS,
                failure_ttl=KEEP_RECORDS,
            )
            system.job_ids.append(job.id)
            system.enqueued.append(time.monotonic() - origin)


def settled(systems: list[System]) -> bool:
    """Every autoscaled system at zero replicas with no pod left, and nothing pending
    anywhere (per each system's last sample)."""
    return all(
        s.samples and s.samples[-1].pending == 0
        and (s.name == AT_MAX or (s.samples[-1].desired == 0 and s.samples[-1].pods == 0))
        for s in systems
    )  # fmt: skip


def outcomes(
    cluster: Cluster, system: System, client: redis.Redis, wall_origin: float
) -> list[JobOutcome]:
    """Each job's fate from RQ's own records; a 'started' job whose worker (worker name =
    pod name) has no pod any more was cut off."""
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    pods = {p.metadata.name for p in core.list_namespaced_pod(system.namespace).items}
    found = Job.fetch_many(system.job_ids, connection=client)
    results = []
    for enqueued, job in zip(system.enqueued, found, strict=True):
        if job is None:  # gone from Redis: counted as lost (records are kept for 2 h)
            results.append(JobOutcome(enqueued, None, False, True))
            continue
        status = job.get_status(refresh=False)
        started = job.started_at.timestamp() - wall_origin if job.started_at else None
        orphaned = status == JobStatus.STARTED and job.worker_name not in pods
        cut = int(job.meta.get(ABANDON_COUNT_META, 0)) > 0 or status == JobStatus.FAILED or orphaned
        results.append(JobOutcome(enqueued, started, status == JobStatus.FINISHED, cut))
    return results


def run_replay(
    cluster: Cluster,
    name: str,
    redis_server: RedisServer,
    options: argparse.Namespace,
) -> dict[str, Any]:
    replay = REPLAYS[name]
    client = redis_server.client()
    systems = prepare(cluster, name, redis_server, options.max_replicas)
    print(
        f"{name}: {len(jobs(replay))} jobs over {replay.length:.0f}s ({replay.about})", flush=True
    )
    origin = time.monotonic()
    wall_origin = time.time()
    sampler = Sampler(cluster, client, systems).start(origin)
    try:
        play(replay, systems, client, origin)
        window_end = max(replay.length, time.monotonic() - origin)
        deadline = origin + window_end + max(options.tail, replay.tail or 0.0)
        while time.monotonic() < deadline and not settled(systems):
            time.sleep(1.0)
        horizon = time.monotonic() - origin
    finally:
        sampler.stop()
    result: dict[str, Any] = {"replay": asdict(replay), "horizon_s": horizon, "systems": {}}
    for system in systems:
        found = outcomes(cluster, system, client, wall_origin)
        result["systems"][system.name] = {
            "figures": asdict(figures(system.samples, found, horizon, event_onset(replay))),
            "samples": [asdict(s) for s in system.samples],
            "outcomes": [asdict(o) for o in found],
        }
    for system in systems:
        Kubectl(cluster, system.namespace).run(
            "delete", "scaledobject,taskqueue", "--all", check=False
        )
        cluster.kubectl("delete", "namespace", system.namespace, "--wait=false", check=False)
    client.close()
    return result


def print_table(report: dict[str, Any]) -> None:
    header = (
        f"{'replay':<12} {'system':<8} {'jobs':>5} {'0->1 s':>7} {'1->N s':>7} {'p50 s':>7}"
        f" {'p95 s':>7} {'max s':>7} {'worker-s':>9} {'peak':>5} {'interr.':>7} {'lost':>5}"
    )
    print("\n" + header)

    def cell(value: float | None, width: int = 7) -> str:
        return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"

    for name, run in report.get("runs", {}).items():
        for system, data in run["systems"].items():
            f = data["figures"]
            print(
                f"{name:<12} {system:<8} {f['jobs']:>5} {cell(f['zero_to_one'])}"
                f" {cell(f['one_to_n'])} {cell(f['wait_p50'])} {cell(f['wait_p95'])}"
                f" {cell(f['wait_max'])} {cell(f['worker_seconds'], 9)} {f['peak']:>5}"
                f" {f['interrupted']:>7} {f['lost']:>5}"
            )
    print("\nratios ours/KEDA (goal: p95 wait <= 0.3x at worker-seconds <= 0.7x; 0 interrupted)")
    for name, run in report.get("runs", {}).items():
        ours = Figures(**run["systems"]["ours"]["figures"])
        for keda in KEDA_SYSTEMS:
            theirs = Figures(**run["systems"][keda]["figures"])
            p95 = ratio(ours.wait_p95, theirs.wait_p95)
            work = ratio(ours.worker_seconds, theirs.worker_seconds)
            zero = ratio(ours.zero_to_one, theirs.zero_to_one)
            met = (
                p95 is not None and p95 <= 0.3 and work is not None and work <= 0.7
                and (ours.interrupted == 0 or theirs.interrupted == 0)
            )  # fmt: skip
            print(
                f"{name:<12} vs {keda:<8} p95 wait {fmt(p95)}  worker-s {fmt(work)}"
                f"  0->1 {fmt(zero)}  interrupted {ours.interrupted} vs {theirs.interrupted}"
                f"  lost {ours.lost} vs {theirs.lost}  goal {'met' if met else 'NOT met'}"
            )
    print(f"\nover {AT_MAX} (maxReplicas from the start: the cap's own p95 wait and cost)")
    for name, run in report.get("runs", {}).items():
        if AT_MAX not in run["systems"]:
            continue  # a report from before the baseline
        base = Figures(**run["systems"][AT_MAX]["figures"])
        cells = []
        for system, data in run["systems"].items():
            if system != AT_MAX:
                f = Figures(**data["figures"])
                p95, work = (
                    ratio(f.wait_p95, base.wait_p95),
                    ratio(f.worker_seconds, base.worker_seconds),
                )
                cells.append(f"{system} p95 {fmt(p95)} worker-s {fmt(work)}")
        print(
            f"{name:<12} {base.wait_p95:.1f} s p95, {base.worker_seconds:.0f} worker-s: "
            + "; ".join(cells)
        )


def refigure(report: dict[str, Any]) -> None:
    """Figures again from a saved report's samples and outcomes (after a change to what a
    figure counts). A report without outcomes gets only 1 -> N again."""
    for name, run in report.get("runs", {}).items():
        onset = event_onset(REPLAYS[name])
        for data in run["systems"].values():
            samples = [Sample(**x) for x in data["samples"]]
            if data.get("outcomes"):
                found = [JobOutcome(**x) for x in data["outcomes"]]
                data["figures"] = asdict(figures(samples, found, run["horizon_s"], onset))
            else:
                data["figures"]["one_to_n"] = raised_after(samples, onset, 1)


def fmt(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def bench(cluster: Cluster, options: argparse.Namespace, report: dict[str, Any]) -> None:
    if cluster.state_dir is None:
        raise BenchFailure("the side-by-side bench starts KEDA on the test bed only")
    os.environ[POD_HOST_ENV] = cluster.addresses["host_ip"]
    redis_server = RedisServer().start()
    operator = OperatorProcess(cluster.kubeconfig)
    keda: Keda | None = None
    try:
        install_crd(cluster)
        operator.start()
        started = time.monotonic()
        keda = Keda(cluster).start()
        report["keda"] = {"version": keda_version(), "start_s": time.monotonic() - started}
        print(f"KEDA {keda_version()} up in {report['keda']['start_s']:.1f}s", flush=True)
        report["runs"] = {}
        for name in options.replays.split(","):
            report["runs"][name] = run_replay(cluster, name, redis_server, options)
            save(report, options.out)  # partial too
    finally:
        if keda is not None:
            keda.stop()
        operator.stop()
        redis_server.cleanup()


def save(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")


def show(report: dict[str, Any], out: Path) -> None:
    """The plot (PNG) and the table with the ratios."""
    if not report.get("runs"):
        return
    from sidebyside.plot import plot

    samples = {
        name: {s: [Sample(**x) for x in d["samples"]] for s, d in run["systems"].items()}
        for name, run in report["runs"].items()
    }
    print(f"plot: {plot(samples, out.with_suffix('.png'))}")
    print_table(report)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--replays",
        default="spike,bursty,batch,batch-long,spike-light,bursty-light",
        help="of " + ",".join(REPLAYS),
    )
    parser.add_argument("--max-replicas", type=int, default=10, help="KEDA's maxReplicaCount")
    parser.add_argument("--tail", type=float, default=330.0, help="seconds after a window, at most")
    parser.add_argument("--out", type=Path, default=OUT, help="the report; the plot beside it")
    parser.add_argument(
        "--from-json", type=Path, help="print the table and plot of a saved report, run nothing"
    )
    options = parser.parse_args()
    if options.from_json:
        saved = json.loads(options.from_json.read_text())
        refigure(saved)
        show(saved, options.out)
        return 0
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    report: dict[str, Any] = {"options": vars(options)}
    code = 0
    began = time.monotonic()
    try:
        with open_cluster(None, prefix="tq-keda-bench-") as cluster:
            bench(cluster, options, report)
    except BenchFailure as error:
        report["error"] = str(error)
        code = 1
    except Exception as error:
        traceback.print_exc()
        report["error"] = f"{type(error).__name__}: {error}"
        code = 1
    finally:
        report["seconds"] = time.monotonic() - began
        save(report, options.out)
    show(report, options.out)
    if "error" in report:
        print(f"FAILED: {report['error']}")
    print(f"figures in {options.out} ({report['seconds']:.0f}s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
