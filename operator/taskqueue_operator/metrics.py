"""Prometheus metrics of the operator, one `/metrics` port for all TaskQueues.

Names overlap rq-exporter's where they mean the same thing (`rq_jobs{queue,status}`,
`rq_workers{state}`), so existing dashboards keep working; ours add the namespace and
TaskQueue labels, and the operator's own series start with `taskqueue_`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from taskqueue_operator.observation import Observation

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


_JOB_STATUSES = ("queued", "started", "scheduled", "deferred", "failed")


class TaskQueueCollector(Collector):
    """Gauges computed at scrape time from the last plans of the loops that run here."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[TaskQueueSample]] = lambda: ()

    def describe(self) -> list[Metric]:
        return []  # no fixed set: the families depend on the TaskQueues

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "rq_jobs",
            "RQ jobs by queue and status (queued, started, scheduled, deferred, failed).",
            labels=[*_TQ, "queue", "status"],
        )
        workers = GaugeMetricFamily("rq_workers", "RQ workers by state.", labels=[*_TQ, "state"])
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
            "spec.scaling.targetQueueSeconds, when set: the wait the alerts compare against.",
            labels=_TQ,
        )
        for sample in self.source():
            labels = [sample.namespace, sample.name]
            observation = sample.observation
            deployment = observation.deployment
            replicas.add_metric([*labels, "desired"], sample.desired_replicas)
            replicas.add_metric([*labels, "current"], deployment.replicas)
            replicas.add_metric([*labels, "ready"], deployment.ready_replicas)
            if sample.target_queue_seconds is not None:
                target_wait.add_metric(labels, sample.target_queue_seconds)
            if sample.failure_ratio is not None:
                failure_ratio.add_metric(labels, sample.failure_ratio)
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
        yield from (jobs, workers, replicas, redis_up, failure_ratio, queue_wait, target_wait)


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
