"""Many TaskQueues on a real API server: what one operator costs at 100, 300, 1,000.

Starts etcd and kube-apiserver alone (testbed.controlplane, `apiserver_only`: no
controller turns the Deployments into pods, so the API server serves the operator and
itself only), a real redis-server on 127.0.0.1, and the operator as a host process (the
image's code: `python -m taskqueue_operator.main`). For each count it creates that many
TaskQueues (two queues each in the one Redis; every tenth has jobs that come and go every
second), lets the operator settle, then measures over a window:

- operator CPU (cores, from /proc) and RSS; its ticks per second, tick lag p50/p99
  (taskqueue_tick_lag_seconds) and tick duration p50/p99;
- API requests per second by reads and writes (the API server's apiserver_request_total,
  less the same figure at 0 TaskQueues: the API server's own lease renewals);
- open watches and the API server's and etcd's CPU and RSS ("watch memory": what the
  API server holds for the watches and their caches).

`--before REF` also runs the operator of a git ref (exported to a temporary directory,
put first on PYTHONPATH) at every count, in the same run, against the same API server.

    make bench-scale  # = PYTHONPATH=tests .venv/bin/python bench/many_taskqueues.py
    ... --counts 100,300,1000 --settle 60 --window 60 [--before REF]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import kubernetes  # noqa: E402
import redis  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from taskqueue_contract.keys import Keys  # noqa: E402
from testbed.build import build  # noqa: E402
from testbed.controlplane import ControlPlane  # noqa: E402
from testbed.ports import free_port  # noqa: E402
from testbed.processes import stop_process  # noqa: E402
from testbed.redis_server import RedisServer  # noqa: E402

NAMESPACE = "bench"
GROUP, VERSION, PLURAL = "taskqueue.dev", "v1alpha1", "taskqueues"
LOADED_EVERY = 10
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
READ_VERBS = {"GET", "LIST"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GOAL = {"cores": 1.0, "rss_mib": 300.0, "writes_per_taskqueue": 0.05, "lag_p99": 0.5}


# ----------------------------------------------------------------------------- probes


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(
    url: str, context: ssl.SSLContext | None = None
) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)] of a /metrics page."""
    with urllib.request.urlopen(url, context=context, timeout=10) as reply:
        text = reply.read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """histogram_quantile over cumulative (le, count) deltas, as Prometheus computes it."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


def histogram(
    metrics: dict[str, list[tuple[dict[str, str], float]]], name: str
) -> dict[float, float]:
    return {float(labels["le"]): value for labels, value in metrics.get(f"{name}_bucket", [])}


def delta(after: dict[float, float], before: dict[float, float]) -> list[tuple[float, float]]:
    return [(le, count - before.get(le, 0.0)) for le, count in after.items()]


def requests_by_verb(metrics: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, float]:
    counts: dict[str, float] = {}
    for labels, value in metrics.get("apiserver_request_total", []):
        key = f"{labels.get('verb')} {labels.get('resource')}"
        counts[key] = counts.get(key, 0.0) + value
    return counts


# ------------------------------------------------------------------------- the world


def taskqueue(index: int, url: str) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TaskQueue",
        "metadata": {"name": f"tq{index}", "namespace": NAMESPACE},
        "spec": {
            "redis": {"url": url},
            "queues": [f"tq{index}-high", f"tq{index}-default"],
            "worker": {"image": "ghcr.io/taskqueue-dev/taskqueue-worker:0.1.0"},
            "scaling": {"minReplicas": 0, "maxReplicas": 5},
        },
    }


def create_taskqueues(api: kubernetes.client.ApiClient, start: int, stop: int, url: str) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)

    def create(index: int) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, taskqueue(index, url)
        )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(start, stop)))


class Load:
    """Every tenth TaskQueue's default queue gains or loses a job every second."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        keys, grow = Keys(), True
        while not self.stop.wait(1.0):
            pipe = self.client.pipeline(transaction=False)
            for index in range(0, self.count, LOADED_EVERY):
                key = keys.queue(f"tq{index}-default")
                (pipe.rpush(key, f"job-{index}") if grow else pipe.lpop(key))
            pipe.execute()
            grow = not grow


@dataclass
class Operator:
    """The operator as a host process, its code from `source` (None: this worktree)."""

    kubeconfig: Path
    log: Path
    source: Path | None = None
    metrics_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        self.metrics_port = free_port()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        if self.source is not None:
            paths = [str(self.source / "operator"), str(self.source / "contract")]
            env["PYTHONPATH"] = os.pathsep.join(paths)
        command = [
            sys.executable, "-m", "taskqueue_operator.main",
            "--namespace", NAMESPACE, "--metrics-port", str(self.metrics_port),
            "--dashboard-port", "0", "--liveness", "",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                self.metrics()
                return self
            time.sleep(0.2)
        raise TimeoutError("the operator's /metrics did not answer")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=30)
            self.process = None


