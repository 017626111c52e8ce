"""The desired worker Deployment: a pure function of the TaskQueue and the replica count."""

from __future__ import annotations

import math
from typing import Any

from taskqueue_contract import env as names

from taskqueue_operator.api.models import TaskQueue
from taskqueue_operator.reconcile import podspec
from taskqueue_operator.reconcile.labels import (
    WORKER_COMPONENT,
    common_labels,
    owner_reference,
    worker_deployment_name,
    worker_selector,
)

WORKER_CONTAINER = "worker"
WORKER_ENTRYPOINT = ["taskqueue-worker"]
# Time for the warm shutdown after the job itself: RQ's cleanup and exit.
SHUTDOWN_MARGIN_SECONDS = 30


def termination_grace_seconds(job_timeout_seconds: float) -> int:
    """Longer than the longest job, so a scale-down never interrupts one."""
    return math.ceil(job_timeout_seconds) + SHUTDOWN_MARGIN_SECONDS


def worker_args(taskqueue: TaskQueue) -> list[str]:
    worker = taskqueue.spec.worker
    if worker.args is not None:
        return list(worker.args)
    return ["--worker-class", worker.worker_class, *taskqueue.spec.queues]


def worker_container(taskqueue: TaskQueue) -> dict[str, Any]:
    spec = taskqueue.spec
    worker = spec.worker
    env, env_from = podspec.user_env(worker)
    probe_command = [*WORKER_ENTRYPOINT, "--probe"]
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        **podspec.image_fields(worker),
        "command": list(worker.command) if worker.command is not None else WORKER_ENTRYPOINT,
        "args": worker_args(taskqueue),
        "env": [
            *podspec.redis_env(spec.redis),
            *podspec.downward_env(),
            {"name": names.TASKQUEUE_NAME, "value": taskqueue.name},
            {"name": names.WORKER_CLASS, "value": worker.worker_class},
            # The worker caps every job's timeout at this: the grace period covers it.
            {"name": names.JOB_TIMEOUT, "value": str(math.ceil(worker.job_timeout_seconds))},
            {"name": names.TMPDIR, "value": podspec.TMP_PATH},
            # Only when more than one: a TaskQueue without `processes` keeps its pod
            # template, so upgrading the operator rolls no Deployment.
            *(
                [{"name": names.PROCESSES, "value": str(worker.processes)}]
                if worker.processes > 1
                else []
            ),
            *env,
        ],
        # Exec probes: the worker image has no shell and needs no open port.
        # Ready also needs Redis: a worker that lost its connection takes no jobs.
        "readinessProbe": {
            "exec": {"command": [*probe_command, "--ready"]},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {
            "exec": {"command": [*probe_command, "--max-age", "120"]},
            "periodSeconds": 30,
            "timeoutSeconds": 10,
            "failureThreshold": 4,
        },
        "securityContext": podspec.container_security_context(),
        "volumeMounts": podspec.volume_mounts(worker),
    }
    if env_from:
        container["envFrom"] = env_from
    if worker.resources is not None:
        container["resources"] = worker.resources.model_dump(exclude_none=True)
    return container


def desired_deployment(taskqueue: TaskQueue, replicas: int) -> dict[str, Any]:
    """The worker Deployment. `replicas` comes from the scaler (or spec.replicas)."""
    worker = taskqueue.spec.worker
    name = taskqueue.name
    labels = common_labels(name, WORKER_COMPONENT)
    pod_labels = {**(worker.pod_labels or {}), **labels}
    pod_metadata: dict[str, Any] = {"labels": pod_labels}
    if worker.pod_annotations:
        pod_metadata["annotations"] = dict(worker.pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": worker_deployment_name(name),
            "namespace": taskqueue.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(taskqueue)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": worker_selector(name)},
            "revisionHistoryLimit": 3,
            # Start new workers before old ones drain: no capacity dip on a rollout.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": pod_metadata,
                "spec": {
                    **podspec.placement(worker),
                    "terminationGracePeriodSeconds": termination_grace_seconds(
                        worker.job_timeout_seconds
                    ),
                    "enableServiceLinks": False,
                    # pause is PID 1, not our entrypoint: the kernel drops a SIGTERM
                    # sent to a PID 1 without a handler, so one that came while Python
                    # started (a pod scaled away at once) was lost, and the pod lived
                    # on, a registered worker, for its whole grace period.
                    "shareProcessNamespace": True,
                    "automountServiceAccountToken": False,
                    "securityContext": podspec.pod_security_context(),
                    "containers": [worker_container(taskqueue)],
                    "volumes": podspec.volumes(worker),
                },
            },
        },
    }
