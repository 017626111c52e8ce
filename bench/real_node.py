"""Real-node figures (issues 12, 15): pod start, cold start from zero, scale-down, recovery, images.

    PYTHONPATH=tests .venv/bin/python bench/real_node.py [--pods 20] [--runs 20] [--kills 10]
    PYTHONPATH=tests .venv/bin/python bench/real_node.py --kubeconfig ~/.kube/config \\
        [--pod-redis-host ADDRESS]

Starts its own test bed (control plane + a containerd node, see testbed.cluster), a Redis
the pods reach and the operator as a host process, then measures, each figure with a
baseline from the same run:

1. pod start: `--pods` worker pods with the spec the operator renders (read from the
   Deployment of a TaskQueue with `replicas: 0`), created one after another: create ->
   Running (phase) and create -> Ready (condition), seen by a pod watch. Baseline: the
   same pod running `python -c "import time; time.sleep(600)"` without probes (container
   start alone). Worker and baseline pods alternate; each is gone before the next.
2. cold start: `--runs` times, from zero replicas and no pod, enqueue a noop job and poll
   its status every 20 ms: enqueue -> started (when the noop ran within one poll, from the
   job's started_at, same clock) and -> finished (TaskQueue minReplicas 0,
   maxReplicas 2, scaleDownDelay 2s, pollInterval 1s). Baseline: the same job on a second
   TaskQueue with minReplicas 1 (a worker already running).
3. scale-down: for each cold run, from the operator setting the Deployment's replicas to 0
   (Deployment watch) until the pod object is deleted, and until its container exited.
5. recovery (test bed only): `--kills` times, SIGKILL the worker process of a pod running
   a job: kill -> job requeued by the operator. Baseline: kill -> the container's death
   seen in a pod watch (the kubelet's report, which bounds any pod-watching controller).
4. images: one `testbed.images.ensure_images()` call (cached after the test bed's own):
   its time and each image's archive size. Cold/warm build times: bench/images.py.

With --kubeconfig: the same on that cluster (it must have the worker image), without the
images part. Prints a table and writes bench/out/real_node.json. A benchmark: no timed
asserts; exit code 1 only when a step fails (a timeout), with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import signal
import statistics
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import kubernetes  # noqa: E402
import redis  # noqa: E402
import urllib3  # noqa: E402
from e2e_helpers import (  # noqa: E402
    Kubectl,
    OperatorProcess,
    install_crd,
    make_secret,
    taskqueue_manifest,
    wait_for,
)
from rq import Queue  # noqa: E402
from rq.command import send_stop_job_command  # noqa: E402
from rq.exceptions import InvalidJobOperation  # noqa: E402
from rq.job import Job  # noqa: E402
from taskqueue_contract.keys import Keys  # noqa: E402
from testbed.cluster import Cluster, open_cluster  # noqa: E402
from testbed.pod_network import use_pod_redis_host  # noqa: E402
from testbed.redis_server import RedisServer  # noqa: E402

OUT = ROOT / "bench" / "out" / "real_node.json"
NOOP = "taskqueue_worker.examples.noop"
SLEEP = "taskqueue_worker.examples.sleep"
SLEEP_COMMAND = ["python", "-c", "import time; time.sleep(600)"]
TASKQUEUE_LABEL = "taskqueue.dev/taskqueue"
BENCH_LABEL = "bench.taskqueue.dev/pod-start"
KEDA_POLLING_INTERVAL = 30.0  # KEDA's documented default pollingInterval (context only)
SCALING = {"maxReplicas": 2, "scaleDownDelay": "2s", "pollInterval": "1s"}
POLL = 0.02  # job status polling


class BenchFailure(RuntimeError):
    """A step did not complete (a timeout): the run fails with this reason."""


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so every finally block runs


# --- watches -----------------------------------------------------------------------------


@dataclass
class PodTimes:
    """When this process first saw each state of one pod (time.monotonic())."""

    labels: dict[str, str]
    seen: float
    running: float | None = None
    ready: float | None = None
    terminated: float | None = None
    deleting: float | None = None
    deleted: float | None = None
    restarts: int = 0
    exited: bool = False
    deaths: list[float] = field(default_factory=list)
    """When the watch first told of each container death (exit or restart)."""


class Watcher:
    """A watch of one kind in one namespace, in a thread, re-listing after a gap; `record`
    is called with (event type, object, time of receipt) under `changed`'s lock."""

    def __init__(self, api: kubernetes.client.ApiClient, kind: str, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        if kind == "pods":
            self.list_fn = kubernetes.client.CoreV1Api(api).list_namespaced_pod
        else:
            self.list_fn = kubernetes.client.AppsV1Api(api).list_namespaced_deployment
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)

    def start(self) -> Watcher:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(15)
        self.api.close()

    def record(self, event: str, obj: Any, now: float) -> None:
        raise NotImplementedError

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until `predicate` (called under the lock) returns something truthy."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                result = predicate()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    last = f" (last watch error: {self.error})" if self.error else ""
                    raise BenchFailure(f"timed out after {timeout:.0f}s waiting for {what}{last}")
                self.changed.wait(min(left, 0.5))

    def _run(self) -> None:
        version: str | None = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    listing = self.list_fn(self.namespace, _request_timeout=30)
                    now = time.monotonic()
                    version = listing.metadata.resource_version
                    with self.changed:
                        for item in listing.items:
                            self.record("LISTED", item, now)
                        self.changed.notify_all()
                watch = kubernetes.watch.Watch()
                for event in watch.stream(
                    self.list_fn,
                    self.namespace,
                    resource_version=version,
                    timeout_seconds=5,
                    allow_watch_bookmarks=True,
                    _request_timeout=30,
                ):
                    now = time.monotonic()
                    if event["type"] == "BOOKMARK":
                        version = event["raw_object"]["metadata"]["resourceVersion"]
                    else:
                        version = event["object"].metadata.resource_version
                        with self.changed:
                            self.record(event["type"], event["object"], now)
                            self.changed.notify_all()
                    if self.stopping.is_set():
                        watch.stop()
                        break
            except kubernetes.client.exceptions.ApiException as error:
                if error.status == 410:
                    version = None  # too old: list again
                else:
                    self.error = error
                    time.sleep(0.5)
            except (urllib3.exceptions.HTTPError, OSError) as error:
                self.error = error
                time.sleep(0.5)


