"""Invalid TaskQueue manifests, each with the field the refusal must name.

Shared by the unit test (pydantic refuses each) and the e2e test (the real API server
refuses each on `kubectl apply`, naming the field).
"""

from __future__ import annotations

import copy
from typing import Any

VALID_SPEC: dict[str, Any] = {
    "redis": {"url": "redis://redis:6379/0"},
    "queues": ["high", "default"],
    "schedules": [{"name": "nightly", "schedule": "0 3 * * *", "function": "tasks.jobs.run"}],
}


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node: Any = spec
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is _DELETE:
        del node[leaf]
    elif leaf.isdigit():
        node[int(leaf)] = value
    else:
        node[leaf] = value


_DELETE = object()

# (case id, {dotted path in spec: value}, text the API server's message must contain)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("empty-queues", {"queues": []}, "spec.queues"),
    ("queues-not-a-list", {"queues": "default"}, "spec.queues"),
    ("bad-queue-name", {"queues": ["bad name"]}, "spec.queues[0]"),
    ("duplicate-queue", {"queues": ["a", "a"], "schedules": []}, "spec.queues[1]"),
    ("no-redis-source", {"redis": {}}, "spec.redis"),
    (
        "two-redis-sources",
        {"redis.urlFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        "spec.redis",
    ),
    ("password-in-url", {"redis.url": "redis://user:hunter2@redis:6379/0"}, "spec.redis.url"),
    ("not-a-redis-url", {"redis.url": "http://redis:6379"}, "spec.redis.url"),
    ("bad-key-prefix", {"redis.keyPrefix": "bad prefix!"}, "spec.redis.keyPrefix"),
    (
        "tls-without-rediss",
        {"redis.tls": {"caFrom": {"secretKeyRef": {"name": "redis-tls", "key": "ca.crt"}}}},
        "spec.redis.tls",
    ),
    ("tls-unknown-field", {"redis.tls": {"insecure": True}}, "spec.redis.tls"),
    ("missing-redis", {"redis": _DELETE}, "spec.redis"),
    (
        "min-above-max",
        {"scaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.scaling.minReplicas",
    ),
    ("max-zero", {"scaling": {"maxReplicas": 0}}, "spec.scaling.maxReplicas"),
    (
        "target-not-a-number",
        {"scaling": {"targetBacklogPerWorker": "ten"}},
        "spec.scaling.targetBacklogPerWorker",
    ),
    (
        "bad-scale-down-delay",
        {"scaling": {"scaleDownDelay": "soon"}},
        "spec.scaling.scaleDownDelay",
    ),
    ("replicas-and-scaling", {"replicas": 2, "scaling": {"maxReplicas": 3}}, "spec.replicas"),
    ("negative-replicas", {"replicas": -1}, "spec.replicas"),
    ("negative-job-timeout", {"worker": {"jobTimeout": "-5s"}}, "spec.worker.jobTimeout"),
    ("unknown-worker-class", {"worker": {"workerClass": "thread"}}, "spec.worker.workerClass"),
    ("empty-image", {"worker": {"image": ""}}, "spec.worker.image"),
    ("bad-cron", {"schedules.0.schedule": "61 * * * *"}, "spec.schedules[0].schedule"),
    ("six-field-cron", {"schedules.0.schedule": "* * * * * *"}, "spec.schedules[0].schedule"),
    (
        "duplicate-schedule-names",
        {
            "schedules": [
                {"name": "a", "schedule": "@daily", "function": "m.f"},
                {"name": "a", "schedule": "@hourly", "function": "m.g"},
            ]
        },
        "spec.schedules",
    ),
    ("schedule-queue-not-listened", {"schedules.0.queue": "elsewhere"}, "spec.schedules"),
    ("function-without-module", {"schedules.0.function": "nodots"}, "spec.schedules[0].function"),
    ("bad-schedule-name", {"schedules.0.name": "Bad_Name"}, "spec.schedules[0].name"),
    ("missing-function", {"schedules.0.function": _DELETE}, "spec.schedules[0].function"),
    ("bad-time-zone", {"schedules.0.timeZone": "Not A Zone"}, "spec.schedules[0].timeZone"),
    ("zero-retries", {"schedules.0.retry": {"max": 0}}, "spec.schedules[0].retry.max"),
    (
        "negative-retry-interval",
        {"schedules.0.retry": {"max": 2, "intervals": [-1]}},
        "spec.schedules[0].retry.intervals[0]",
    ),
    ("unknown-spec-field", {"replicaz": 3}, "spec.replicaz"),
    ("unknown-worker-field", {"worker": {"imag": "x"}}, "spec.worker.imag"),
    ("cronjob-name-too-long", {"schedules.0.name": "a" * 40}, "spec.schedules"),
]


def invalid_spec(changes: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(VALID_SPEC)
    for path, value in changes.items():
        _set(spec, path, copy.deepcopy(value) if value is not _DELETE else value)
    return spec


def manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "taskqueue.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": spec,
    }
