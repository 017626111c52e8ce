"""Thin async wrappers around the Kubernetes API: apply, patch, delete, read a Secret.

The sync `kubernetes` client runs in worker threads; every call here is one request.
Writes use server-side apply with our field manager, so fields other managers set
(kubectl annotations, the HPA, users' labels) are left alone and our own are restored.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from taskqueue_contract.failures import SecretMissing, SecretUnreadable

from taskqueue_operator.api.models import GROUP, PLURAL, VERSION
from taskqueue_operator.reconcile.labels import MANAGED_BY, TASKQUEUE_LABEL

FIELD_MANAGER = "taskqueue-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


def load_config() -> None:
    """In a pod: the service account. Elsewhere (and in the test bed): KUBECONFIG."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


class Kube:
    """The operator's Kubernetes client. One instance, shared by all TaskQueue loops."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None) -> None:
        self.api_client = api_client or kubernetes.client.ApiClient()
        self.apps = kubernetes.client.AppsV1Api(self.api_client)
        self.batch = kubernetes.client.BatchV1Api(self.api_client)
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)

    async def apply(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply of a Deployment or CronJob we own (force: we are the owner).
        `dry_run`: the API server validates and admits it, and stores nothing."""
        meta = body["metadata"]
        call: Callable[..., object]
        if body["kind"] == "Deployment":
            call = self.apps.patch_namespaced_deployment
        elif body["kind"] == "CronJob":
            call = self.batch.patch_namespaced_cron_job
        else:
            raise ValueError(f"cannot apply {body['kind']}")
        result = await asyncio.to_thread(
            call,
            meta["name"],
            meta["namespace"],
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
            dry_run="All" if dry_run else None,
        )
        return self.api_client.sanitize_for_serialization(result)

    async def list_children(
        self, namespace: str, kind: str, taskqueue: str
    ) -> list[dict[str, Any]]:
        """The Deployments, CronJobs or Pods of one TaskQueue, as the watches select them."""
        calls = {
            "Deployment": self.apps.list_namespaced_deployment,
            "CronJob": self.batch.list_namespaced_cron_job,
            "Pod": self.core.list_namespaced_pod,
        }
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY},{TASKQUEUE_LABEL}={taskqueue}"
        result = await asyncio.to_thread(calls[kind], namespace, label_selector=selector)
        items = self.api_client.sanitize_for_serialization(result)["items"]
        return list(items)

    async def read_taskqueue_uid(self, namespace: str, name: str) -> str | None:
        """The TaskQueue's uid, None when it does not exist (any more)."""
        try:
            body = await asyncio.to_thread(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        if not isinstance(body, dict):
            raise TypeError(f"a TaskQueue read as {type(body).__name__}, not an object")
        return str(body["metadata"]["uid"])

    async def delete_cronjob(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(
                self.batch.delete_namespaced_cron_job,
                name,
                namespace,
                propagation_policy="Background",
            )
        except ApiException as error:
            if error.status != 404:
                raise

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Only `spec.replicas`: a merge patch, so the applied fields keep their owner."""
        await asyncio.to_thread(
            self.apps.patch_namespaced_deployment_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
        )

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        try:
            await asyncio.to_thread(
                self.core.patch_namespaced_pod,
                name,
                namespace,
                {"metadata": {"annotations": annotations}},
                field_manager=FIELD_MANAGER,
                _content_type=MERGE,
            )
        except ApiException as error:
            if error.status != 404:  # the pod went away meanwhile: nothing to protect
                raise

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Replace the status fields we report (merge patch on the status subresource)."""
        await asyncio.to_thread(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
        )

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        except ApiException as error:  # its text carries every response header: too long
            kind = SecretMissing if error.status == 404 else SecretUnreadable
            raise kind(f"Secret {namespace}/{name}: {error.status} {error.reason}") from None
        data = secret.data or {}
        if key not in data:
            raise SecretMissing(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()