class PodWatcher(Watcher):
    def __init__(self, api: kubernetes.client.ApiClient, namespace: str) -> None:
        super().__init__(api, "pods", namespace)
        self.pods: dict[str, PodTimes] = {}

    def record(self, event: str, pod: Any, now: float) -> None:
        name = pod.metadata.name
        times = self.pods.get(name)
        if times is None:
            times = self.pods[name] = PodTimes(dict(pod.metadata.labels or {}), now)
        if event == "DELETED":
            times.deleted = times.deleted or now
        if pod.metadata.deletion_timestamp is not None:
            times.deleting = times.deleting or now
        status = pod.status
        if status is None:
            return
        if status.phase == "Running" and times.running is None:
            times.running = now
        ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
        if ready and times.ready is None:
            times.ready = now
        exited = any(s.state and s.state.terminated for s in status.container_statuses or [])
        if exited and times.terminated is None:
            times.terminated = now
        restarts = sum(s.restart_count or 0 for s in status.container_statuses or [])
        if restarts > times.restarts or (exited and not times.exited):
            times.deaths.append(now)
        times.restarts, times.exited = max(restarts, times.restarts), exited

    def live(self, label: str, value: str) -> list[str]:
        """Pods with `label` = `value` not deleted yet (call under the lock)."""
        return [
            name
            for name, times in self.pods.items()
            if times.labels.get(label) == value and times.deleted is None
        ]


