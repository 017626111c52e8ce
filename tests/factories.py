"""Builders of TaskQueue objects for tests."""

from __future__ import annotations

from typing import Any

from taskqueue_operator.api.models import TaskQueue


def make_taskqueue(**spec_overrides: Any) -> TaskQueue:
    spec: dict[str, Any] = {
        "redis": {"urlFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}},
        "queues": ["high", "default"],
    }
    spec.update(spec_overrides)
    return TaskQueue.model_validate(
        {
            "apiVersion": "taskqueue.dev/v1alpha1",
            "kind": "TaskQueue",
            "metadata": {
                "name": "backtests",
                "namespace": "quant",
                "uid": "uid-1",
                "generation": 3,
            },
            "spec": spec,
        }
    )
