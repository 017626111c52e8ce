"""Which jobs are abandoned: pure rules."""

from __future__ import annotations

from datetime import UTC, datetime

from taskqueue_operator.observation import WorkerInfo
from taskqueue_operator.reconcile.abandoned import container_deaths, find_abandoned


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