class DeploymentWatcher(Watcher):
    def __init__(self, api: kubernetes.client.ApiClient, namespace: str) -> None:
        super().__init__(api, "deployments", namespace)
        self.replicas: dict[str, list[tuple[float, int]]] = {}  # changes of spec.replicas

    def record(self, event: str, deployment: Any, now: float) -> None:
        if event == "DELETED":
            return
        history = self.replicas.setdefault(deployment.metadata.name, [])
        value = int(deployment.spec.replicas or 0)
        if not history or history[-1][1] != value:
            history.append((now, value))

    def current(self, name: str) -> int | None:
        history = self.replicas.get(name)
        return history[-1][1] if history else None

    def first_change(self, name: str, after: float, test: Callable[[int], bool]) -> float | None:
        for when, value in self.replicas.get(name, []):
            if when >= after and test(value):
                return when
        return None


# --- figures -----------------------------------------------------------------------------


def summary(values: list[float | None]) -> dict[str, float | int | None]:
    """n, p50, p95 and max of the values measured (None: not seen)."""
    seen = sorted(v for v in values if v is not None)
    if not seen:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    p95 = statistics.quantiles(seen, n=20, method="inclusive")[18] if len(seen) > 1 else seen[0]
    return {"n": len(seen), "p50": statistics.median(seen), "p95": p95, "max": seen[-1]}


def ratio(numerator: dict[str, Any], denominator: dict[str, Any], key: str = "p50") -> float | None:
    if numerator.get(key) is None or not denominator.get(key):
        return None
    return float(numerator[key]) / float(denominator[key])


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def since(start: float, end: float | None) -> float | None:
    return None if end is None else end - start


# --- 1. pod start ------------------------------------------------------------------------


def worker_pod_spec(kube: Kubectl, redis_queue: str, timeout: float) -> dict[str, Any]:
    """The pod spec the operator renders for a worker (a TaskQueue with `replicas: 0`)."""
    manifest = taskqueue_manifest("podspec", queues=[redis_queue], replicas=0)
    kube.apply(manifest)
    deadline = time.monotonic() + timeout
    deployment = None
    while deployment is None:
        deployment = kube.get("deployment", "podspec-workers")
        if deployment is None and time.monotonic() > deadline:
            raise BenchFailure(f"the operator made no Deployment for a TaskQueue in {timeout}s")
        time.sleep(0.2)
    kube.run("delete", "taskqueue", "podspec", "--wait=false", check=False)
    return dict(deployment["spec"]["template"]["spec"])


def baseline_pod_spec(worker: dict[str, Any]) -> dict[str, Any]:
    """The same pod, its container only sleeping: no probes, no worker."""
    spec = copy.deepcopy(worker)
    container = spec["containers"][0]
    container["command"] = list(SLEEP_COMMAND)
    for key in ("args", "readinessProbe", "livenessProbe", "startupProbe"):
        container.pop(key, None)
    return spec


@dataclass
class PodStart:
    kind: str
    name: str
    running: float | None
    ready: float | None
    gone: float | None  # delete call -> pod object gone (context)


def start_one_pod(
    core: kubernetes.client.CoreV1Api,
    pods: PodWatcher,
    namespace: str,
    kind: str,
    index: int,
    spec: dict[str, Any],
    timeout: float,
) -> PodStart:
    name = f"bench-{kind}-{index}"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        # Not the TaskQueue labels: no ReplicaSet adopts it, the operator ignores it.
        "metadata": {"name": name, "labels": {BENCH_LABEL: kind}},
        "spec": spec,
    }
    created = time.monotonic()
    core.create_namespaced_pod(namespace, body)

    def ready() -> bool:
        times = pods.pods.get(name)
        return bool(times and times.ready and times.running)

    try:
        pods.wait(ready, timeout, f"pod {name} Running and Ready")
    finally:
        times = pods.pods.get(name)
        deleting = time.monotonic()
        # The sleeping baseline is PID 1 without a SIGTERM handler: it ignores SIGTERM.
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=2)
    pods.wait(lambda: pods.pods[name].deleted, timeout, f"pod {name} deleted")
    assert times is not None
    return PodStart(
        kind,
        name,
        since(created, times.running),
        since(created, times.ready),
        since(deleting, pods.pods[name].deleted),
    )


