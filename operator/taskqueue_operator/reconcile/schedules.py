"""The desired CronJobs: one per schedule, each running the enqueue entrypoint."""

from __future__ import annotations

import json
from typing import Any

from taskqueue_contract import env as names
from taskqueue_contract.durations import parse_duration, whole_seconds

from taskqueue_operator.api.models import ScheduleSpec, TaskQueue
from taskqueue_operator.reconcile import podspec
from taskqueue_operator.reconcile.labels import (
    JOB_NAME_LABEL,
    SCHEDULE_COMPONENT,
    SCHEDULE_LABEL,
    common_labels,
    cronjob_name,
    owner_reference,
)

ENQUEUE_CONTAINER = "enqueue"
ENQUEUE_ENTRYPOINT = ["taskqueue-enqueue"]
HISTORY_LIMIT = 3
BACKOFF_LIMIT = 3
DEFAULT_STARTING_DEADLINE_SECONDS = 300
FINISHED_JOB_TTL_SECONDS = 86400


def _seconds(duration: str) -> str:
    return str(whole_seconds(parse_duration(duration)))


def enqueue_args(taskqueue: TaskQueue, schedule: ScheduleSpec) -> list[str]:
    queue = schedule.queue or taskqueue.spec.queues[0]
    job_timeout = schedule.job_timeout or taskqueue.spec.worker.job_timeout
    args = [
        "--function",
        schedule.function,
        "--queue",
        queue,
        "--args",
        json.dumps(schedule.args, separators=(",", ":")),
        "--kwargs",
        json.dumps(schedule.kwargs, separators=(",", ":"), sort_keys=True),
        "--job-timeout",
        _seconds(job_timeout),
    ]
    if schedule.retry is not None:
        args += ["--retry-max", str(schedule.retry.max)]
        if schedule.retry.intervals:
            args += ["--retry-intervals", ",".join(str(i) for i in schedule.retry.intervals)]
    if schedule.result_ttl is not None:
        args += ["--result-ttl", _seconds(schedule.result_ttl)]
    if schedule.failure_ttl is not None:
        args += ["--failure-ttl", _seconds(schedule.failure_ttl)]
    return args


def enqueue_env(taskqueue: TaskQueue) -> list[dict[str, Any]]:
    """Redis plus the idempotency key: namespace/job name is unique per schedule slot."""
    env, _ = podspec.user_env(taskqueue.spec.worker)
    return [
        *podspec.redis_env(taskqueue.spec.redis),
        *podspec.downward_env(),
        {
            "name": names.JOB_NAME,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}},
        },
        {
            "name": names.IDEMPOTENCY_KEY,
            "value": f"$({names.POD_NAMESPACE})/$({names.JOB_NAME})",
        },
        {"name": names.TMPDIR, "value": podspec.TMP_PATH},
        *env,
    ]


def desired_cronjob(taskqueue: TaskQueue, schedule: ScheduleSpec) -> dict[str, Any]:
    worker = taskqueue.spec.worker
    labels = {**common_labels(taskqueue.name, SCHEDULE_COMPONENT), SCHEDULE_LABEL: schedule.name}
    _, env_from = podspec.user_env(worker)
    container: dict[str, Any] = {
        "name": ENQUEUE_CONTAINER,
        **podspec.image_fields(worker),
        "command": ENQUEUE_ENTRYPOINT,
        "args": enqueue_args(taskqueue, schedule),
        "env": enqueue_env(taskqueue),
        "securityContext": podspec.container_security_context(),
        "volumeMounts": podspec.volume_mounts(worker),
    }
    if env_from:
        container["envFrom"] = env_from
    cron_spec: dict[str, Any] = {
        "schedule": schedule.schedule,
        "suspend": schedule.suspend,
        # One enqueue per slot: never two pods of the same schedule at once.
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": schedule.starting_deadline_seconds
        or DEFAULT_STARTING_DEADLINE_SECONDS,
        "successfulJobsHistoryLimit": HISTORY_LIMIT,
        "failedJobsHistoryLimit": HISTORY_LIMIT,
        "jobTemplate": {
            "metadata": {"labels": labels},
            "spec": {
                "backoffLimit": BACKOFF_LIMIT,
                "ttlSecondsAfterFinished": FINISHED_JOB_TTL_SECONDS,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        **podspec.placement(worker),
                        "restartPolicy": "Never",
                        "enableServiceLinks": False,
                        # pause is PID 1, not our entrypoint: the kernel drops a SIGTERM
                        # sent to a PID 1 without a handler, so one that came while Python
                        # started (a pod scaled away at once) was lost, and the pod lived
                        # on, a registered worker, for its whole grace period.
                        "shareProcessNamespace": True,
                        "automountServiceAccountToken": False,
                        "securityContext": podspec.pod_security_context(),
                        "containers": [container],
                        "volumes": podspec.volumes(worker),
                    },
                },
            },
        },
    }
    if schedule.time_zone:
        cron_spec["timeZone"] = schedule.time_zone
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(taskqueue.name, schedule.name),
            "namespace": taskqueue.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(taskqueue)],
        },
        "spec": cron_spec,
    }


def desired_cronjobs(taskqueue: TaskQueue) -> dict[str, dict[str, Any]]:
    """All CronJobs by name; any other CronJob labelled with this TaskQueue is stale."""
    return {
        cronjob_name(taskqueue.name, s.name): desired_cronjob(taskqueue, s)
        for s in taskqueue.spec.schedules
    }
