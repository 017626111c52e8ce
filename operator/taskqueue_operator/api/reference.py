"""The TaskQueue field reference: a Markdown table rendered from the CRD's spec schema.

Pure rendering, no imports of our own: `crd.py` passes the schema in (`taskqueue-crd
--reference` prints the block; `taskqueue-crd` writes it into docs/taskqueue-spec.md
between the markers; `--check` and a unit test fail when it drifts). Values print as JSON
(`true`, `"rq"`), as users write them in YAML.
"""

from __future__ import annotations

import json
from typing import Any

BEGIN = "<!-- BEGIN GENERATED REFERENCE (taskqueue-crd --reference) -->"
END = "<!-- END GENERATED REFERENCE -->"


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = node.get("type", "any")
    if kind == "array":
        return f"[]{_type(node.get('items') or {})}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    return str(kind)


def _value(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(_value(v) for v in node["enum"]))
    if "minimum" in node or "maximum" in node:
        parts.append(f"{node.get('minimum', '')}..{node.get('maximum', '')}")
    if "default" in node and node["default"] != {}:
        parts.append(f"default {_value(node['default'])}")
    return "; ".join(parts)


def _rows(node: dict[str, Any], path: str, required: set[str]) -> list[str]:
    rows = []
    for name, child in (node.get("properties") or {}).items():
        field = f"{path}.{name}"
        mark = " (required)" if name in required else ""
        text = (child.get("description") or "").replace("\n", " ").replace("|", "\\|")
        extra = _constraints(child)
        rows.append(f"| `{field}`{mark} | {_type(child)} | {text} {extra}".rstrip() + " |")
        target = child.get("items") if child.get("type") == "array" else child
        if isinstance(target, dict) and target.get("properties"):
            suffix = "[]" if child.get("type") == "array" else ""
            rows += _rows(target, field + suffix, set(target.get("required") or []))
    return rows


def render_reference(spec: dict[str, Any]) -> str:
    """The generated block, markers included, for the spec's structural schema."""
    lines = [
        BEGIN,
        "| Field | Type | Description |",
        "|---|---|---|",
        *_rows(spec, "spec", set(spec.get("required") or [])),
        END,
    ]
    return "\n".join(lines)


def update_document(text: str, block: str) -> str:
    """Replace the generated block of a Markdown document (between the markers) with `block`.
    Raises ValueError when the document lacks either marker."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block + text[end:]
