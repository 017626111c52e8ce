"""Which started jobs were abandoned by a worker that no longer exists. Pure.

RQ notices a dead worker's jobs only when its heartbeat and the started entry expire
(90 s to 11 minutes). The operator knows at once: the worker's pod is gone, or the pod's
container was restarted and a newer worker registered under the same pod name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from taskqueue_operator.observation import WorkerInfo


@dataclass(frozen=True)
class AbandonedJob:
    job_id: str
    execution: str
    worker: str
    pod: str
    cause: str


def find_abandoned(
    workers: Iterable[WorkerInfo],
    live_pods: set[str],
    vanished_pods: set[str],
) -> list[AbandonedJob]:
    """Jobs of workers whose pod vanished or whose process was replaced.

    Only pods we saw as ours and then saw deleted count as vanished: a worker on a host
    we never managed (a developer's laptop on the same queues) is never touched.
    """
    workers = list(workers)
    newest_birth: dict[str, str] = {}
    for worker in workers:
        if worker.hostname and not worker.dead:
            newest_birth[worker.hostname] = max(newest_birth.get(worker.hostname, ""), worker.birth)
    found: list[AbandonedJob] = []
    for worker in workers:
        pod = worker.hostname
        if not pod or not worker.executions:
            continue
        if pod in vanished_pods and pod not in live_pods:
            cause = f"pod {pod} is gone"
        elif pod in live_pods and worker.birth and worker.birth < newest_birth.get(pod, ""):
            cause = f"the worker process in pod {pod} was replaced (container restart)"
        else:
            continue
        for execution in worker.executions:
            job_id = execution.rsplit(":", 1)[0]
            found.append(AbandonedJob(job_id, execution, worker.name, pod, cause))
    return found