def pod_start(
    cluster: Cluster, kube: Kubectl, pods: PodWatcher, count: int, timeout: float
) -> dict[str, Any]:
    worker = worker_pod_spec(kube, f"bench-pods-{kube.namespace[-6:]}", timeout)
    specs = {"worker": worker, "baseline": baseline_pod_spec(worker)}
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    samples: list[PodStart] = []
    for index in range(count):
        for kind, spec in specs.items():  # alternating: the machine's noise hits both
            sample = start_one_pod(core, pods, kube.namespace, kind, index, spec, timeout)
            samples.append(sample)
            print(
                f"pod {sample.name}: Running {seconds(sample.running)}s "
                f"Ready {seconds(sample.ready)}s",
                flush=True,
            )
    core.api_client.close()
    result: dict[str, Any] = {"samples": [asdict(s) for s in samples]}
    for kind in specs:
        mine = [s for s in samples if s.kind == kind]
        result[kind] = {
            "running": summary([s.running for s in mine]),
            "ready": summary([s.ready for s in mine]),
            "deleted": summary([s.gone for s in mine]),
        }
    result["ratio_running"] = ratio(result["worker"]["running"], result["baseline"]["running"])
    result["ratio_ready"] = ratio(result["worker"]["ready"], result["baseline"]["ready"])
    result["pod_spec"] = worker
    return result


# --- 2./3. cold start and scale-down ----------------------------------------------------


@dataclass
class JobRun:
    kind: str
    started: float | None
    finished: float | None
    started_polled: bool  # False: the poll missed `started`, taken from the job's started_at
    # Cold runs only: what happened between, from the watches (seconds after the enqueue).
    scaled_up: float | None = None
    pod_running: float | None = None
    pod_ready: float | None = None
    # Scale-down: from replicas -> 0 (the operator's decision).
    finished_to_decision: float | None = None
    decision_to_deleting: float | None = None  # the ReplicaSet marked the pod for deletion
    decision_to_exit: float | None = None
    decision_to_gone: float | None = None
    pods: list[str] = field(default_factory=list)


def run_job(client: redis.Redis, queue: str, kind: str, timeout: float) -> tuple[JobRun, float]:
    """Enqueue a noop job, poll its status every 20 ms until finished."""
    rq_queue = Queue(queue, connection=client)
    enqueued_wall = datetime.now(UTC)
    enqueued = time.monotonic()
    job = rq_queue.enqueue(NOOP)
    started = finished = None
    deadline = enqueued + timeout
    while finished is None:
        status = job.get_status(refresh=True)
        now = time.monotonic()
        if status == "started" and started is None:
            started = now
        elif status == "finished":
            finished = now
        elif status in ("failed", "stopped", "canceled"):
            raise BenchFailure(f"job {job.id} on {queue} ended {status}")
        if now > deadline:
            raise BenchFailure(f"job {job.id} on {queue} not finished after {timeout:.0f}s")
        time.sleep(POLL)
    polled = started is not None
    if started is None:  # ran within one poll: the worker's own timestamp
        fetched = Job.fetch(job.id, connection=client)
        if fetched.started_at is not None:
            at = fetched.started_at
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            started = enqueued + (at - enqueued_wall).total_seconds()
    return JobRun(kind, since(enqueued, started), finished - enqueued, polled), enqueued


def wait_idle(
    deployments: DeploymentWatcher, pods: PodWatcher, taskqueue: str, timeout: float
) -> None:
    name = f"{taskqueue}-workers"
    deployments.wait(lambda: deployments.current(name) == 0, timeout, f"{name} at 0 replicas")
    pods.wait(lambda: not pods.live(TASKQUEUE_LABEL, taskqueue), timeout, f"no {taskqueue} pod")


def wait_warm(pods: PodWatcher, client: redis.Redis, queue: str, timeout: float) -> None:
    pods.wait(
        lambda: any(pods.pods[p].ready for p in pods.live(TASKQUEUE_LABEL, "warm")),
        timeout,
        "the warm worker pod Ready",
    )
    deadline = time.monotonic() + timeout
    while not client.smembers(Keys().queue_workers(queue)):
        if time.monotonic() > deadline:
            raise BenchFailure(f"no worker registered for {queue} after {timeout:.0f}s")
        time.sleep(0.1)


