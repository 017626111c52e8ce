"""The spec models accept what users write and refuse what the CRD refuses."""

from __future__ import annotations

import copy
import random
import re
import warnings
import zoneinfo
from fractions import Fraction
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from taskqueue_contract.durations import format_duration, parse_duration
from taskqueue_operator.api import cron
from taskqueue_operator.api.cron import is_valid_cron
from taskqueue_operator.api.kubernetes import parse_quantity, resource_name_error
from taskqueue_operator.api.models import TaskQueue, TaskQueueSpec
from taskqueue_operator.api.timezones import TIME_ZONES

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "taskqueue.yaml"


def minimal_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"redis": {"url": "redis://redis:6379/0"}, "queues": ["default"]}
    spec.update(overrides)
    return spec


def test_example_manifest_parses_with_defaults() -> None:
    body = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "TaskQueue")
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
            {"schedules": [{"name": "a", "schedule": "30-10 * * * *", "function": "m.f"}]},
            "start is after its end",
        ),
        (
            {
                "schedules": [
                    {
                        "name": "a",
                        "schedule": "@daily",
                        "function": "m.f",
                        "timeZone": "Mars/Olympus",
                    }
                ]
            },
            "unknown time zone",
        ),
        ({"worker": {"resources": {"limits": {"cpu": "lots"}}}}, "quantity"),
        ({"worker": {"env": [{"name": "A=B"}]}}, "pattern"),
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
    [
        "* * * * *",
        "0 9 * * *",
        "*/15 0-6 1,15 * MON-FRI",
        "0 0 ? JAN SUN",
        "@daily",
        "@midnight",
        "5 4 * * 6",
        "10-30 * * * *",
        "30-30 * * * *",
        "5/15 * * * *",
        "? ? ? ? ?",
        "007 08 01 01 00",
        "0 0 1 jan-Dec sun-SAT",
        "0 0 1 FEB-NOV/2 *",
        "*/100 * * * *",
        "  0 9 * * *  ",
        "0\t9 * * *",
        "@every 5m",
        "@every 1h30m",
        "@every 1.5h",
        "@every 500ms",
    ],
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
        "@every 5",
        "@every",
        "@every -5m",
        "@DAILY",
        "@daily ",
        "@reboot",
        "TZ=UTC 0 9 * * *",
        "CRON_TZ=UTC 0 9 * * *",
        "* * * * * *",
        # robfig/cron's day of week is 0-6 (7 is refused by the API server).
        "5 4 * * 7",
        "* * * * 0-7",
        # Reversed ranges: "beginning of range beyond end of range".
        "30-10 * * * *",
        "* 23-1 * * *",
        "* * 31-1 * *",
        "* * * DEC-JAN *",
        "* * * 12-1 *",
        "* * * * SAT-SUN",
        "1,30-10 * * * *",
        # Names only where the field takes them.
        "MON * * * *",
        "* * * JAN-MON *",
        "1-2-3 * * * *",
        "1,,2 * * * *",
        "*-5 * * * *",
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


def test_embedded_lists_stay_the_dicts_the_user_wrote() -> None:
    env = [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    volumes = [{"name": "d", "nfs": {"server": "s", "path": "/x"}}]
    resources = {"limits": {"cpu": "500m", "memory": 1024}}
    spec = TaskQueueSpec.model_validate(
        minimal_spec(worker={"env": env, "volumes": volumes, "resources": resources})
    )
    assert spec.worker.env == env and isinstance(spec.worker.env[0], dict)
    assert spec.worker.volumes == volumes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Expected `EnvVar`" serializer warning
        dumped = spec.worker.model_dump(by_alias=True)
    assert dumped["env"] == env and dumped["volumes"] == volumes
    assert spec.worker.resources is not None
    assert spec.worker.resources.model_dump(exclude_none=True) == resources


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("500m", Fraction(1, 2)),
        ("1.5", Fraction(3, 2)),
        (".5", Fraction(1, 2)),
        ("1.", 1),
        ("+2", 2),
        ("2Ki", 2048),
        ("1Gi", 2**30),
        ("3k", 3000),
        ("1e3", 1000),
        ("1E-3", Fraction(1, 1000)),
        ("5n", Fraction(5, 10**9)),
        ("7u", Fraction(7, 10**6)),
        (12, 12),
    ],
)
def test_parse_quantity(text: str | int, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["lots", "", "-1", "1GB", "1.5.5", "1 Gi", "e3", "1e", "Gi", -1])
def test_parse_quantity_refuses(text: str | int) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_time_zones_are_what_the_api_server_takes() -> None:
    part = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")  # batch validation's validTimeZoneCharacters
    assert "UTC" in TIME_ZONES and "Europe/Berlin" in TIME_ZONES
    assert list(TIME_ZONES) == sorted(set(TIME_ZONES))
    for name in TIME_ZONES:
        assert name.lower() != "local"
        assert all(part.match(p) and not p.startswith("-") for p in name.split("/")), name
        zoneinfo.ZoneInfo(name)  # the operator (and the worker's enqueuer) can load it too
    for name in ("Mars/Olympus", "Local", "localtime", ""):
        assert name not in TIME_ZONES


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("cpu", True),
        ("memory", True),
        ("ephemeral-storage", True),
        ("hugepages-2Mi", True),
        ("example.com/gpu", True),
        ("nvidia.com/gpu", True),
        ("kubernetes.io/anything", True),
        ("gpu", False),
        ("requests.example.com/gpu", False),
        ("Example.com/gpu", False),
        ("example.com/", False),
        ("a/b/c", False),
    ],
)
def test_container_resource_names(name: str, ok: bool) -> None:
    assert (resource_name_error(name) is None) == ok


def test_reversed_range_pattern_means_a_start_above_its_end() -> None:
    # The CRD's rule is one regex; it must say exactly what comparing values says.
    rng = random.Random(3)
    fields = [
        (0, 59, []),
        (0, 23, []),
        (1, 31, []),
        (1, 12, ["jan", "FEB", "Dec"]),
        (0, 6, ["sun", "MON", "Sat"]),
    ]

    def atom(low: int, high: int, names: list[str]) -> str:
        if names and rng.random() < 0.3:
            return rng.choice(names)
        return ("0" if rng.random() < 0.2 else "") + str(rng.randint(low, high))

    checked = 0
    for _ in range(5000):
        items = []
        for field in fields:
            item = atom(*field)
            if rng.random() < 0.6:
                item += "-" + atom(*field)
            items.append(item + ("/2" if rng.random() < 0.2 else ""))
        expression = " ".join(items)
        if cron._CRON.match(expression):
            checked += 1
            reversed_ = bool(re.search(cron.REVERSED_RANGE_PATTERN, expression))
            assert reversed_ != cron._ranges_ascend(expression), expression
    assert checked > 1000
