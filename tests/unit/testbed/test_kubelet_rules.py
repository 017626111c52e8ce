"""The process-kubelet's pure rules: image map, argv and environment as Kubernetes does them."""

from __future__ import annotations

from typing import Any

import pytest
from testbed.config import image_map
from testbed.kubelet import (
    UnresolvableEnv,
    container_argv,
    expand,
    field_value,
    has_token_volume,
    image_key,
    resolve_env,
)

POD: dict[str, Any] = {
    "metadata": {
        "name": "web-1",
        "namespace": "shop",
        "uid": "u-1",
        "labels": {"app": "web"},
        "annotations": {"team": "quant"},
    },
    "spec": {"nodeName": "testbed-node", "serviceAccountName": "runner"},
}
OBJECTS = {
    ("Secret", "db"): {"user": "ada", "pass": "s3cr3t"},
    ("ConfigMap", "cfg"): {"LEVEL": "debug", "MODE": "fast"},
}


def read(kind: str, name: str, optional: bool) -> dict[str, str]:
    """The objects a namespace holds; the same contract as PodRunner.read."""
    if (kind, name) in OBJECTS:
        return OBJECTS[(kind, name)]
    if optional:
        return {}
    raise UnresolvableEnv(f'{kind.lower()} "{name}" not found')


@pytest.mark.parametrize(
    "image",
    [
        "taskqueue-worker",
        "taskqueue-worker:0.1.0",
        "ghcr.io/org/taskqueue-worker:0.1.0",
        "registry.local:5000/a/b/taskqueue-worker@sha256:abc",
        "registry.local:5000/taskqueue-worker:1@sha256:abc",
    ],
)
def test_image_key_is_the_last_path_component_without_tag_or_digest(image: str) -> None:
    assert image_key(image) == "taskqueue-worker"


def test_image_map_defaults_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert image_map()["taskqueue-operator"] == ["taskqueue-operator"]
    monkeypatch.setenv("TESTBED_IMAGE_MAP", '{"redis": ["redis-server"]}')
    mapping = image_map()
    assert mapping["redis"] == ["redis-server"]
    assert mapping["taskqueue-worker"] == ["taskqueue-worker"]
    monkeypatch.setenv("TESTBED_IMAGE_MAP", '{"redis": "redis-server"}')
    with pytest.raises(ValueError, match="argv lists"):
        image_map()


def test_expand_follows_kubernetes() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING)", env) == "$(MISSING)"  # unknown references stay
    assert expand("$$(A)", env) == "$(A)"  # $$ escapes
    assert expand("$A ${B}", env) == "$A ${B}"  # shell syntax is not Kubernetes syntax


def test_args_replace_default_args_and_command_replaces_entrypoint() -> None:
    entrypoint = ["taskqueue-worker"]
    env = {"Q": "high"}
    assert container_argv({}, entrypoint, env) == ["taskqueue-worker"]
    assert container_argv({"args": ["$(Q)", "default"]}, entrypoint, env) == [
        "taskqueue-worker",
        "high",
        "default",
    ]
    assert container_argv({"command": ["python", "-c", "pass"]}, entrypoint, env) == [
        "python",
        "-c",
        "pass",
    ]
    assert container_argv({"command": ["echo"], "args": ["$(Q)"]}, entrypoint, env) == [
        "echo",
        "high",
    ]


def test_env_values_references_and_envfrom_with_prefix() -> None:
    container = {
        "envFrom": [
            {"configMapRef": {"name": "cfg"}, "prefix": "APP_"},
            {"secretRef": {"name": "absent", "optional": True}},
        ],
        "env": [
            {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}},
            {"name": "URL", "value": "postgres://$(USER)@db/$(APP_MODE)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LATE", "value": "$(LATER)"},  # not defined yet: stays as written
            {"name": "LATER", "value": "x"},
            {
                "name": "GONE",
                "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE", "optional": True}},
            },
        ],
    }
    env = resolve_env(POD, container, {"PATH": "/bin"}, read)
    assert env["PATH"] == "/bin"
    assert env["APP_LEVEL"] == "debug" and env["APP_MODE"] == "fast"
    assert env["URL"] == "postgres://ada@db/fast"
    assert env["POD"] == "web-1"
    assert env["LATE"] == "$(LATER)"
    assert "GONE" not in env


@pytest.mark.parametrize(
    "ref",
    [
        {"secretKeyRef": {"name": "db", "key": "nope"}},
        {"secretKeyRef": {"name": "nope", "key": "user"}},
        {"configMapKeyRef": {"name": "nope", "key": "LEVEL"}},
        {"resourceFieldRef": {"resource": "limits.cpu"}},
    ],
)
def test_a_missing_required_reference_refuses_the_container(ref: dict[str, Any]) -> None:
    with pytest.raises(UnresolvableEnv):
        resolve_env(POD, {"env": [{"name": "X", "valueFrom": ref}]}, {}, read)


def test_a_missing_required_envfrom_object_refuses_the_container() -> None:
    with pytest.raises(UnresolvableEnv):
        resolve_env(POD, {"envFrom": [{"secretRef": {"name": "nope"}}]}, {}, read)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "web-1"),
        ("metadata.namespace", "shop"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['app']", "web"),
        ("metadata.annotations['team']", "quant"),
        ("metadata.labels['absent']", ""),
        ("spec.nodeName", "testbed-node"),
        ("spec.serviceAccountName", "runner"),
        ("status.podIP", "127.0.0.1"),
        ("status.hostIP", "127.0.0.1"),
    ],
)
def test_downward_api_fields(path: str, value: str) -> None:
    assert field_value(POD, path) == value


def test_unsupported_field_is_a_config_error() -> None:
    with pytest.raises(UnresolvableEnv):
        field_value(POD, "status.phase")


def test_token_only_when_admission_added_the_token_volume() -> None:
    token = {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}
    api_access = {"name": "kube-api-access-x", "projected": {"sources": [token]}}
    assert has_token_volume({"volumes": [{"name": "data", "emptyDir": {}}, api_access]})
    assert not has_token_volume({"volumes": [{"name": "data", "emptyDir": {}}]})
    assert not has_token_volume({})
