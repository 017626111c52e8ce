"""The README's TaskQueue reference, generated from the CRD schema (itself from the models)."""

from __future__ import annotations

from typing import Any

from taskqueue_operator.api.crd import openapi_schema

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


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "minimum" in node or "maximum" in node:
        parts.append(f"{node.get('minimum', '')}..{node.get('maximum', '')}")
    if "default" in node and node["default"] != {}:
        parts.append(f"default `{node['default']}`")
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


def render_reference() -> str:
    spec = openapi_schema()["properties"]["spec"]
    lines = [
        BEGIN,
        "| Field | Type | Description |",
        "|---|---|---|",
        *_rows(spec, "spec", set(spec.get("required") or [])),
        END,
    ]
    return "\n".join(lines)


def update_readme(text: str) -> str:
    """Replace the generated block of the README (between the markers)."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + render_reference() + text[end:]
