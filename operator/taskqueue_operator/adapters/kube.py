"""Thin async wrappers around the Kubernetes API: apply, patch, delete, read a Secret.

kubernetes_asyncio on the operator's event loop: no thread per call. The sync client in
asyncio's default pool (min(32, cores + 4) threads: 6 on 2 cores) served at most about
a hundred calls a second on a loaded API server, so a thousand TaskQueues took minutes to
settle (bench/many_taskqueues.py, docs/operations.md). Replies are read as JSON, not
into the client's models and back. Every call here is one request. Writes use
server-side apply with our field manager, so fields other managers set (kubectl
annotations, the HPA, users' labels) are left alone and our own are restored.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import kubernetes
import kubernetes_asyncio
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.rest import RESTResponse
from taskqueue_contract.failures import SecretMissing, SecretUnreadable

from taskqueue_operator.api.models import GROUP, PLURAL, VERSION
from taskqueue_operator.reconcile.labels import MANAGED_BY, TASKQUEUE_LABEL

FIELD_MANAGER = "taskqueue-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


def load_config() -> None:
    """The sync client's (leader election, `taskqueue-operator-check`). In a pod: the
    service account. Elsewhere (and in the test bed): KUBECONFIG."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


async def async_api_client() -> kubernetes_asyncio.client.ApiClient:
    """The async client's configuration, found as `load_config` finds the sync one's."""
    configuration = kubernetes_asyncio.client.Configuration()
    try:
        kubernetes_asyncio.config.load_incluster_config(client_configuration=configuration)
    except kubernetes_asyncio.config.ConfigException:
        await kubernetes_asyncio.config.load_kube_config(client_configuration=configuration)
    return kubernetes_asyncio.client.ApiClient(configuration)


async def _json(call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """One request, its reply's JSON. `_preload_content=False`: the client then builds
    none of its models (and checks no status: an error status raises its ApiException
    here). The client's type stubs lack `_content_type`, hence the untyped `call`."""
    response = await call(*args, _preload_content=False, **kwargs)
    data = await response.read()
    if not 200 <= response.status <= 299:
        error = ApiException(http_resp=RESTResponse(response, data))  # type: ignore[arg-type]
        error.body = data.decode(errors="replace")
        raise error
    return json.loads(data) if data else None


class Kube:
    """The operator's Kubernetes client. One instance, shared by all TaskQueue loops."""

    def __init__(self, api_client: kubernetes_asyncio.client.ApiClient) -> None:
        self.api_client = api_client
        self.apps = kubernetes_asyncio.client.AppsV1Api(api_client)
        self.batch = kubernetes_asyncio.client.BatchV1Api(api_client)
        self.core = kubernetes_asyncio.client.CoreV1Api(api_client)
        self.custom = kubernetes_asyncio.client.CustomObjectsApi(api_client)

    @classmethod
    async def connect(cls) -> Kube:
        return cls(await async_api_client())

    async def close(self) -> None:
        await self.api_client.close()

    async def apply(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply of a Deployment or CronJob we own (force: we are the owner).
        `dry_run`: the API server validates and admits it, and stores nothing."""
        meta = body["metadata"]
        call: Callable[..., Awaitable[Any]]
        if body["kind"] == "Deployment":
            call = self.apps.patch_namespaced_deployment
        elif body["kind"] == "CronJob":
            call = self.batch.patch_namespaced_cron_job
        else:
            raise ValueError(f"cannot apply {body['kind']}")
        options = {"dry_run": "All"} if dry_run else {}  # the client refuses dry_run=None
        applied = await _json(
            call,
            meta["name"],
            meta["namespace"],
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
            **options,
        )
        return dict(applied)

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
        listed = await _json(calls[kind], namespace, label_selector=selector)
        return list(listed["items"])

    async def read_taskqueue_uid(self, namespace: str, name: str) -> str | None:
        """The TaskQueue's uid, None when it does not exist (any more)."""
        try:
            body = await _json(
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
            await _json(
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
        await _json(
            self.apps.patch_namespaced_deployment_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
        )

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        try:
            await _json(
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
        await _json(
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
            secret = await _json(self.core.read_namespaced_secret, name, namespace)
        except ApiException as error:  # its text carries every response header: too long
            kind = SecretMissing if error.status == 404 else SecretUnreadable
            raise kind(f"Secret {namespace}/{name}: {error.status} {error.reason}") from None
        data = secret.get("data") or {}
        if key not in data:
            raise SecretMissing(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()
