"""Which jobs are abandoned: pure rules."""

from __future__ import annotations

from datetime import UTC, datetime

from taskqueue_operator.observation import WorkerInfo
from taskqueue_operator.reconcile.abandoned import (
    container_deaths,
    find_abandoned,
    stuck_in_transit,
)


def worker(name: str, pod: str, birth: str, *executions: str) -> WorkerInfo:
    return WorkerInfo(name, "busy", pod, executions=executions, birth=birth)


def test_vanished_pod() -> None:
    found = find_abandoned([worker("w", "p", "2026-01-01T00:00:00Z", "j1:e1")], set(), {"p"})
    assert [(a.job_id, a.execution, a.pod) for a in found] == [("j1", "j1:e1", "p")]


def test_job_ids_with_colons() -> None:
    found = find_abandoned([worker("w", "p", "", "a:b:c:e1")], set(), {"p"})
    assert found[0].job_id == "a:b:c"


def test_live_and_unknown_pods_are_left_alone() -> None:
    workers = [worker("w", "p", "", "j:e"), worker("x", "laptop", "", "k:e")]
    assert find_abandoned(workers, {"p"}, set()) == []


def test_replaced_worker_process() -> None:
    old = worker("old", "p", "2026-01-01T00:00:00Z", "j:e")
    new = worker("new", "p", "2026-01-01T00:05:00Z")
    found = find_abandoned([old, new], {"p"}, set())
    assert [a.worker for a in found] == ["old"]


def test_container_death_reported_before_the_restart() -> None:
    pods = {
        "p": {
            "status": {
                "containerStatuses": [
                    {
                        "name": "worker",
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {"finishedAt": "2026-01-01T00:01:00Z", "exitCode": 137}
                        },
                    }
                ]
            }
        }
    }
    deaths = container_deaths(pods, "worker")
    assert deaths == {"p": datetime(2026, 1, 1, 0, 1, tzinfo=UTC)}
    before = worker("w", "p", "2026-01-01T00:00:30.5Z", "j:e")
    after = worker("v", "p", "2026-01-01T00:01:00.2Z", "k:e")
    found = find_abandoned([before, after], {"p"}, set(), deaths)
    assert [a.job_id for a in found] == ["j"]


def test_a_job_in_transit_is_due_after_the_grace_and_forgotten_once_gone() -> None:
    seen, due = stuck_in_transit({}, [("q", "a"), ("q", "b")], now=100.0, grace=15)
    assert seen == {("q", "a"): 100.0, ("q", "b"): 100.0} and due == []
    # "a" started (left the list); "b" is still there; "c" was just taken.
    seen, due = stuck_in_transit(seen, [("q", "b"), ("q", "c")], now=114.9, grace=15)
    assert due == [] and set(seen) == {("q", "b"), ("q", "c")}
    seen, due = stuck_in_transit(seen, [("q", "b"), ("q", "c")], now=115.0, grace=15)
    assert due == [("q", "b")] and seen[("q", "c")] == 114.9


def test_nothing_in_transit_nothing_due() -> None:
    assert stuck_in_transit({("q", "old"): 1.0}, [], now=1000.0) == ({}, [])
