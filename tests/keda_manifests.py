"""What a KEDA user writes for RQ workers: a worker Deployment and a ScaledObject on it.

The Deployment's pod template is the one our operator renders for a TaskQueue (same image,
entrypoint, env, probes, security context), so both autoscalers run identical workers,
except for labels of its own and `terminationGracePeriodSeconds`: a Deployment written for
KEDA gets Kubernetes' default, 30 s, where ours covers the job timeout.
"""

from __future__ import annotations

from typing import Any

from e2e_helpers import WORKER_IMAGE
from taskqueue_contract.keys import Keys
from taskqueue_operator.api.models import TaskQueue
from taskqueue_operator.reconcile.workers import desired_deployment

KUBERNETES_DEFAULT_GRACE = 30


def keda_worker_deployment(
    name: str, namespace: str, queue: str, redis_secret: str
) -> dict[str, Any]:
    """`name`'s worker Deployment at 0 replicas, listening on `queue`, Redis URL from the
    Secret `redis_secret` (key `url`), owned by nothing; the worker's job timeout is the
    TaskQueue default (360 s), as on our side."""
    taskqueue = TaskQueue.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": "none"},
            "spec": {
                "redis": {"urlFrom": {"secretKeyRef": {"name": redis_secret, "key": "url"}}},
                "queues": [queue],
                "worker": {"image": WORKER_IMAGE},
            },
        }
    )
    deployment = desired_deployment(taskqueue, 0)
    deployment["metadata"].pop("ownerReferences")
    # Labels of its own: no TaskQueue's (our operator, running beside it in the benchmark,
    # must not take these pods for its workers).
    labels = {"app": f"{name}-worker"}
    deployment["metadata"]["labels"] = labels
    deployment["spec"]["selector"] = {"matchLabels": labels}
    deployment["spec"]["template"]["metadata"]["labels"] = labels
    pod = deployment["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = KUBERNETES_DEFAULT_GRACE
    return deployment


def scaled_object(
    name: str,
    deployment: str,
    redis_address: str,
    queue: str,
    max_replicas: int,
    polling_interval: int | None = None,
    list_length: int = 5,
) -> dict[str, Any]:
    """A ScaledObject with KEDA's redis (list) trigger on RQ's list for `queue`; every
    other field at KEDA's default (pollingInterval 30 s, cooldownPeriod 300 s,
    minReplicaCount 0) unless `polling_interval` is given."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": deployment},
        "maxReplicaCount": max_replicas,
        "triggers": [
            {
                "type": "redis",
                "metadata": {
                    "address": redis_address,
                    "listName": Keys().queue(queue),
                    "listLength": str(list_length),
                },
            }
        ],
    }
    if polling_interval is not None:
        spec["pollingInterval"] = polling_interval
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": spec,
    }