def cold_run(
    client: redis.Redis,
    queue: str,
    deployments: DeploymentWatcher,
    pods: PodWatcher,
    timeout: float,
) -> JobRun:
    name = "cold-workers"
    with pods.changed:
        before = set(pods.pods)
    run, enqueued = run_job(client, queue, "cold", timeout)
    run.scaled_up = since(enqueued, deployments.first_change(name, enqueued, lambda r: r >= 1))
    finished = enqueued + (run.finished or 0)
    decision = deployments.wait(
        lambda: deployments.first_change(name, finished, lambda r: r == 0),
        timeout,
        "the operator's scale-down to 0",
    )
    run.finished_to_decision = decision - finished
    with pods.changed:
        mine = [
            p
            for p in pods.pods
            if p not in before and pods.pods[p].labels.get(TASKQUEUE_LABEL) == "cold"
        ]
    if not mine:
        raise BenchFailure("the cold run's job finished but no new worker pod was seen")
    run.pods = mine
    pods.wait(lambda: all(pods.pods[p].deleted for p in mine), timeout, f"pods {mine} deleted")
    with pods.changed:
        times = [pods.pods[p] for p in mine]
    first = min(times, key=lambda t: t.seen)
    run.pod_running = since(enqueued, first.running)
    run.pod_ready = since(enqueued, first.ready)
    gone = max(t.deleted for t in times if t.deleted is not None)
    run.decision_to_gone = gone - decision
    marked = [t.deleting for t in times]
    if all(marked):
        run.decision_to_deleting = max(m for m in marked if m is not None) - decision
    exits = [t.terminated for t in times]
    if all(exits):
        run.decision_to_exit = max(e for e in exits if e is not None) - decision
    return run


def cold_start(
    cluster: Cluster,
    kube: Kubectl,
    client: redis.Redis,
    deployments: DeploymentWatcher,
    pods: PodWatcher,
    runs: int,
    timeout: float,
) -> dict[str, Any]:
    suffix = kube.namespace[-6:]
    queues = {"cold": f"cold-{suffix}", "warm": f"warm-{suffix}"}
    for taskqueue, minimum in (("cold", 0), ("warm", 1)):
        scaling = {"minReplicas": minimum, **SCALING}
        kube.apply(taskqueue_manifest(taskqueue, queues=[queues[taskqueue]], scaling=scaling))
    wait_warm(pods, client, queues["warm"], timeout)
    run_job(client, queues["warm"], "warm", timeout)  # the chain works; not counted
    samples: list[JobRun] = []
    for index in range(runs):
        wait_idle(deployments, pods, "cold", timeout)
        warm, _ = run_job(client, queues["warm"], "warm", timeout)
        cold = cold_run(client, queues["cold"], deployments, pods, timeout)
        samples += [warm, cold]
        print(
            f"run {index}: cold started {seconds(cold.started)}s finished "
            f"{seconds(cold.finished)}s (scaled up {seconds(cold.scaled_up)}s, pod Running "
            f"{seconds(cold.pod_running)}s, Ready {seconds(cold.pod_ready)}s); warm started "
            f"{seconds(warm.started)}s; scale-down -> exit {seconds(cold.decision_to_exit)}s, "
            f"-> gone {seconds(cold.decision_to_gone)}s",
            flush=True,
        )
    cold_runs = [s for s in samples if s.kind == "cold"]
    warm_runs = [s for s in samples if s.kind == "warm"]
    result: dict[str, Any] = {
        "samples": [asdict(s) for s in samples],
        "cold": {
            "started": summary([s.started for s in cold_runs]),
            "finished": summary([s.finished for s in cold_runs]),
            "scaled_up": summary([s.scaled_up for s in cold_runs]),
            "pod_running": summary([s.pod_running for s in cold_runs]),
            "pod_ready": summary([s.pod_ready for s in cold_runs]),
        },
        "warm": {
            "started": summary([s.started for s in warm_runs]),
            "finished": summary([s.finished for s in warm_runs]),
        },
        "scale_down": {
            "finished_to_decision": summary([s.finished_to_decision for s in cold_runs]),
            "decision_to_deleting": summary([s.decision_to_deleting for s in cold_runs]),
            "decision_to_exit": summary([s.decision_to_exit for s in cold_runs]),
            "decision_to_gone": summary([s.decision_to_gone for s in cold_runs]),
        },
        "settings": {"minReplicas": {"cold": 0, "warm": 1}, **SCALING},
        "keda_default_polling_interval_s": KEDA_POLLING_INTERVAL,
    }
    result["ratio_started"] = ratio(result["cold"]["started"], result["warm"]["started"])
    result["ratio_finished"] = ratio(result["cold"]["finished"], result["warm"]["finished"])
    return result


