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


def test_known_state() -> None:
    metrics.record_observation("ns", "tq", known_state(), desired=5)
    tq = {"namespace": "ns", "taskqueue": "tq"}
    assert sample("rq_jobs", **tq, queue="high", status="queued") == 7
    assert sample("rq_jobs", **tq, queue="high", status="started") == 3
    assert sample("rq_jobs", **tq, queue="high", status="failed") == 2
    assert sample("rq_workers", **tq, state="busy") == 3
    assert sample("rq_workers", **tq, state="idle") == 1
    assert sample("taskqueue_replicas", **tq, kind="desired") == 5
    assert sample("taskqueue_replicas", **tq, kind="current") == 4
    assert sample("taskqueue_replicas", **tq, kind="ready") == 3
    assert sample("taskqueue_redis_up", **tq) == 1


def test_redis_error_counts_and_keeps_last_values() -> None:
    before = sample("taskqueue_redis_errors_total", namespace="ns", taskqueue="err") or 0
    down = Observation(NOW, None, "refused", DeploymentObservation(True, 2, 2))
    metrics.record_observation("ns", "err", down, desired=2)
    assert sample("taskqueue_redis_up", namespace="ns", taskqueue="err") == 0
    assert sample("taskqueue_redis_errors_total", namespace="ns", taskqueue="err") == before + 1


def test_forget_removes_every_series_of_a_taskqueue() -> None:
    metrics.record_observation("ns", "gone", known_state(), desired=1)
    metrics.record_observation("ns", "kept", known_state(), desired=1)
    metrics.forget("ns", "gone")
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'taskqueue="gone"' not in text
    assert 'taskqueue="kept"' in text
