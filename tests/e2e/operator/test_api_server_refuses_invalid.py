"""The real API server refuses each invalid manifest on `kubectl apply`, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_helpers import Kubectl
from invalid_manifests import CASES, VALID_SPEC, invalid_spec, manifest

pytestmark = pytest.mark.e2e


def test_the_valid_base_is_accepted(kube: Kubectl, crd_installed: None) -> None:
    result = kube.apply(manifest("valid-base", VALID_SPEC))
    assert "created" in result.stdout or "configured" in result.stdout


@pytest.mark.parametrize(("case", "changes", "field"), CASES, ids=[c[0] for c in CASES])
def test_refused_with_the_field_named(
    kube: Kubectl, crd_installed: None, case: str, changes: dict[str, Any], field: str
) -> None:
    result = kube.apply(manifest(f"bad-{case}"[:40], invalid_spec(changes)), check=False)
    assert result.returncode != 0, f"{case} was accepted: {result.stdout}"
    assert field in result.stderr, f"{case}: {field!r} not named in: {result.stderr}"
    assert kube.get("taskqueue", f"bad-{case}"[:40]) is None