# --- 5. recovery ------------------------------------------------------------------------


def kill_one(
    cluster: Cluster, kube: Kubectl, client: redis.Redis, pods: PodWatcher, job: Job, timeout: float
) -> dict[str, float]:
    """Kill the process running `job`; seconds until requeued and until the pod watch saw it."""
    wait_for(lambda: job.get_status(refresh=True) == "started", timeout, 0.05, "job started")
    worker = Job.fetch(job.id, connection=client).worker_name
    pod = (client.hget(f"rq:worker:{worker}", "hostname") or b"").decode()
    pid = cluster.container_pid(kube.namespace, pod, "worker")
    if pid is None:
        raise BenchFailure(f"no worker process found for pod {pod}")
    with pods.changed:
        known = len(pods.pods[pod].deaths) if pod in pods.pods else 0
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(
        lambda: (Job.fetch(job.id, connection=client).meta or {}).get("taskqueue_abandoned"),
        timeout,
        0.01,
        "the job requeued by the operator",
    )
    requeued = time.monotonic() - killed
    seen = pods.wait(
        lambda: len(pods.pods[pod].deaths) > known and pods.pods[pod].deaths[known],
        timeout,
        f"the death of {pod} in the pod watch",
    )
    # The other worker has taken it: stop it there, so the next kill finds an idle worker.
    wait_for(lambda: job.get_status(refresh=True) == "started", timeout, 0.05, "job rerun")
    with contextlib.suppress(InvalidJobOperation):
        send_stop_job_command(client, job.id)
    return {"requeued": requeued, "api_death": seen - killed}


def recovery(
    cluster: Cluster,
    kube: Kubectl,
    client: redis.Redis,
    pods: PodWatcher,
    kills: int,
    timeout: float,
) -> dict[str, Any]:
    """SIGKILL the worker process of a busy pod `kills` times: from the kill until the
    operator has requeued its job (the job's `taskqueue_abandoned` mark, polled every
    10 ms). Baseline: until the pod watch tells of the container's death, which no
    controller watching pods can beat (the kubelet's PLEG relists every second)."""
    queue = f"kill-{kube.namespace[-6:]}"
    kube.apply(taskqueue_manifest("kill", queues=[queue], replicas=2))
    rq_queue = Queue(queue, connection=client)
    samples: list[dict[str, float]] = []
    for index in range(kills):
        wait_for(lambda: client.scard(f"rq:workers:{queue}") >= 2, timeout, 0.1, "2 workers")
        sample = kill_one(
            cluster,
            kube,
            client,
            pods,
            rq_queue.enqueue(SLEEP, 30, job_timeout=60, retry=None),
            timeout,
        )
        samples.append(sample)
        print(
            f"kill {index}: death in the pod watch {sample['api_death']:.3f}s, "
            f"job requeued {sample['requeued']:.3f}s",
            flush=True,
        )
    kube.run("delete", "taskqueue", "kill", "--wait=false")
    result: dict[str, Any] = {
        "samples": samples,
        "requeued": summary([s["requeued"] for s in samples]),
        "api_death": summary([s["api_death"] for s in samples]),
    }
    result["ratio"] = ratio(result["requeued"], result["api_death"])
    return result


