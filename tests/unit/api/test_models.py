"""The spec models accept what users write and refuse what the CRD refuses."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from taskqueue_operator.api.cron import is_valid_cron
from taskqueue_operator.api.durations import format_duration, parse_duration
from taskqueue_operator.api.models import TaskQueue, TaskQueueSpec

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "taskqueue.yaml"


def minimal_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"redis": {"url": "redis://redis:6379/0"}, "queues": ["default"]}
    spec.update(overrides)
    return spec


def test_example_manifest_parses_with_defaults() -> None:
    body = yaml.safe_load(EXAMPLE.read_text())
    taskqueue = TaskQueue.model_validate(body)
    assert taskqueue.spec.queues == ["high", "backtest-queue", "data_ingestion", "default"]
    assert taskqueue.spec.redis.key_prefix == "rq"
    assert taskqueue.spec.scaling is not None and taskqueue.spec.scaling.max_replicas == 5
    assert taskqueue.spec.schedules[0].retry is not None
    assert taskqueue.spec.worker.job_timeout_seconds == 360


def test_minimal_spec_defaults() -> None:
    spec = TaskQueueSpec.model_validate(minimal_spec())
    assert spec.autoscaling is False
    assert spec.fixed_replicas == 1
    assert spec.worker.worker_class == "fork"
    assert spec.worker.job_timeout == "360s"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"queues": []}, "at least 1"),
        ({"queues": ["a", "a"]}, "must not repeat"),
        ({"queues": ["bad name"]}, "pattern"),
        ({"redis": {}}, "exactly one"),
        ({"redis": {"url": "redis://user:secret@redis:6379"}}, "password"),
        ({"redis": {"url": "http://redis"}}, "pattern"),
        ({"scaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must be <="),
        ({"scaling": {}, "replicas": 2}, "not both"),
        ({"replicas": -1}, "greater than or equal"),
        ({"worker": {"jobTimeout": "-5s"}}, "pattern"),
        ({"worker": {"workerClass": "thread"}}, "fork"),
        ({"unknownField": 1}, "Extra inputs"),
        (
            {"schedules": [{"name": "a", "schedule": "61 * * * *", "function": "m.f"}]},
            "cron",
        ),
        (
            {
                "schedules": [
                    {"name": "a", "schedule": "@daily", "function": "m.f"},
                    {"name": "a", "schedule": "@hourly", "function": "m.f"},
                ]
            },
            "unique",
        ),
        (
            {"schedules": [{"name": "a", "schedule": "@daily", "function": "m.f", "queue": "x"}]},
            "one of spec.queues",
        ),
        ({"schedules": [{"name": "a", "schedule": "@daily", "function": "nodots"}]}, "pattern"),
    ],
)
def test_invalid_specs_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        TaskQueueSpec.model_validate(minimal_spec(**overrides))


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "0 9 * * *", "*/15 0-6 1,15 * MON-FRI", "0 0 ? JAN SUN", "@daily", "5 4 * * 7"],
)
def test_valid_cron(expression: str) -> None:
    assert is_valid_cron(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "@every 5m",
        "TZ=UTC 0 9 * * *",
        "* * * * * *",
    ],
)
def test_invalid_cron(expression: str) -> None:
    assert not is_valid_cron(expression)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("360s", 360), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("1.5m", 90)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5s", "5", "5d", "s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0, 1, 59, 60, 61, 3600, 3661, 0.25):
        assert parse_duration(format_duration(seconds)) == seconds


def test_models_are_immutable() -> None:
    spec = TaskQueueSpec.model_validate(minimal_spec())
    with pytest.raises(pydantic.ValidationError):
        spec.queues = ["x"]  # type: ignore[misc]
    assert copy.deepcopy(spec) == spec


def test_tls_with_a_rediss_url_or_a_secret_url() -> None:
    tls = {
        "caFrom": {"secretKeyRef": {"name": "redis-tls", "key": "ca.crt"}},
        "clientCertificateSecretRef": {"name": "redis-client"},
    }
    inline = TaskQueueSpec.model_validate(
        minimal_spec(redis={"url": "rediss://redis:6380/0", "tls": tls})
    )
    assert inline.redis.tls is not None and inline.redis.tls.ca_from is not None
    assert inline.redis.tls.client_certificate_secret_ref.name == "redis-client"  # type: ignore[union-attr]
    # With urlFrom the scheme is only known at run time: the operator reports a mismatch.
    secret_url = {"urlFrom": {"secretKeyRef": {"name": "r", "key": "url"}}, "tls": {}}
    assert TaskQueueSpec.model_validate(minimal_spec(redis=secret_url)).redis.tls is not None
