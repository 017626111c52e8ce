"""Which started jobs were abandoned by a worker that no longer exists. Pure.

RQ notices a dead worker's jobs only when its heartbeat and the started entry expire
(90 s to 11 minutes). The operator knows at once: the worker's pod is gone, its worker
container is not running (the kubelet's first report of the death), or it was restarted
and the worker was born before the running process, or a newer worker holds its slot
of the pod (the pod's supervisor restarted that work loop; see
`taskqueue_contract.worker_names`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from taskqueue_contract import timestamps
from taskqueue_contract.worker_names import slot_of

from taskqueue_operator.observation import WorkerInfo

AbandonedPolicy = Literal["requeue", "fail"]
"""What becomes of an abandoned job: `spec.scaling.abandonedJobs`."""


@dataclass(frozen=True)
class AbandonedJob:
    job_id: str
    execution: str
    worker: str
    pod: str
    cause: str


_parse_time = timestamps.parse


def container_deaths(pods: Mapping[str, Mapping[str, Any]], container: str) -> dict[str, datetime]:
    """When each pod's worker container last died (from its reported status).

    A worker registered before that moment belonged to the dead process: the kubelet
    reports the death at once, long before a restarted worker registers.
    """
    deaths: dict[str, datetime] = {}
    for name, pod in pods.items():
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != container:
                continue
            for state in (status.get("state") or {}, status.get("lastState") or {}):
                finished = (state.get("terminated") or {}).get("finishedAt")
                moment = _parse_time(finished) if finished else None
                if moment and (name not in deaths or moment > deaths[name]):
                    deaths[name] = moment
    return deaths


def worker_alive_since(
    pods: Mapping[str, Mapping[str, Any]], container: str
) -> dict[str, datetime | None]:
    """For each pod whose worker container has died: since when its live process runs
    (the current container's `startedAt`), or None while no process runs (terminated,
    or waiting to restart). A worker of that pod born earlier died with the old process.

    The kubelet's times have whole seconds. `finishedAt` (the death) could not tell a
    worker born in the same second as the kill from a live one: a death seconds after the
    pod started was then missed until the restart. The current process's start is safe to
    compare with: a worker of the new process is born after it, hence after its floor.
    """
    alive: dict[str, datetime | None] = {}
    for name, pod in pods.items():
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != container:
                continue
            state = status.get("state") or {}
            died_before = bool((status.get("lastState") or {}).get("terminated")) or bool(
                status.get("restartCount")
            )
            if state.get("terminated") or (state.get("waiting") and died_before):
                alive[name] = None
            elif state.get("running") and died_before:
                started = _parse_time(state["running"].get("startedAt"))
                if started is not None:
                    alive[name] = started
    return alive


def worker_died(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, container: str
) -> bool:
    """Whether a pod event tells of a worker death the loop should act on at once (rather
    than at its next poll): the pod went, or its worker container has a newer death."""
    if before is None:
        return False  # a pod we never saw had no worker of ours to recover
    if after is None:
        return True
    old = container_deaths({"pod": before}, container).get("pod")
    new = container_deaths({"pod": after}, container).get("pod")
    return new is not None and (old is None or new > old)


def find_abandoned(
    workers: Iterable[WorkerInfo],
    live_pods: set[str],
    vanished_pods: set[str],
    alive_since: dict[str, datetime | None] | None = None,
) -> list[AbandonedJob]:
    """Jobs of workers whose pod vanished or whose process was replaced.

    Only pods we saw as ours and then saw deleted count as vanished: a worker on a host
    we never managed (a developer's laptop on the same queues) is never touched.
    """
    workers = list(workers)
    # A pod runs spec.worker.processes loops at once: only a newer worker of the same
    # slot replaced one (its siblings are concurrent, each with a birth of its own).
    newest_birth: dict[tuple[str, int], str] = {}
    for worker in workers:
        if worker.hostname and not worker.dead:
            loop = (worker.hostname, slot_of(worker.name, worker.hostname))
            newest_birth[loop] = max(newest_birth.get(loop, ""), worker.birth)
    found: list[AbandonedJob] = []
    for worker in workers:
        pod = worker.hostname
        if not pod or not worker.executions:
            continue
        loop = (pod, slot_of(worker.name, pod))
        born = _parse_time(worker.birth) if worker.birth else None
        restarted = alive_since is not None and pod in alive_since
        since = alive_since.get(pod) if alive_since is not None else None
        if pod in vanished_pods and pod not in live_pods:
            cause = f"pod {pod} is gone"
        elif pod in live_pods and restarted and (since is None or (born and born < since)):
            cause = f"the worker container of pod {pod} died"
        elif pod in live_pods and worker.birth and worker.birth < newest_birth.get(loop, ""):
            cause = f"the worker process in pod {pod} was replaced (restart of loop {loop[1]})"
        else:
            continue
        for execution in worker.executions:
            job_id = execution.rsplit(":", 1)[0]
            found.append(AbandonedJob(job_id, execution, worker.name, pod, cause))
    return found


# A live worker holds a job in RQ's intermediate list for the milliseconds between its
# dequeue and the job's start (a fork). Seen there this long, its worker died meanwhile.
IN_TRANSIT_GRACE_SECONDS = 15.0
InTransit = tuple[str, str]  # (queue, job id)


def stuck_in_transit(
    first_seen: dict[InTransit, float],
    observed: Iterable[InTransit],
    now: float,
    grace: float = IN_TRANSIT_GRACE_SECONDS,
) -> tuple[dict[InTransit, float], list[InTransit]]:
    """(when each observed job was first seen, the ones stuck for `grace`).

    RQ returns such a job only in a worker's maintenance pass, every 10 minutes, and
    then fails it after a minute more; the job never started, so putting it back on its
    queue runs it exactly once.
    """
    seen = {item: first_seen.get(item, now) for item in observed}
    due = sorted(item for item, since in seen.items() if now - since >= grace)
    return seen, due
