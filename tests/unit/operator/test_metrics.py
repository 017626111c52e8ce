"""Metric values for a known state, and cleanup when a TaskQueue goes."""

from __future__ import annotations

from prometheus_client import generate_latest
from taskqueue_operator import metrics
from taskqueue_operator.observation import (
    DeploymentObservation,
    Observation,
    QueueStats,
    RedisObservation,
    WorkerInfo,
)

NOW = 1_800_000_000.0


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def known_state() -> Observation:
    redis = RedisObservation(
        NOW,
        (QueueStats("high", pending=7, running=3, failed=2),),
        (
            WorkerInfo("a", "busy", "p1", executions=("j1:e",)),
            WorkerInfo("b", "busy", "p2", executions=("j2:e",)),
            WorkerInfo("c", "busy", "p3", executions=("j3:e",)),
            WorkerInfo("d", "idle", "p4"),
        ),
    )
    return Observation(NOW, redis, None, DeploymentObservation(True, 4, 3))


def serve(*samples: metrics.TaskQueueSample) -> None:
    metrics.collect_from(lambda: samples)


def test_known_state() -> None:
    serve(metrics.TaskQueueSample("ns", "tq", known_state(), 5, 0.25, 30.0))
    tq = {"namespace": "ns", "taskqueue": "tq"}
    assert sample("taskqueue_jobs", **tq, queue="high", status="queued") == 7
    assert sample("taskqueue_jobs", **tq, queue="high", status="started") == 3
    assert sample("taskqueue_jobs", **tq, queue="high", status="failed") == 2
    assert sample("taskqueue_workers", **tq, state="busy") == 3
    assert sample("taskqueue_workers", **tq, state="idle") == 1
    assert sample("taskqueue_replicas", **tq, kind="desired") == 5
    assert sample("taskqueue_replicas", **tq, kind="current") == 4
    assert sample("taskqueue_replicas", **tq, kind="ready") == 3
    assert sample("taskqueue_redis_up", **tq) == 1
    assert sample("taskqueue_failure_ratio", **tq) == 0.25
    assert sample("taskqueue_target_queue_seconds", **tq) == 30.0
    assert sample("taskqueue_oldest_job_age_seconds", **tq, queue="high") == 0


def test_counters_targets_and_no_created_series_in_the_text() -> None:
    serve(
        metrics.TaskQueueSample(
            "ns",
            "tq",
            known_state(),
            5,
            target_backlog_per_worker=4,
            max_replicas=6,
            jobs_finished=(("high", 12),),
            jobs_failed=(("high", 3),),
        )
    )
    metrics.SCALE_EVENTS.labels("ns", "tq", "up").inc()
    metrics.DECISION_LATENCY.labels("ns", "tq").observe(0.01)
    text = generate_latest(metrics.REGISTRY).decode()
    lines = text.splitlines()
    assert 'taskqueue_jobs_finished_total{namespace="ns",queue="high",taskqueue="tq"} 12.0' in lines
    assert 'taskqueue_jobs_failed_total{namespace="ns",queue="high",taskqueue="tq"} 3.0' in lines
    assert "# TYPE taskqueue_jobs_finished_total counter" in lines
    assert 'taskqueue_target_backlog_per_worker{namespace="ns",taskqueue="tq"} 4.0' in lines
    assert 'taskqueue_max_replicas{namespace="ns",taskqueue="tq"} 6.0' in lines
    assert "_created" not in text
    # Nothing of ours under rq-exporter's names (rq_jobs{queue,status}, rq_workers{state}).
    assert not [line for line in lines if line.split("{")[0].split(" ")[-1].startswith("rq_")]
    metrics.forget("ns", "tq")


def test_redis_down_shows_as_down_with_no_job_series() -> None:
    down = Observation(NOW, None, "refused", DeploymentObservation(True, 2, 2))
    serve(metrics.TaskQueueSample("ns", "err", down, 2))
    assert sample("taskqueue_redis_up", namespace="ns", taskqueue="err") == 0
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'taskqueue_jobs{namespace="ns"' not in text


def test_series_vanish_with_the_loop_and_with_a_removed_queue() -> None:
    """Gauges are read from the running loops: a deleted TaskQueue, a queue removed from
    the spec and a standby replica (no loops) export nothing stale."""
    serve(
        metrics.TaskQueueSample("ns", "gone", known_state(), 1),
        metrics.TaskQueueSample("ns", "kept", known_state(), 1),
    )
    assert 'taskqueue="gone"' in generate_latest(metrics.REGISTRY).decode()
    fewer_queues = RedisObservation(NOW, (QueueStats("low", pending=1),))
    kept = Observation(NOW, fewer_queues, None, DeploymentObservation(True, 1, 1))
    serve(metrics.TaskQueueSample("ns", "kept", kept, 1))
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'taskqueue="gone"' not in text
    assert 'queue="low"' in text and 'queue="high"' not in text
    serve()  # a standby
    assert "taskqueue_jobs{" not in generate_latest(metrics.REGISTRY).decode()


def test_forget_drops_the_counters_of_a_deleted_taskqueue() -> None:
    metrics.SCALE_EVENTS.labels("ns", "gone", "up").inc()
    metrics.SCALE_EVENTS.labels("ns", "kept", "up").inc()
    metrics.forget("ns", "gone")
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'taskqueue="gone"' not in text
    assert 'taskqueue="kept"' in text
