"""Which jobs are abandoned: pure rules."""

from __future__ import annotations

from datetime import UTC, datetime

from taskqueue_operator.observation import WorkerInfo
from taskqueue_operator.reconcile.abandoned import (
    container_deaths,
    find_abandoned,
    stuck_in_transit,
    worker_alive_since,
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
    alive = worker_alive_since(pods, "worker")
    assert alive == {"p": None}, "waiting to restart: no live worker process"
    before = worker("w", "p", "2026-01-01T00:00:30.5Z", "j:e")
    found = find_abandoned([before], {"p"}, set(), alive)
    assert [a.job_id for a in found] == ["j"]


def container(state: dict, last: dict | None = None, restarts: int = 0) -> dict:
    status = {"name": "worker", "state": state, "restartCount": restarts}
    if last:
        status["lastState"] = last
    return {"status": {"containerStatuses": [status]}}


def test_a_worker_killed_in_the_second_it_was_born_is_found_at_the_first_report() -> None:
    # finishedAt has whole seconds: 00:00:05 for a kill at 00:00:05.9 of a worker born at
    # 00:00:05.4. The container not running is what tells: no worker of it lives.
    dying = container({"terminated": {"exitCode": 137, "finishedAt": "2026-01-01T00:00:05Z"}})
    young = worker("w", "p", "2026-01-01T00:00:05.4Z", "j:e")
    alive = worker_alive_since({"p": dying}, "worker")
    assert [a.job_id for a in find_abandoned([young], {"p"}, set(), alive)] == ["j"]


def test_after_a_restart_only_workers_of_the_old_process_are_abandoned() -> None:
    restarted = container(
        {"running": {"startedAt": "2026-01-01T00:00:09Z"}},
        {"terminated": {"finishedAt": "2026-01-01T00:00:05Z"}},
        restarts=1,
    )
    old = worker("w", "p", "2026-01-01T00:00:01.0Z", "j:e")
    new = worker("v", "p", "2026-01-01T00:00:09.3Z", "k:e")
    alive = worker_alive_since({"p": restarted}, "worker")
    assert alive == {"p": datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC)}
    assert [a.job_id for a in find_abandoned([old, new], {"p"}, set(), alive)] == ["j"]
    first_run = container({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    assert worker_alive_since({"p": first_run}, "worker") == {}, "never died: not listed"
    starting = container({"waiting": {"reason": "ContainerCreating"}})
    assert worker_alive_since({"p": starting}, "worker") == {}


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


def test_worker_died_wakes_on_a_new_container_death_or_a_pod_gone() -> None:
    from taskqueue_operator.reconcile.abandoned import worker_died

    def pod(*finished: str) -> dict:
        states = [{"terminated": {"finishedAt": f}} for f in finished]
        status = {"name": "worker", "state": {"running": {}}}
        if states:
            status["lastState"] = states[-1]
        return {"status": {"containerStatuses": [status]}}

    assert not worker_died(None, pod(), "worker"), "a pod never seen had none of our workers"
    assert worker_died(pod(), None, "worker"), "the pod went"
    assert not worker_died(pod(), pod(), "worker"), "a status update without a death"
    assert worker_died(pod(), pod("2026-12-02T05:00:00Z"), "worker")
    assert not worker_died(pod("2026-12-02T05:00:00Z"), pod("2026-12-02T05:00:00Z"), "worker")
    assert worker_died(pod("2026-12-02T05:00:00Z"), pod("2026-12-02T05:01:00Z"), "worker")


def test_concurrent_loops_of_one_pod_are_not_replacements_of_each_other() -> None:
    # Three loops of one pod, born at different moments, all busy: none was replaced.
    loops = [
        worker(f"p-{slot}-0a1b2c3d", "p", f"2026-01-01T00:0{slot}:00Z", f"j{slot}:e")
        for slot in range(3)
    ]
    assert find_abandoned(loops, {"p"}, set()) == []


def test_a_loop_restarted_in_its_slot_abandons_the_old_loops_job_only() -> None:
    old = worker("p-1-aaaaaaaa", "p", "2026-01-01T00:00:00Z", "j:e")
    sibling = worker("p-0-bbbbbbbb", "p", "2026-01-01T00:00:01Z", "k:e")  # older than `new`
    new = worker("p-1-cccccccc", "p", "2026-01-01T00:05:00Z")
    found = find_abandoned([old, sibling, new], {"p"}, set())
    assert [(a.worker, a.job_id) for a in found] == [("p-1-aaaaaaaa", "j")]
    assert "loop 1" in found[0].cause
