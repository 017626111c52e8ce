"""Does a live object still carry what we want? Subset comparison, pure.

The API server adds defaults (terminationMessagePath, dnsPolicy, ...) and other managers
add their own fields; those are not drift. Drift is a field we set with another value.
"""

from __future__ import annotations

from typing import Any


def drifted_paths(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths where `live` lacks or changes something `desired` sets. Lists compare by index."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "."]
        paths: list[str] = []
        for key, value in desired.items():
            paths += drifted_paths(value, live.get(key), f"{path}.{key}")
        return paths
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [path]
        paths = []
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            paths += drifted_paths(want, have, f"{path}[{index}]")
        return paths
    if desired != live and not _same_scalar(desired, live):
        return [path]
    return []


def _same_scalar(desired: Any, live: Any) -> bool:
    # Quantities and int-or-strings come back as strings ("1" vs 1).
    return live is not None and str(desired) == str(live)


def children_to_delete(live_names: set[str], desired_names: set[str]) -> set[str]:
    """Children we labelled for this TaskQueue that no longer have a desired counterpart."""
    return live_names - desired_names
