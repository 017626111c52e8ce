"""Kubernetes objects the test bed, the e2e tests and the demo all make: a Service in front
of a server on this machine (no selector: an EndpointSlice names the address), a local
PersistentVolume on the node with its claim, and the test bed's default StorageClass with
its pool of local volumes. Plain dicts, no I/O."""

from __future__ import annotations

from typing import Any

from testbed.network import NODE_NAME

Manifest = dict[str, Any]


def selectorless_service(
    name: str,
    address: str,
    ports: list[dict[str, Any]],
    namespace: str | None = None,
    cluster_ip: str | None = None,
) -> list[Manifest]:
    """`name`'s Service and the EndpointSlice that sends it to `address`. Each port is a
    Service port (`port`, optional `targetPort`, `name`, `protocol`); the slice uses the
    target port, which is what kube-proxy forwards to."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {"ports": ports}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    slice_ports = [
        {
            k: v
            for k, v in {**p, "port": p.get("targetPort", p["port"])}.items()
            if k != "targetPort"
        }
        for p in ports
    ]
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec},
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                **metadata,
                "name": f"{name}-host",
                "labels": {
                    "kubernetes.io/service-name": name,
                    "endpointslice.kubernetes.io/managed-by": "taskqueue-testbed",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": slice_ports,
        },
    ]


def host_service(
    name: str,
    address: str,
    port: int,
    service_port: int | None = None,
    namespace: str | None = None,
) -> list[Manifest]:
    """`name:<service_port>` in the cluster -> `address:port` on this machine (TCP)."""
    ports = [{"port": service_port or port, "targetPort": port}]
    return selectorless_service(name, address, ports, namespace)


def _local_pv(name: str, path: str, storage_class: str, capacity: str, **extra: Any) -> Manifest:
    """A local PersistentVolume at `path` on the test bed's node."""
    affinity = {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
    metadata = {"name": name, **extra.pop("metadata", {})}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": metadata,
        "spec": {
            "capacity": {"storage": capacity},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            **extra,
            "local": {"path": path},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [affinity]}]}},
        },
    }


def local_volume(name: str, path: str, claim: str, namespace: str) -> list[Manifest]:
    """A local PersistentVolume at `path` on the test bed's node, bound to `claim`."""
    return [
        _local_pv(name, path, "local", "1Gi", claimRef={"namespace": namespace, "name": claim}),
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "local",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]


# The test bed's default StorageClass: what a claim without storageClassName gets (kind's
# default class has the same name). There is no dynamic provisioner: the class binds claims
# to a small pool of local volumes made at start (see `default_storage`).
DEFAULT_STORAGE_CLASS = "standard"
POOL_VOLUMES = 4
POOL_CAPACITY = "10Gi"  # nominal: a local volume is a directory, nothing enforces a size


def default_storage(paths: list[str]) -> list[Manifest]:
    """The default StorageClass (no provisioner, WaitForFirstConsumer: the scheduler binds a
    claim to a volume when its first pod is placed, as with kind's local-path) and one
    local PersistentVolume of that class per directory on the node. Retain: a volume whose
    claim was deleted is not handed to another one (the test bed is thrown away whole)."""
    storage_class: Manifest = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": DEFAULT_STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }
    volumes = [
        _local_pv(
            f"testbed-volume-{index}",
            path,
            DEFAULT_STORAGE_CLASS,
            POOL_CAPACITY,
            metadata={"labels": {"app.kubernetes.io/managed-by": "taskqueue-testbed"}},
        )
        for index, path in enumerate(paths)
    ]
    return [storage_class, *volumes]


def object_list(items: list[Manifest]) -> Manifest:
    """One `kubectl apply -f -` for several objects."""
    return {"apiVersion": "v1", "kind": "List", "items": items}
