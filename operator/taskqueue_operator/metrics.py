"""Prometheus metrics of the operator, one `/metrics` port for all TaskQueues.

Names overlap rq-exporter's where they mean the same thing (`rq_jobs{queue,status}`,
`rq_workers{state}`), so existing dashboards keep working; ours add the namespace and
TaskQueue labels, and the operator's own series start with `taskqueue_`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from taskqueue_operator.observation import Observation

REGISTRY = CollectorRegistry(auto_describe=True)
_TQ = ("namespace", "taskqueue")

JOBS = Gauge(
    "rq_jobs",
    "RQ jobs by queue and status (queued, started, scheduled, deferred, failed).",
    [*_TQ, "queue", "status"],
    registry=REGISTRY,
)
WORKERS = Gauge("rq_workers", "RQ workers by state.", [*_TQ, "state"], registry=REGISTRY)
REPLICAS = Gauge(
    "taskqueue_replicas",
    "Worker replicas: desired (decision), current (Deployment spec), ready.",
    [*_TQ, "kind"],
    registry=REGISTRY,
)
REDIS_UP = Gauge(
    "taskqueue_redis_up", "1 when the last Redis observation worked.", _TQ, registry=REGISTRY
)
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
FAILURE_RATIO = Gauge(
    "taskqueue_failure_ratio",
    "failed / (failed + finished) jobs over the last window, from the workers' counters.",
    _TQ,
    registry=REGISTRY,
)
QUEUE_WAIT = Gauge(
    "taskqueue_oldest_job_age_seconds",
    "Age of the oldest pending job of each queue (0 when empty).",
    [*_TQ, "queue"],
    registry=REGISTRY,
)

TARGET_WAIT = Gauge(
    "taskqueue_target_queue_seconds",
    "spec.scaling.targetQueueSeconds, when set: the wait the alerts compare against.",
    _TQ,
    registry=REGISTRY,
)

_JOB_STATUSES = ("queued", "started", "scheduled", "deferred", "failed")
_PER_TASKQUEUE = (REPLICAS, REDIS_UP, FAILURE_RATIO)


def record_observation(namespace: str, name: str, observation: Observation, desired: int) -> None:
    """Set the gauges of one TaskQueue from one tick."""
    labels = (namespace, name)
    REPLICAS.labels(*labels, "desired").set(desired)
    REPLICAS.labels(*labels, "current").set(observation.deployment.replicas)
    REPLICAS.labels(*labels, "ready").set(observation.deployment.ready_replicas)
    redis = observation.redis
    if redis is None:
        REDIS_UP.labels(*labels).set(0)
        REDIS_ERRORS.labels(*labels).inc()
        return
    REDIS_UP.labels(*labels).set(1)
    for queue in redis.queues:
        counts = (queue.pending, queue.running, queue.scheduled, queue.deferred, queue.failed)
        for status, value in zip(_JOB_STATUSES, counts, strict=True):
            JOBS.labels(*labels, queue.name, status).set(value)
    WORKERS.labels(*labels, "busy").set(redis.busy_workers)
    WORKERS.labels(*labels, "idle").set(redis.idle_workers)


def record_failure_ratio(namespace: str, name: str, ratio: float | None) -> None:
    if ratio is not None:
        FAILURE_RATIO.labels(namespace, name).set(ratio)


def forget(namespace: str, name: str) -> None:
    """Drop every series of a deleted TaskQueue, so dashboards do not show ghosts."""
    for metric in (
        JOBS,
        WORKERS,
        REPLICAS,
        REDIS_UP,
        REDIS_ERRORS,
        SCALE_EVENTS,
        RECOVERED_JOBS,
        DECISION_LATENCY,
        FAILURE_RATIO,
        QUEUE_WAIT,
    ):
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
