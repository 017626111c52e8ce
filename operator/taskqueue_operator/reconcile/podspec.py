"""Pod pieces shared by worker and schedule pods: Redis env, security, scratch space."""

from __future__ import annotations

from typing import Any

from taskqueue_contract import env as names
from taskqueue_contract.env import CLIENT_CERTIFICATE_KEYS, TLS_ENV

from taskqueue_operator.api.kubernetes import RESERVED_MOUNT_PATH, RESERVED_VOLUME
from taskqueue_operator.api.models import RedisSpec, WorkerSpec

# The scratch space of the read-only root; the API refuses user volumes by these names.
TMP_VOLUME = RESERVED_VOLUME
TMP_PATH = RESERVED_MOUNT_PATH


def redis_env(redis: RedisSpec) -> list[dict[str, Any]]:
    """REDIS_URL by value or from its Secret (the URL never appears in pod args)."""
    if redis.url_from is not None:
        ref = redis.url_from.secret_key_ref
        url: dict[str, Any] = {
            "name": names.REDIS_URL,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    else:
        url = {"name": names.REDIS_URL, "value": redis.url}
    prefix = {"name": names.KEY_PREFIX, "value": redis.key_prefix}
    return [url, prefix, *redis_tls_env(redis)]


def redis_tls_env(redis: RedisSpec) -> list[dict[str, Any]]:
    """The TLS PEMs as env from their Secrets (the names the worker reads).

    Env, not a Secret volume: it works on every kubelet, and the worker writes the files
    it needs into its /tmp emptyDir. A rotated certificate reaches pods when they restart.
    """
    tls = redis.tls
    if tls is None:
        return []
    refs: list[tuple[str, str, str]] = []
    if tls.ca_from is not None:
        ca = tls.ca_from.secret_key_ref
        refs.append((names.TLS_CA_CERT, ca.name, ca.key))
    if tls.client_certificate_secret_ref is not None:
        name = tls.client_certificate_secret_ref.name
        refs += [
            (env, name, CLIENT_CERTIFICATE_KEYS[argument])
            for env, argument in TLS_ENV.items()
            if argument in CLIENT_CERTIFICATE_KEYS
        ]
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for env, secret, key in refs
    ]


def downward_env() -> list[dict[str, Any]]:
    return [
        {"name": names.POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": names.POD_NAMESPACE,
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
    ]


def container_security_context() -> dict[str, Any]:
    """Passes the `restricted` Pod Security Standard."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def volumes(worker: WorkerSpec) -> list[dict[str, Any]]:
    """The read-only root needs an emptyDir for temp files; then the user's volumes."""
    return [{"name": TMP_VOLUME, "emptyDir": {}}, *(dict(v) for v in worker.volumes)]


def volume_mounts(worker: WorkerSpec) -> list[dict[str, Any]]:
    return [{"name": TMP_VOLUME, "mountPath": TMP_PATH}, *(dict(m) for m in worker.volume_mounts)]


def placement(worker: WorkerSpec) -> dict[str, Any]:
    """Pod-level fields copied from the worker spec only when set."""
    fields: dict[str, Any] = {}
    if worker.service_account_name:
        fields["serviceAccountName"] = worker.service_account_name
    if worker.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": ref.name} for ref in worker.image_pull_secrets]
    if worker.node_selector:
        fields["nodeSelector"] = dict(worker.node_selector)
    if worker.tolerations:
        fields["tolerations"] = [dict(t) for t in worker.tolerations]
    if worker.affinity:
        fields["affinity"] = dict(worker.affinity)
    return fields


def image_fields(worker: WorkerSpec) -> dict[str, Any]:
    fields: dict[str, Any] = {"image": worker.image}
    if worker.image_pull_policy:
        fields["imagePullPolicy"] = worker.image_pull_policy
    return fields


def user_env(worker: WorkerSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The user's env and envFrom, after ours so that they can override defaults."""
    return [dict(e) for e in worker.env], [dict(e) for e in worker.env_from]
