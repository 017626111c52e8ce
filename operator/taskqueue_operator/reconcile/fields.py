"""Name the user's field in an API server refusal of a generated child. Pure.

The API server names a path in the child we wrote (`spec.template.spec.containers[0].
env[7].name`); the user wrote `spec.worker.env[0].name`. Rather than mirroring every
builder's offsets, we walk the API server's path through the desired child and find the
deepest value that came verbatim from the TaskQueue's spec (provenance by value): the
builders copy the user's lists, objects and scalars as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

# `.name`, `[0]`, `[cpu]`, `[name="worker"]` (server-side apply's list keys).
_SEGMENT = re.compile(
    r"\.?([A-Za-z_$][\w$-]*)|\[(\d+)\]|\[([\w.-]+)=\"?([^\]\"]*)\"?\]|\[([^\]]+)\]"
)
# A path as the API server prints one: starts at spec or metadata of the child.
_PATH = re.compile(r"\.?((?:spec|metadata)(?:\.[A-Za-z_$][\w$-]*|\[[^\]\s]+\])+)")
_SCALAR = (str, int, float, bool)


def _segments(path: str) -> list[tuple[str, Any]]:
    """("key", name) | ("index", i) | ("match", (field, value)) per step."""
    steps: list[tuple[str, Any]] = []
    for key, index, match_field, match_value, bracket_key in _SEGMENT.findall(path):
        if key:
            steps.append(("key", key))
        elif index:
            steps.append(("index", int(index)))
        elif match_field:
            steps.append(("match", (match_field, match_value)))
        elif bracket_key:
            steps.append(("key", bracket_key))
    return steps


def _step(value: Any, step: tuple[str, Any]) -> tuple[Any, str] | None:
    kind, arg = step
    if kind == "key" and isinstance(value, dict) and arg in value:
        return value[arg], f".{arg}"
    if kind == "index" and isinstance(value, list) and 0 <= arg < len(value):
        return value[arg], f"[{arg}]"
    if kind == "match" and isinstance(value, list):
        name, wanted = arg
        for item in value:
            if isinstance(item, dict) and str(item.get(name)) == wanted:
                return item, f"[{name}={wanted}]"
    return None


def _origins(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (path, value) in the user's spec."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _origins(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _origins(item, f"{path}[{index}]")


def _fingerprint(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def user_field(spec: dict[str, Any], child: dict[str, Any], api_path: str) -> str | None:
    """The TaskQueue field (`spec.worker.env[0].name`) behind `api_path` in `child`, or
    None when the path leads only through what the operator itself generated."""
    objects: dict[str, str] = {}
    scalars: dict[tuple[str, str], str] = {}
    for path, value in _origins(spec, "spec"):
        if isinstance(value, _SCALAR):
            # A scalar matches only under the same key: "worker" or 1 are everywhere.
            scalars.setdefault((path.rsplit(".", 1)[-1], _fingerprint(value)), path)
        elif value:
            objects.setdefault(_fingerprint(value), path)
    best: str | None = None
    rest = ""
    current: Any = child
    for step in _segments(api_path):
        moved = _step(current, step)
        if moved is None:
            # The path goes beyond what we wrote (the server's own view): keep the tail.
            rest += f".{step[1]}" if step[0] == "key" else f"[{step[1]}]"
            continue
        current, printed = moved
        last_key = step[1] if step[0] == "key" else None
        if isinstance(current, _SCALAR):
            found = scalars.get((str(last_key), _fingerprint(current)))
        else:
            found = objects.get(_fingerprint(current))
        if found is not None:
            best, rest = found, ""
        elif best is not None:
            rest += printed
    return None if best is None else best + rest


def with_user_fields(message: str, spec: dict[str, Any], child: dict[str, Any]) -> str:
    """The API server's message with each child path it names replaced by the user's
    field, where there is one (`spec.worker.env[0].name (spec.template...env[7].name)`)."""

    def replace(match: re.Match[str]) -> str:
        api_path = match.group(1)
        field = user_field(spec, child, api_path)
        return match.group(0) if field is None else f"{field} (in the child: {api_path})"

    return _PATH.sub(replace, message)
