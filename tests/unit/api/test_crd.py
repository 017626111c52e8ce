"""The checked-in CRD is generated from the models, and it is a structural schema."""

from __future__ import annotations

import json
from typing import Any

import yaml
from taskqueue_operator.api import crd


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        found += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_checked_in_crds_match_the_models() -> None:
    text = crd.render()
    for path in crd.CRD_PATHS:
        assert path.read_text() == text, f"{path} drifted: run `taskqueue-crd`"
    assert crd.main(["--check"]) == 0


def test_schema_is_structural() -> None:
    schema = crd.openapi_schema()
    for path, node in walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        typed = "type" in node
        escape = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        assert typed or escape, f"{path} has no type"


def test_status_fields_are_all_declared() -> None:
    status = crd.openapi_schema()["properties"]["status"]["properties"]
    for field in (
        "observedGeneration",
        "replicas",
        "desiredReplicas",
        "readyReplicas",
        "pending",
        "running",
        "deadLetters",
        "workers",
        "queues",
        "conditions",
        "lastScaleTime",
        "lastScaleReason",
        "selector",
        "queueNames",
    ):
        assert field in status
    assert "default" not in yaml.safe_dump(crd.openapi_schema()["properties"]["status"])


def test_columns_and_subresources() -> None:
    version = crd.crd()["spec"]["versions"][0]
    names = [c["name"].upper() for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert names == ["QUEUES", "PENDING", "RUNNING", "DEAD", "WORKERS", "DESIRED", "READY", "AGE"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert "status" in version["subresources"]


def test_cross_field_rules_are_cel() -> None:
    text = json.dumps(crd.crd())
    for fragment in (
        "minReplicas <= self.maxReplicas",
        "exists_one",
        "s.queue in self.queues",
        "size(self.metadata.name) + size(s.name)",
    ):
        assert fragment in text


def test_structural_rewrites_optional_and_int_or_string() -> None:
    defs = {"Thing": {"type": "object", "title": "Thing", "properties": {"a": {"type": "string"}}}}
    node = crd.structural(
        {
            "type": "object",
            "properties": {
                "maybe": {"anyOf": [{"$ref": "#/$defs/Thing"}, {"type": "null"}], "default": None},
                "quantity": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "anything": {"type": "object", "additionalProperties": True},
            },
        },
        defs,
    )
    assert node["properties"]["maybe"] == {
        "type": "object",
        "properties": {"a": {"type": "string"}},
    }
    assert node["properties"]["quantity"] == {"x-kubernetes-int-or-string": True}
    assert node["properties"]["anything"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def test_readme_reference_is_generated() -> None:
    from taskqueue_operator.api.reference import update_readme

    readme = crd.REPO_ROOT / "README.md"
    assert update_readme(readme.read_text()) == readme.read_text(), "run `taskqueue-crd`"
