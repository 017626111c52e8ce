"""Names and labels of the objects a TaskQueue owns."""

from __future__ import annotations

from typing import Any

from taskqueue_operator.api.models import API_VERSION, GROUP, KIND, TaskQueue

MANAGED_BY = "taskqueue-operator"
TASKQUEUE_LABEL = f"{GROUP}/taskqueue"
COMPONENT_LABEL = f"{GROUP}/component"
SCHEDULE_LABEL = f"{GROUP}/schedule"
WORKER_COMPONENT = "worker"
SCHEDULE_COMPONENT = "schedule"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
# CronJob-created Jobs carry this label on their pods: unique per schedule slot.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def worker_deployment_name(taskqueue_name: str) -> str:
    return f"{taskqueue_name}-workers"


def cronjob_name(taskqueue_name: str, schedule_name: str) -> str:
    return f"{taskqueue_name}-{schedule_name}"


def worker_selector(taskqueue_name: str) -> dict[str, str]:
    """The Deployment's selector: immutable, so it never changes with the spec."""
    return {TASKQUEUE_LABEL: taskqueue_name, COMPONENT_LABEL: WORKER_COMPONENT}


def selector_string(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def common_labels(taskqueue_name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"taskqueue-{component}",
        "app.kubernetes.io/instance": taskqueue_name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        TASKQUEUE_LABEL: taskqueue_name,
        COMPONENT_LABEL: component,
    }


def owner_reference(taskqueue: TaskQueue) -> dict[str, Any]:
    """Children are garbage-collected with their TaskQueue: no finalizer needed."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": taskqueue.name,
        "uid": taskqueue.metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
