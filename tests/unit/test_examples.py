"""examples/*.yaml work unchanged on kind and on the test bed: what they name exists, Redis is
set up as RQ needs it, and the test bed provides the image examples/redis.yaml runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from testbed.images import qualified, redis_image, stand_in_specs
from testbed.manifests import DEFAULT_STORAGE_CLASS, POOL_VOLUMES, default_storage

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def test_the_taskqueue_example_brings_the_claim_it_mounts() -> None:
    docs = documents("taskqueue.yaml")
    worker = one(docs, "TaskQueue")["spec"]["worker"]
    claimed = {
        v["persistentVolumeClaim"]["claimName"]
        for v in worker["volumes"]
        if "persistentVolumeClaim" in v
    }
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert claimed and claimed <= set(claims)
    for claim in claims.values():
        assert "storageClassName" not in claim["spec"]  # the cluster's default class binds it
        assert "namespace" not in claim["metadata"]  # next to the TaskQueue


def test_the_redis_example_is_set_up_for_rq() -> None:
    docs = documents("redis.yaml")
    service = one(docs, "Service")
    assert service["metadata"]["name"] == "redis"
    assert [p["port"] for p in service["spec"]["ports"]] == [6379]
    workload = one(docs, "StatefulSet")
    pod = workload["spec"]["template"]["spec"]
    assert (
        service["spec"]["selector"].items()
        <= workload["spec"]["template"]["metadata"]["labels"].items()
    )
    (container,) = pod["containers"]
    command = container["command"]
    assert command[0] == "redis-server"  # not the official image's entrypoint script
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert options["--dir"] == "/data"
    assert container["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    (template,) = workload["spec"]["volumeClaimTemplates"]
    assert "storageClassName" not in template["spec"]
    assert {"name": template["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]


def test_the_test_bed_provides_what_the_examples_need() -> None:
    """The Redis stand-in is imported under the very name examples/redis.yaml runs, and the
    default StorageClass has volumes for every claim of the examples."""
    (container,) = one(documents("redis.yaml"), "StatefulSet")["spec"]["template"]["spec"][
        "containers"
    ]
    assert redis_image() == qualified(container["image"]) == "docker.io/library/redis:7.0"
    assert [spec.name for spec in stand_in_specs()] == [redis_image()]
    storage_class, *volumes = default_storage(["/a", "/b", "/c"])
    annotations = storage_class["metadata"]["annotations"]
    assert annotations["storageclass.kubernetes.io/is-default-class"] == "true"
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    assert {v["spec"]["storageClassName"] for v in volumes} == {DEFAULT_STORAGE_CLASS}
    assert len({v["metadata"]["name"] for v in volumes}) == 3
    claims = [d for d in documents("taskqueue.yaml") if d["kind"] == "PersistentVolumeClaim"]
    claims += one(documents("redis.yaml"), "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert len(claims) < POOL_VOLUMES  # and one to spare


def test_qualified_names() -> None:
    assert qualified("redis:7.0") == "docker.io/library/redis:7.0"
    assert qualified("bitnami/redis:7.0") == "docker.io/bitnami/redis:7.0"
    assert qualified("ghcr.io/a/b:1") == "ghcr.io/a/b:1"
    assert qualified("localhost/a:1") == "localhost/a:1"