@contextlib.contextmanager
def exported(ref: str) -> Iterator[Path]:
    """The operator and contract packages of a git ref, in a temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="tq-bench-before-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "operator", "contract"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(directory, filter="data")
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------- measure


def settled(api: kubernetes.client.ApiClient, count: int) -> bool:
    """Every TaskQueue has its Deployment and a status this operator wrote."""
    apps = kubernetes.client.AppsV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    deployments = apps.list_namespaced_deployment(NAMESPACE, _preload_content=False)
    taskqueues = custom.list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, _preload_content=False
    )
    with_status = sum(
        1
        for item in json.loads(taskqueues.data)["items"]
        if (item.get("status") or {}).get("observedGeneration")
    )
    return len(json.loads(deployments.data)["items"]) >= count and with_status >= count


def settle(
    operator: Operator, api: kubernetes.client.ApiClient, count: int, seconds: float
) -> float:
    """At least `seconds`, and until every TaskQueue has its children and status and its
    loop ticked three times; then `seconds` more (the start-up's Events and scale-ups
    pass). Returns the seconds it took."""
    started = time.monotonic()
    time.sleep(seconds)
    deadline = started + 600
    while count and time.monotonic() < deadline:
        ticks = operator.metrics().get("taskqueue_tick_duration_seconds_count", [({}, 0.0)])
        if ticks and ticks[0][1] >= count * 3 and settled(api, count):
            time.sleep(seconds)
            break
        time.sleep(5)
    return time.monotonic() - started


@dataclass
class Figures:
    """One operator at one count, over the window."""

    variant: str
    count: int
    cores: float
    rss_mib: float
    threads: int
    ticks_per_s: float
    lag_p50: float | None
    lag_p99: float | None
    tick_p99: float | None
    rates: dict[str, float]
    """Requests per second by "VERB resource", all clients of the API server."""
    watches: float
    apiserver_cores: float
    etcd_cores: float
    apiserver_rss_mib: float
    etcd_rss_mib: float
    settled_s: float = 0.0

    def reads_writes(self) -> tuple[float, float]:
        reads = sum(v for k, v in self.rates.items() if k.split()[0] in READ_VERBS)
        writes = sum(v for k, v in self.rates.items() if k.split()[0] in WRITE_VERBS)
        return reads, writes


def measure(
    variant: str,
    count: int,
    operator: Operator,
    plane: ControlPlane,
    context: ssl.SSLContext,
    window: float,
) -> Figures:
    pids = {"operator": operator.pid, **plane.pids}
    apiserver = f"{plane.server}/metrics"
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    api0, ours0 = scrape(apiserver, context), operator.metrics()
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    api1, ours1 = scrape(apiserver, context), operator.metrics()
    cpu = {name: (cpu_seconds(pid) - cpu0[name]) / elapsed for name, pid in pids.items()}
    before, after = requests_by_verb(api0), requests_by_verb(api1)
    lag_name, tick_name = "taskqueue_tick_lag_seconds", "taskqueue_tick_duration_seconds"
    lag = delta(histogram(ours1, lag_name), histogram(ours0, lag_name))
    duration = delta(histogram(ours1, tick_name), histogram(ours0, tick_name))
    longrunning = api1.get("apiserver_longrunning_requests", [])
    return Figures(
        variant=variant,
        count=count,
        cores=cpu["operator"],
        rss_mib=rss_mib(operator.pid),
        threads=len(os.listdir(f"/proc/{operator.pid}/task")),
        ticks_per_s=max((c for _, c in duration), default=0.0) / elapsed,
        lag_p50=quantile(lag, 0.5),
        lag_p99=quantile(lag, 0.99),
        tick_p99=quantile(duration, 0.99),
        rates={key: (after[key] - before.get(key, 0.0)) / elapsed for key in after},
        watches=sum(v for labels, v in longrunning if labels.get("verb") == "WATCH"),
        apiserver_cores=cpu["kube-apiserver"],
        etcd_cores=cpu["etcd"],
        apiserver_rss_mib=rss_mib(plane.pids["kube-apiserver"]),
        etcd_rss_mib=rss_mib(plane.pids["etcd"]),
    )


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


COLUMNS = [
    *("operator", "TQs", "cores", "RSS_MiB", "thr", "ticks/s", "lag_p50", "lag_p99"),
    *("tick_p99", "reads/s", "writes/s", "w/s/TQ", "settle_s", "watches", "api_cores"),
    *("api_MiB", "etcd_cores", "etcd_MiB"),
]


def row(f: Figures, base: Figures | None) -> list[str]:
    reads, writes = f.reads_writes()
    base_reads, base_writes = base.reads_writes() if base else (0.0, 0.0)
    ours = writes - base_writes
    return [
        f.variant,
        str(f.count),
        fmt(f.cores, 2),
        fmt(f.rss_mib, 0),
        str(f.threads),
        fmt(f.ticks_per_s, 0),
        fmt(f.lag_p50),
        fmt(f.lag_p99),
        fmt(f.tick_p99),
        fmt(reads - base_reads, 1),
        fmt(ours, 1),
        fmt(ours / f.count if f.count else None),
        fmt(f.settled_s, 0),
        fmt(f.watches, 0),
        fmt(f.apiserver_cores, 2),
        fmt(f.apiserver_rss_mib, 0),
        fmt(f.etcd_cores, 2),
        fmt(f.etcd_rss_mib, 0),
    ]


def goal_misses(f: Figures, base: Figures) -> list[str]:
    writes = (f.reads_writes()[1] - base.reads_writes()[1]) / f.count
    checks = (
        ("cores", f.cores, GOAL["cores"]),
        ("RSS MiB", f.rss_mib, GOAL["rss_mib"]),
        ("w/s/TQ", writes, GOAL["writes_per_taskqueue"]),
        ("lag p99", f.lag_p99, GOAL["lag_p99"]),
    )
    return [f"{name} {fmt(v)} > {limit}" for name, v, limit in checks if v and v > limit]


def report(results: list[Figures]) -> None:
    baselines = {f.variant: f for f in results if f.count == 0}
    rows = [COLUMNS] + [row(f, baselines.get(f.variant)) for f in results]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    for cells in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True)))
    print("reads/s, writes/s: apiserver_request_total less the same at 0 TaskQueues")
    for f in results:
        base = baselines.get(f.variant)
        if not f.count or base is None:
            continue
        pairs = (
            ("operator cores", f.cores, base.cores),
            ("RSS", f.rss_mib, base.rss_mib),
            ("API server cores", f.apiserver_cores, base.apiserver_cores),
            ("API server RSS", f.apiserver_rss_mib, base.apiserver_rss_mib),
            ("etcd cores", f.etcd_cores, base.etcd_cores),
        )
        ratios = ", ".join(f"{name} x{a / b:.1f}" for name, a, b in pairs if b > 0)
        misses = goal_misses(f, base)
        verdict = "met" if not misses else "missed: " + ", ".join(misses)
        print(f"{f.variant} {f.count}: vs 0 TaskQueues {ratios}; goal {verdict}")
        extra = {k: v - base.rates.get(k, 0.0) for k, v in f.rates.items()}
        top = sorted(extra.items(), key=lambda item: -item[1])[:6]
        print("   top requests/s: " + ", ".join(f"{k} {v:.1f}" for k, v in top if v > 0.05))


def kubectl(plane: ControlPlane, *args: str) -> None:
    command = [str(build() / "kubectl"), "--kubeconfig", str(plane.kubeconfig), *args]
    subprocess.run(command, check=True, capture_output=True)


def run_variant(
    variant: str,
    source: Path | None,
    count: int,
    plane: ControlPlane,
    api: kubernetes.client.ApiClient,
    logs: Path,
    options: argparse.Namespace,
) -> Figures:
    log = logs / f"operator-{variant}-{count}.log"
    operator = Operator(plane.kubeconfig, log, source)
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    context.load_cert_chain(str(plane.work_dir / "admin.crt"), str(plane.work_dir / "admin.key"))
    try:
        operator.start()
        took = settle(operator, api, count, options.settle if count else 10)
        figures = measure(variant, count, operator, plane, context, options.window)
    finally:
        operator.stop()
    figures.settled_s = took
    tracebacks = log.read_text().count("Traceback") if log.exists() else 0
    print(
        f"{variant} {count}: {fmt(figures.cores, 2)} cores, {fmt(figures.rss_mib, 0)} MiB, "
        f"lag p99 {fmt(figures.lag_p99)} s, {fmt(figures.ticks_per_s, 0)} ticks/s, "
        f"settled in {took:.0f} s, {tracebacks} tracebacks in its log",
        flush=True,
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="100,300,1000")
    parser.add_argument("--settle", type=float, default=60)
    parser.add_argument("--window", type=float, default=60)
    parser.add_argument("--before", help="also run the operator of this git ref")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--logs", type=Path, help="keep the operators' logs in this directory")
    options = parser.parse_args()
    counts = [0, *sorted(int(c) for c in options.counts.split(",") if c and int(c))]
    work = Path(tempfile.mkdtemp(prefix="tq-bench-scale-"))
    plane = ControlPlane(build(), work_dir=work / "controlplane", apiserver_only=True)
    plane.work_dir.mkdir(parents=True)
    server = RedisServer()
    results: list[Figures] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        stack.callback(plane.stop)
        plane.start()
        stack.callback(server.cleanup)
        server.start()
        load = Load(server.url)
        load.thread.start()
        stack.callback(load.stop.set)
        kubectl(plane, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(plane, "wait", "--for", "condition=Established", "crd/taskqueues.taskqueue.dev")
        api = kubernetes.config.new_client_from_config(str(plane.kubeconfig))
        stack.callback(api.close)
        kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        variants: list[tuple[str, Path | None]] = [("this", None)]
        if options.before:
            variants.insert(0, ("before", stack.enter_context(exported(options.before))))
        logs = options.logs or work
        logs.mkdir(parents=True, exist_ok=True)
        created = 0
        for count in counts:
            create_taskqueues(api, created, count, server.url)
            created = max(created, count)
            load.count = count
            for variant, source in variants:
                results.append(run_variant(variant, source, count, plane, api, logs, options))
    print()
    report(results)
    if options.json:
        options.json.write_text(json.dumps([dataclasses.asdict(f) for f in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
