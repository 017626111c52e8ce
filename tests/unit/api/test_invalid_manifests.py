"""The operator's models refuse every manifest the API server refuses (same table)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from invalid_manifests import CASES, VALID_SPEC, invalid_spec, manifest
from taskqueue_operator.api.models import TaskQueue, TaskQueueSpec


def test_the_valid_base_is_valid() -> None:
    TaskQueueSpec.model_validate(VALID_SPEC)


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize(("case", "changes", "field"), CASES, ids=[c[0] for c in CASES])
def test_models_refuse(case: str, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        TaskQueue.model_validate(manifest("backtests-quant", invalid_spec(changes)))
