"""The checked-in CRD is generated from the models, and it is a structural schema."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml
from taskqueue_operator.api import crd, cron, models, reference
from taskqueue_operator.api import kubernetes as kube


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
    assert names == [
        "STATUS",
        "QUEUES",
        "PENDING",
        "RUNNING",
        "DEAD",
        "OLDEST",
        "WORKERS",
        "DESIRED",
        "READY",
        "AGE",
    ]
    status = version["additionalPrinterColumns"][0]
    assert status["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert status["type"] == "string"
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


def test_spec_page_reference_is_generated(capsys: pytest.CaptureFixture[str]) -> None:
    assert crd.REFERENCE_DOC == crd.REPO_ROOT / "docs" / "taskqueue-spec.md"
    page = crd.REFERENCE_DOC.read_text()
    # The marker names the flag that prints the block: it exists and prints exactly it.
    assert "taskqueue-crd --reference" in reference.BEGIN
    assert crd.main(["--reference"]) == 0
    block = capsys.readouterr().out.rstrip("\n")
    assert block == crd.render_reference()
    assert block in page, "run `taskqueue-crd`"
    assert reference.update_document(page, block) == page
    # One copy only: the README links to the page instead of holding a second table.
    assert reference.BEGIN not in (crd.REPO_ROOT / "README.md").read_text()


def test_update_document_needs_both_markers() -> None:
    block = crd.render_reference()
    with pytest.raises(ValueError):
        reference.update_document("# a page without markers\n", block)
    stale = f"before\n{reference.BEGIN}\nold\n{reference.END}\nafter\n"
    assert reference.update_document(stale, block) == f"before\n{block}\nafter\n"


def test_reference_prints_yaml_values_not_python() -> None:
    block = crd.render_reference()
    assert "`True`" not in block and "`False`" not in block
    assert "default `true`" in block  # protectBusyWorkers
    assert "default `false`" in block  # schedules[].suspend
    assert 'default `"360s"`' in block


def test_reference_does_not_import_crd() -> None:
    # api/crd.py and api/reference.py used to import each other.
    code = (
        "import sys, taskqueue_operator.api.reference; "
        "sys.exit('taskqueue_operator.api.crd' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _spec() -> dict[str, Any]:
    return crd.openapi_schema()["properties"]["spec"]


def _worker() -> dict[str, Any]:
    return _spec()["properties"]["worker"]["properties"]


def test_embedded_kubernetes_lists_have_real_schemas() -> None:
    worker = _worker()
    for name in ("env", "envFrom", "volumes", "volumeMounts", "tolerations"):
        items = worker[name]["items"]
        assert "x-kubernetes-preserve-unknown-fields" not in items, name
        assert items["type"] == "object" and items["properties"], name
        assert "maxItems" in worker[name], f"{name}: CEL iterates it, so it must be bounded"
    assert worker["env"]["items"]["required"] == ["name"]
    assert worker["volumes"]["items"]["required"] == ["name"]
    assert set(worker["volumeMounts"]["items"]["required"]) == {"name", "mountPath"}
    # Only the opaque volume sources (and affinity) keep unknown fields.
    preserved = [
        path
        for path, node in walk(crd.openapi_schema())
        if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    allowed = {f".spec.worker.volumes[].{n}" for n in kube.OPAQUE_VOLUME_SOURCES} | {
        ".spec.worker.affinity",
        ".spec.schedules[].args[]",
        ".spec.schedules[].kwargs",
    }
    assert set(preserved) <= allowed, set(preserved) - allowed


def test_quantities_are_int_or_string_with_the_grammar() -> None:
    for what in ("limits", "requests"):
        values = _worker()["resources"]["properties"][what]["additionalProperties"]
        assert values == {
            "x-kubernetes-int-or-string": True,
            "minimum": 0,
            "pattern": kube.QUANTITY_PATTERN,
            "maxLength": kube.QUANTITY_MAX_LENGTH,
        }
    sizes = _worker()["volumes"]["items"]["properties"]["emptyDir"]["properties"]["sizeLimit"]
    assert sizes["pattern"] == kube.QUANTITY_PATTERN


def test_cel_iterates_only_bounded_lists_and_maps() -> None:
    # The API server estimates each rule's cost from maxItems / maxProperties / maxLength:
    # every list or map a rule walks must carry a bound (the e2e test installs the CRD,
    # which is where an over-budget rule is refused).
    for path, node in walk(crd.openapi_schema()):
        rules = " ".join(r["rule"] for r in node.get("x-kubernetes-validations", []))
        if ".all(" in rules or ".exists" in rules or ".filter(" in rules:
            if node.get("type") == "array":
                assert "maxItems" in node, path
            if node.get("type") == "object" and "additionalProperties" in node:
                assert "maxProperties" in node, path
    schedule = _spec()["properties"]["schedules"]["items"]["properties"]["schedule"]
    assert schedule["maxLength"] <= 256
    assert _spec()["properties"]["schedules"]["maxItems"] == models.MAX_SCHEDULES


def test_time_zone_rule_lists_the_checked_in_zones() -> None:
    zone = _spec()["properties"]["schedules"]["items"]["properties"]["timeZone"]
    (rule,) = zone["x-kubernetes-validations"]
    assert rule["rule"].startswith("self in [")
    for name in ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"):
        assert f"'{name}'" in rule["rule"]
    assert "Mars/Olympus" not in rule["rule"] and "'Local'" not in rule["rule"]
    assert "self" in rule["messageExpression"]


def test_cron_rules_are_the_python_ones() -> None:
    schedule = _spec()["properties"]["schedules"]["items"]["properties"]["schedule"]
    rules = [r["rule"] for r in schedule["x-kubernetes-validations"]]
    assert rules[0] == f"self.matches(r'{cron.CRON_PATTERN}')"
    assert rules[1] == cron.CRON_RANGE_RULE


def test_condition_types_are_documented() -> None:
    conditions = crd.openapi_schema()["properties"]["status"]["properties"]["conditions"]
    item = conditions["items"]["properties"]
    for kind in ("Ready", "Reconciling", "Stalled", "WorkersSuspended", "ChildrenApplied"):
        assert kind in item["type"]["description"]
    assert "enum" not in item["type"]  # open: an older or newer operator may write others
    assert item["observedGeneration"]["type"] == "integer"
