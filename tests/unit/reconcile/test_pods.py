"""Pod problems: what the kubelet said, told once it is one."""

from __future__ import annotations

from taskqueue_operator.reconcile.pods import pod_problems


def pod(state: dict, restart_policy: str | None = None, restarts: int = 0) -> dict:
    body: dict = {
        "status": {
            "containerStatuses": [
                {
                    "name": "worker",
                    "state": state,
                    "restartCount": restarts,
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}
                    if restarts
                    else {},
                }
            ]
        }
    }
    if restart_policy:
        body["spec"] = {"restartPolicy": restart_policy}
    return body


def test_one_exit_of_a_restarted_container_is_no_problem_yet() -> None:
    exited = {"terminated": {"exitCode": 1, "reason": "Error"}}
    assert pod_problems({"w": pod(exited)}, "worker") == [], "the kubelet restarts it at once"
    (problem,) = pod_problems({"w": pod(exited, "Never")}, "worker")
    assert (problem.reason, problem.message) == ("ContainerTerminated", "exit code 1: Error")


def test_a_crash_loop_is_told_with_the_last_exit_code() -> None:
    looping = pod({"waiting": {"reason": "CrashLoopBackOff"}}, restarts=2)
    (problem,) = pod_problems({"w": looping}, "worker")
    assert problem.reason == "CrashLoopBackOff"
    assert problem.message == "last exit code 3: Error; 2 restarts"
    starting = pod({"waiting": {"reason": "ContainerCreating"}})
    assert pod_problems({"w": starting}, "worker") == []
