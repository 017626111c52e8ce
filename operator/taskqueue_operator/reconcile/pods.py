"""Why worker pods are not running, from their reported status. Pure.

`0/1 workers ready` says nothing a user can act on; the kubelet already said why:
CrashLoopBackOff with the last exit code, ImagePullBackOff, CreateContainerConfigError
(a missing Secret or key), Unschedulable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Waiting reasons that are the normal steps of a start, not problems.
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})


@dataclass(frozen=True)
class PodProblem:
    pod: str
    reason: str
    """The kubelet's (or scheduler's) CamelCase reason: CrashLoopBackOff, ImagePullBackOff..."""
    message: str

    @property
    def summary(self) -> str:
        return f"pod {self.pod}: {self.reason}" + (f" ({self.message})" if self.message else "")


def _last_exit(status: Mapping[str, Any]) -> str:
    terminated = (status.get("lastState") or {}).get("terminated") or {}
    if not terminated:
        return ""
    code = terminated.get("exitCode")
    reason = terminated.get("reason") or ""
    return f"last exit code {code}" + (f": {reason}" if reason else "")


def _container_problem(
    name: str, status: Mapping[str, Any], restarted: bool = True
) -> PodProblem | None:
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    if reason and reason not in _STARTING:
        details = [d for d in (_last_exit(status), waiting.get("message") or "") if d]
        restarts = int(status.get("restartCount") or 0)
        if restarts:
            details.append(f"{restarts} restarts")
        return PodProblem(name, str(reason), "; ".join(details)[:300])
    terminated = state.get("terminated") or {}
    # With restartPolicy Always (a Deployment's pods) the kubelet restarts an exited
    # container at once: one exit (a worker that lost Redis mid-job does that on purpose)
    # is no failure yet, and a repeat shows as CrashLoopBackOff with this exit code.
    if terminated and not restarted and terminated.get("exitCode") not in (None, 0):
        message = f"exit code {terminated.get('exitCode')}"
        if terminated.get("reason"):
            message += f": {terminated['reason']}"
        return PodProblem(name, "ContainerTerminated", message)
    return None


def pod_problems(pods: Mapping[str, Mapping[str, Any]], container: str) -> list[PodProblem]:
    """One problem per pod that has one, sorted by pod name."""
    problems: list[PodProblem] = []
    for name in sorted(pods):
        pod = pods[name]
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue  # going away on purpose
        status = pod.get("status") or {}
        restarted = (pod.get("spec") or {}).get("restartPolicy", "Always") == "Always"
        found: PodProblem | None = None
        for container_status in status.get("containerStatuses") or []:
            if container_status.get("name") == container:
                found = _container_problem(name, container_status, restarted)
        if found is None:
            for condition in status.get("conditions") or []:
                if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                    reason = str(condition.get("reason") or "Unschedulable")
                    found = PodProblem(name, reason, str(condition.get("message") or "")[:300])
        if found is not None:
            problems.append(found)
    return problems
