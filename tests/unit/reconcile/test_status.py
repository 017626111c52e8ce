"""Status from observations: counters, conditions, and when to write."""

from __future__ import annotations

from taskqueue_operator.api.models import TaskQueue, TaskQueueStatus
from taskqueue_operator.observation import (
    DeploymentObservation,
    Observation,
    QueueStats,
    RedisObservation,
    WorkerInfo,
)
from taskqueue_operator.reconcile.status import (
    ScaleInfo,
    build_status,
    patch_due,
    status_dict,
)

NOW = 1_800_000_000.0


def observe(
    redis: RedisObservation | None, ready: int = 2, error: str | None = None
) -> Observation:
    deployment = DeploymentObservation(
        exists=True, replicas=2, ready_replicas=ready, updated_replicas=2
    )
    return Observation(NOW, redis, error, deployment)


def redis_with(failed: int = 0) -> RedisObservation:
    return RedisObservation(
        time=NOW,
        queues=(
            QueueStats("high", pending=3, running=1),
            QueueStats("default", pending=17, running=1, scheduled=2, failed=failed),
        ),
        workers=(
            WorkerInfo("w1", "busy", "pod-a", executions=("j1:e1",)),
            WorkerInfo("w2", "busy", "pod-b", executions=("j2:e2",)),
            WorkerInfo("w3", "idle", "pod-c"),
            WorkerInfo("w4", "idle", "pod-d", dead=True),
        ),
    )


def conditions(status: TaskQueueStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions or []}


def test_counts_and_columns(taskqueue: TaskQueue) -> None:
    status = build_status(taskqueue, observe(redis_with()), ScaleInfo(2), None)
    assert (status.pending, status.running, status.scheduled, status.dead_letters) == (20, 2, 2, 0)
    assert status.workers is not None
    assert (status.workers.total, status.workers.busy, status.workers.idle) == (3, 2, 1)
    assert status.queue_names == "high,default"
    assert status.observed_generation == 3
    assert status.selector == "taskqueue.dev/component=worker,taskqueue.dev/taskqueue=backtests"
    assert (status.replicas, status.desired_replicas, status.ready_replicas) == (2, 2, 2)
    assert conditions(status) == {
        "Ready": ("True", "WorkersReady"),
        "Reconciling": ("False", "Reconciled"),
        "Stalled": ("False", "Progressing"),
        "ChildrenApplied": ("True", "Applied"),
        "RedisReachable": ("True", "Connected"),
        "DeadLetters": ("False", "NoFailedJobs"),
        "ScalingLimited": ("False", "FixedReplicas"),
        "WorkersSuspended": ("False", "NotSuspended"),
    }


def test_dead_letters_condition(taskqueue: TaskQueue) -> None:
    status = build_status(taskqueue, observe(redis_with(failed=2)), ScaleInfo(2), None)
    assert status.dead_letters == 2
    assert conditions(status)["DeadLetters"] == ("True", "FailedJobs")
    message = next(c.message for c in status.conditions or [] if c.type == "DeadLetters")
    assert "default=2" in message


def test_redis_outage_keeps_last_counts_and_says_why(taskqueue: TaskQueue) -> None:
    before = build_status(taskqueue, observe(redis_with(failed=1)), ScaleInfo(2), None)
    error = "ConnectionError: Error 111 connecting to redis://u:hunter2@r:6379. Refused."
    after = build_status(taskqueue, observe(None, error=error), ScaleInfo(2), before)
    assert after.pending == 20 and after.dead_letters == 1
    assert conditions(after)["RedisReachable"] == ("False", "ConnectionFailed")
    assert conditions(after)["Ready"] == ("False", "RedisUnreachable")
    text = str(status_dict(after))
    assert "hunter2" not in text and "Refused" in text


def test_transition_time_kept_while_status_holds(taskqueue: TaskQueue) -> None:
    first = build_status(taskqueue, observe(redis_with()), ScaleInfo(2), None)
    later = Observation(
        NOW + 60, redis_with(), None, DeploymentObservation(True, 2, 2, updated_replicas=2)
    )
    second = build_status(taskqueue, later, ScaleInfo(2), first)
    assert [c.last_transition_time for c in first.conditions or []] == [
        c.last_transition_time for c in second.conditions or []
    ]


def test_not_ready_while_workers_start(taskqueue: TaskQueue) -> None:
    status = build_status(taskqueue, observe(redis_with(), ready=1), ScaleInfo(2), None)
    assert conditions(status)["Ready"] == ("False", "WorkersNotReady")


def test_patch_only_on_change_and_counters_throttled() -> None:
    base = {"pending": 1, "conditions": [{"type": "Ready"}], "lastObservedTime": "t1"}
    assert patch_due(None, base, 0, 2.0)
    assert not patch_due(base, {**base, "lastObservedTime": "t2"}, 100, 2.0)
    counters = {**base, "pending": 2}
    assert not patch_due(base, counters, 0.5, 2.0)
    assert patch_due(base, counters, 2.0, 2.0)
    structure = {**base, "conditions": [{"type": "Ready", "status": "False"}]}
    assert patch_due(base, structure, 0.0, 2.0)


def test_evicting_redis_is_a_warning_condition(taskqueue: TaskQueue) -> None:
    import dataclasses

    lru = dataclasses.replace(redis_with(), maxmemory_policy="allkeys-lru", maxmemory=256 << 20)
    status = build_status(taskqueue, observe(lru), ScaleInfo(2), None)
    assert conditions(status)["RedisEvictionSafe"] == ("False", "EvictingPolicy")
    safe = dataclasses.replace(redis_with(), maxmemory_policy="noeviction", maxmemory=0)
    assert conditions(build_status(taskqueue, observe(safe), ScaleInfo(2), None))[
        "RedisEvictionSafe"
    ] == ("True", "NoEviction")
    # CONFIG unreadable (managed Redis): no claim either way.
    assert "RedisEvictionSafe" not in conditions(
        build_status(taskqueue, observe(redis_with()), ScaleInfo(2), None)
    )


def test_the_oldest_pending_job_is_a_timestamp_cleared_with_an_explicit_null(
    taskqueue: TaskQueue,
) -> None:
    waiting = RedisObservation(
        time=NOW,
        queues=(
            QueueStats("high", pending=1, oldest_enqueued_at="2027-01-15T07:59:50.5Z"),
            QueueStats("default", pending=2, oldest_enqueued_at="2027-01-15T07:58:00Z"),
            QueueStats("empty", pending=0, oldest_enqueued_at="2027-01-15T07:00:00Z"),
        ),
    )
    status = build_status(taskqueue, observe(waiting), ScaleInfo(2), None)
    # A date column: kubectl shows its age (2m) at display time, no write per second.
    assert status_dict(status)["oldestPendingSince"] == "2027-01-15T07:58:00Z"
    held = build_status(taskqueue, observe(None, error="down"), ScaleInfo(2), status)
    assert held.oldest_pending_since == "2027-01-15T07:58:00Z", "kept while Redis is away"
    drained = RedisObservation(time=NOW, queues=(QueueStats("high"),))
    empty = status_dict(build_status(taskqueue, observe(drained), ScaleInfo(2), status))
    # A merge patch keeps what it does not name: the field goes as null to be removed.
    assert "oldestPendingSince" in empty and empty["oldestPendingSince"] is None
