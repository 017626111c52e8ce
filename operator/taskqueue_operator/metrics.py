"""Prometheus metrics of the operator, one `/metrics` port for all TaskQueues.

Every name starts with `taskqueue_`: rq-exporter's `rq_jobs` / `rq_workers` carry other
labels, and a Prometheus that scrapes both must not see one name with two label sets
(`taskqueue_jobs{namespace,taskqueue,queue,status}` is ours, `rq_jobs{queue,status}` its).

No `*_created` series: `disable_created_metrics()` below, before any metric exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from taskqueue_operator.observation import Observation

# A `_created` gauge per counter and histogram child doubles the series for nothing (and
# a timestamp-valued gauge confuses every "sum by" over the family).
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
# The counters are events (a scale, a recovery): only the replica that acts counts them.
_TQ = ("namespace", "taskqueue")

REDIS_ERRORS = Counter(
    "taskqueue_redis_errors", "Failed Redis observations.", _TQ, registry=REGISTRY
)
SCALE_EVENTS = Counter(
    "taskqueue_scale_events",
    "Replica changes made by the autoscaler.",
    [*_TQ, "direction"],
    registry=REGISTRY,
)
RECOVERED_JOBS = Counter(
    "taskqueue_recovered_jobs",
    "Jobs of vanished workers handled by the operator, by action.",
    [*_TQ, "action"],
    registry=REGISTRY,
)
DECISION_LATENCY = Histogram(
    "taskqueue_decision_latency_seconds",
    "From the start of an observation to the replica patch it caused.",
    _TQ,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)

# Operator-wide, no TaskQueue label: a thousand TaskQueues must not mean a thousand
# histograms. They tell whether one operator keeps up with its TaskQueues.
_TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TICK_LAG = Histogram(
    "taskqueue_tick_lag_seconds",
    "How late a TaskQueue's scheduled tick started after it was due (the end of its poll "
    "interval): the event loop or its threads are saturated when this grows.",
    buckets=_TICK_BUCKETS,
    registry=REGISTRY,
)
TICK_DURATION = Histogram(
    "taskqueue_tick_duration_seconds",
    "One tick of one TaskQueue: observe, plan, execute, report.",
    buckets=_TICK_BUCKETS,
    registry=REGISTRY,
)


class TickLag:
    """One loop's schedule: when its next tick is due, and how late it started. Only
    ticks that waited out their interval count; a tick woken early by an event had no
    due time."""

    def __init__(self, histogram: Histogram = TICK_LAG) -> None:
        self.histogram = histogram
        self.due_at: float | None = None

    def sleeping_until(self, due_at: float) -> None:
        self.due_at = due_at

    def woken(self) -> None:
        self.due_at = None

    def started(self, now: float) -> float | None:
        """The tick starts now: its lag (also observed), or None when it was not due."""
        if self.due_at is None:
            return None
        lag = max(0.0, now - self.due_at)
        self.due_at = None
        self.histogram.observe(lag)
        return lag


@dataclass(frozen=True)
class TaskQueueSample:
    """What one TaskQueue's last tick saw and planned: the gauges are read from it at
    scrape time, so they can never outlive the loop (a deleted TaskQueue, a removed
    queue, a standby replica that lost the lease)."""

    namespace: str
    name: str
    observation: Observation
    desired_replicas: int
    failure_ratio: float | None = None
    target_queue_seconds: float | None = None
    target_backlog_per_worker: int | None = None
    max_replicas: int | None = None
    """spec.scaling.maxReplicas, or the fixed spec.replicas without autoscaling."""
    pod_start_seconds: float | None = None
    """Median pod start measured by this loop (status.podStart.seconds)."""
    jobs_finished: tuple[tuple[str, int], ...] = ()
    """(queue, total) of the loop's monotonic counters (rates.JobCounters)."""
    jobs_failed: tuple[tuple[str, int], ...] = ()


_JOB_STATUSES = ("queued", "started", "scheduled", "deferred", "failed")