# --- 4. images ---------------------------------------------------------------------------


def image_figures(cluster: Cluster) -> dict[str, Any]:
    from testbed import images

    started = time.monotonic()
    built = images.ensure_images()
    took = time.monotonic() - started
    loaded = cluster.built_images
    return {
        "ensure_images_s": took,
        "images": [
            {
                "name": image.name,
                "id": image.image_id,
                "mb": image.size / 1e6,
                "cached": image.cached,
                "in_test_bed": loaded.get(image.name) == image.image_id,
            }
            for image in built
        ],
        "build_times": "bench/images.py (cold build vs warm rebuild)"
        if (ROOT / "bench" / "images.py").exists()
        else None,
    }


# --- the table ---------------------------------------------------------------------------


def row(label: str, figures: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    cells = [seconds(figures.get(k)) for k in ("p50", "p95", "max")]
    text = f"  {label:<44}{cells[0]:>9}{cells[1]:>9}{cells[2]:>9}{figures.get('n', 0):>5}"
    if base is not None:
        value = ratio(figures, base)
        text += f"{'-' if value is None else f'{value:.2f}x':>9}"
    return text


def print_table(report: dict[str, Any]) -> None:
    header = f"  {'seconds':<44}{'p50':>9}{'p95':>9}{'max':>9}{'n':>5}{'ratio':>9}"
    up = f", test bed start {report['testbed_start_s']:.0f}s" if "testbed_start_s" in report else ""
    print(f"\nreal-node bench, {report['seconds']:.0f}s in all{up} ({report['machine']})")
    if pods := report.get("pod_start"):
        print("\n1. pod start (create -> ...), ratio worker / baseline at p50")
        print(header)
        for key, what in (("running", "Running"), ("ready", "Ready")):
            base = pods["baseline"][key]
            print(row(f"worker pod -> {what}", pods["worker"][key], base))
            print(row(f"baseline (sleep, no probe) -> {what}", base))
        print(row("(context) delete -> gone, worker", pods["worker"]["deleted"]))
        print(row("(context) delete -> gone, baseline", pods["baseline"]["deleted"]))
    if cold := report.get("cold_start"):
        print("\n2. enqueue -> job ..., ratio cold / warm at p50")
        print(header)
        for key in ("started", "finished"):
            base = cold["warm"][key]
            print(row(f"cold (0 replicas) -> {key}", cold["cold"][key], base))
            print(row(f"warm (1 worker running) -> {key}", base))
        polled = sum(1 for s in cold["samples"] if s["started_polled"])
        print(
            f"  started: seen by the 20 ms poll in {polled} of {len(cold['samples'])} jobs, "
            "else the worker's started_at (a noop runs within one poll)"
        )
        print(row("(cold) enqueue -> Deployment scaled up", cold["cold"]["scaled_up"]))
        print(row("(cold) enqueue -> pod Running", cold["cold"]["pod_running"]))
        print(row("(cold) enqueue -> pod Ready", cold["cold"]["pod_ready"]))
        print(
            f"  context only, not measured: KEDA's default pollingInterval is "
            f"{cold['keda_default_polling_interval_s']:.0f}s (a scaler's check every 30s)"
        )
        print("\n3. idle pod gone after scale-down (scaleDownDelay 2s)")
        print(header)
        down = cold["scale_down"]
        print(row("job finished -> replicas 0 (operator)", down["finished_to_decision"]))
        print(row("replicas 0 -> pod marked for deletion", down["decision_to_deleting"]))
        print(row("replicas 0 -> container exited", down["decision_to_exit"]))
        print(row("replicas 0 -> pod object gone", down["decision_to_gone"]))
    if killed := report.get("recovery"):
        print("\n5. a busy worker's process SIGKILLed -> ..., ratio to the pod watch at p50")
        print(header)
        print(row("job requeued by the operator", killed["requeued"], killed["api_death"]))
        print(row("baseline: death seen in a pod watch", killed["api_death"]))
    if images := report.get("images"):
        print(f"\n4. images: ensure_images() took {images['ensure_images_s']:.1f}s")
        for image in images["images"]:
            state = "cached" if image["cached"] else "rebuilt"
            print(f"  {image['name']:<52}{image['mb']:>8.1f} MB  {state}")
        if images["build_times"]:
            print(f"  cold/warm build times: {images['build_times']}")
    if report.get("error"):
        print(f"\nFAILED: {report['error']}")


# --- main --------------------------------------------------------------------------------


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load {load} at the end"


def bench(cluster: Cluster, options: argparse.Namespace, report: dict[str, Any]) -> None:
    host_ip = cluster.addresses.get("host_ip")
    server = RedisServer(pod_host=host_ip) if host_ip else RedisServer()
    namespace = f"bench-node-{uuid.uuid4().hex[:6]}"
    operator = OperatorProcess(cluster.kubeconfig)
    watchers: list[Watcher] = []
    try:
        server.start()
        client = server.client()
        install_crd(cluster)
        cluster.create_namespace(namespace)
        kube = Kubectl(cluster, namespace)
        make_secret(kube, "redis-url", server.pod_url)
        pods = PodWatcher(cluster.api_client(), namespace).start()
        deployments = DeploymentWatcher(cluster.api_client(), namespace).start()
        watchers += [pods, deployments]
        operator.start()
        if options.pods:
            print(f"pod start: {options.pods} worker + {options.pods} baseline pods", flush=True)
            report["pod_start"] = pod_start(cluster, kube, pods, options.pods, options.timeout)
        if options.runs:
            print(f"cold start: {options.runs} runs (+ as many warm)", flush=True)
            report["cold_start"] = cold_start(
                cluster, kube, client, deployments, pods, options.runs, options.timeout
            )
        if options.kills and cluster.state_dir is not None:
            print(f"recovery: {options.kills} busy workers killed", flush=True)
            report["recovery"] = recovery(
                cluster, kube, client, pods, options.kills, options.timeout
            )
        if cluster.state_dir is not None:
            report["images"] = image_figures(cluster)
        else:
            print("images: skipped (not the test bed)")
    finally:
        operator.stop()
        for watcher in watchers:
            watcher.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        server.cleanup()
        report["operator_log"] = str(operator.log_path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20, help="worker pods (and as many baseline)")
    parser.add_argument("--runs", type=int, default=20, help="cold runs (and as many warm)")
    parser.add_argument(
        "--kills", type=int, default=10, help="busy workers SIGKILLed (test bed only)"
    )
    parser.add_argument("--kubeconfig", type=Path, default=None, help="an existing cluster")
    parser.add_argument("--pod-redis-host", default=None, help="with --kubeconfig: this machine")
    parser.add_argument("--timeout", type=float, default=180.0, help="per step, seconds")
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if options.kubeconfig:
        use_pod_redis_host(options.pod_redis_host, options.kubeconfig)
    report: dict[str, Any] = {"options": {k: str(v) for k, v in vars(options).items()}}
    began = time.monotonic()
    code = 0
    try:
        started = time.monotonic()
        with open_cluster(options.kubeconfig, prefix="tq-node-bench-") as cluster:
            if cluster.state_dir is not None:
                report["testbed_start_s"] = time.monotonic() - started
                print(f"test bed up in {report['testbed_start_s']:.0f}s", flush=True)
            bench(cluster, options, report)
    except BenchFailure as error:
        report["error"] = str(error)
        code = 1
    except Exception as error:  # the test bed, kubectl, Redis...: the same report, failed
        traceback.print_exc()
        report["error"] = f"{type(error).__name__}: {error}"
        code = 1
    finally:
        report["seconds"] = time.monotonic() - began
        report["machine"] = machine()
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    print(f"\nfigures in {OUT.relative_to(ROOT)}; noisy on a busy machine: compare ratios")
    return code


if __name__ == "__main__":
    sys.exit(main())
