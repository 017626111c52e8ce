"""The dashboard's pure pieces: which conditions need attention, health, queue rows."""

from __future__ import annotations

from taskqueue_operator.dashboard import _health, _queues
from taskqueue_operator.observation import QueueStats, RedisObservation
from taskqueue_operator.reconcile.status import condition_healthy


def test_condition_polarity_follows_kstatus() -> None:
    assert condition_healthy({"type": "Ready", "status": "True"})
    assert not condition_healthy({"type": "Ready", "status": "Unknown"})
    assert condition_healthy({"type": "Stalled", "status": "False"})
    assert not condition_healthy({"type": "DeadLetters", "status": "True"})
    assert not condition_healthy({"type": "RedisReachable", "status": "False"})


def test_health_is_the_ready_condition() -> None:
    status = {"conditions": [{"type": "Ready", "status": "False", "reason": "SecretMissing"}]}
    assert _health(status) == {"ready": False, "reason": "SecretMissing", "message": ""}
    assert _health({})["reason"] == "NotObservedYet"


def test_queue_rows_count_scheduled_with_deferred_and_the_oldest_wait() -> None:
    redis = RedisObservation(
        time=1000.0,
        queues=(
            QueueStats(
                name="high",
                pending=3,
                running=1,
                scheduled=2,
                deferred=1,
                failed=4,
                oldest_enqueued_at="1970-01-01T00:16:10Z",
            ),
        ),
    )
    (row,) = _queues(redis, 1000.0)
    assert row == {
        "name": "high",
        "pending": 3,
        "running": 1,
        "scheduled": 3,
        "failed": 4,
        "finished": 0,
        "oldestWaitSeconds": 30.0,
    }
    assert _queues(None, 0.0) == []