class TaskQueueCollector(Collector):
    """Gauges computed at scrape time from the last plans of the loops that run here."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[TaskQueueSample]] = lambda: ()

    def describe(self) -> list[Metric]:
        return []  # no fixed set: the families depend on the TaskQueues

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "taskqueue_jobs",
            "RQ jobs by queue and status (queued, started, scheduled, deferred, failed).",
            labels=[*_TQ, "queue", "status"],
        )
        workers = GaugeMetricFamily(
            "taskqueue_workers", "RQ workers by state (busy, idle).", labels=[*_TQ, "state"]
        )
        # Counters kept by each loop (exported here, so they vanish with it like the gauges).
        finished = CounterMetricFamily(
            "taskqueue_jobs_finished",
            "Jobs the TaskQueue's workers finished, per queue, since this operator's loop "
            "started (from the workers' successful_job_count). queue is 'a,b' for workers "
            "listening to several queues.",
            labels=[*_TQ, "queue"],
        )
        failed = CounterMetricFamily(
            "taskqueue_jobs_failed",
            "Failed job executions (a retried job counts each failed attempt), per queue, "
            "since this operator's loop started (from the workers' failed_job_count).",
            labels=[*_TQ, "queue"],
        )
        replicas = GaugeMetricFamily(
            "taskqueue_replicas",
            "Worker replicas: desired (decision), current (Deployment spec), ready.",
            labels=[*_TQ, "kind"],
        )
        redis_up = GaugeMetricFamily(
            "taskqueue_redis_up", "1 when the last Redis observation worked.", labels=_TQ
        )
        failure_ratio = GaugeMetricFamily(
            "taskqueue_failure_ratio",
            "failed / (failed + finished) jobs over the last window, from the workers' counters.",
            labels=_TQ,
        )
        queue_wait = GaugeMetricFamily(
            "taskqueue_oldest_job_age_seconds",
            "Age of the oldest pending job of each queue (0 when empty).",
            labels=[*_TQ, "queue"],
        )
        target_wait = GaugeMetricFamily(
            "taskqueue_target_queue_seconds",
            "spec.scaling.targetQueueSeconds (autoscaled TaskQueues): the wait the pool is sized "
            "for and the alerts compare against.",
            labels=_TQ,
        )
        target_backlog = GaugeMetricFamily(
            "taskqueue_target_backlog_per_worker",
            "spec.scaling.targetBacklogPerWorker, where that optional cap is set: at most "
            "one worker per this many pending + running jobs.",
            labels=_TQ,
        )
        max_replicas = GaugeMetricFamily(
            "taskqueue_max_replicas",
            "spec.scaling.maxReplicas, or spec.replicas without autoscaling.",
            labels=_TQ,
        )
        pod_start = GaugeMetricFamily(
            "taskqueue_pod_start_seconds",
            "Median seconds from a worker pod's creation to its RQ worker registered in "
            "Redis, over the last 20 pods this operator saw start.",
            labels=_TQ,
        )
        for sample in self.source():
            labels = [sample.namespace, sample.name]
            if sample.pod_start_seconds is not None:
                pod_start.add_metric(labels, sample.pod_start_seconds)
            observation = sample.observation
            deployment = observation.deployment
            replicas.add_metric([*labels, "desired"], sample.desired_replicas)
            replicas.add_metric([*labels, "current"], deployment.replicas)
            replicas.add_metric([*labels, "ready"], deployment.ready_replicas)
            if sample.target_queue_seconds is not None:
                target_wait.add_metric(labels, sample.target_queue_seconds)
            if sample.target_backlog_per_worker is not None:
                target_backlog.add_metric(labels, sample.target_backlog_per_worker)
            if sample.max_replicas is not None:
                max_replicas.add_metric(labels, sample.max_replicas)
            if sample.failure_ratio is not None:
                failure_ratio.add_metric(labels, sample.failure_ratio)
            for name, total in sample.jobs_finished:
                finished.add_metric([*labels, name], total)
            for name, total in sample.jobs_failed:
                failed.add_metric([*labels, name], total)
            redis = observation.redis
            redis_up.add_metric(labels, 0 if redis is None else 1)
            if redis is None:
                continue
            for queue in redis.queues:
                counts = (
                    queue.pending,
                    queue.running,
                    queue.scheduled,
                    queue.deferred,
                    queue.failed,
                )
                for status, value in zip(_JOB_STATUSES, counts, strict=True):
                    jobs.add_metric([*labels, queue.name, status], value)
                queue_wait.add_metric([*labels, queue.name], queue.oldest_age(observation.time))
            workers.add_metric([*labels, "busy"], redis.busy_workers)
            workers.add_metric([*labels, "idle"], redis.idle_workers)
        yield from (
            jobs,
            workers,
            finished,
            failed,
            replicas,
            redis_up,
            failure_ratio,
            queue_wait,
            target_wait,
            target_backlog,
            max_replicas,
            pod_start,
        )


COLLECTOR = TaskQueueCollector()
REGISTRY.register(COLLECTOR)


def collect_from(source: Callable[[], Iterable[TaskQueueSample]]) -> None:
    """Where the gauges come from: the registry's running loops (none on a standby)."""
    COLLECTOR.source = source


def record_redis_error(namespace: str, name: str) -> None:
    REDIS_ERRORS.labels(namespace, name).inc()


def forget(namespace: str, name: str) -> None:
    """Drop the counters of a deleted TaskQueue, so dashboards do not show ghosts (its
    gauges go with its loop)."""
    for metric in (REDIS_ERRORS, SCALE_EVENTS, RECOVERED_JOBS, DECISION_LATENCY):
        stale = [
            values
            for values in list(metric._metrics)  # prometheus_client keeps children by labels
            if values[:2] == (namespace, name)
        ]
        for values in stale:
            metric.remove(*values)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """The /metrics endpoint (a daemon thread of prometheus_client)."""
    start_http_server(port, addr=address, registry=REGISTRY)
