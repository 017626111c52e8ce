"""Invalid TaskQueue manifests, each with the field the refusal must name.

Shared by the unit test (pydantic refuses each) and the e2e test (the real API server
refuses each on `kubectl apply`, naming the field).
"""

from __future__ import annotations

import copy
from typing import Any

# Every embedded Kubernetes type appears once in a valid form, so the real API server
# (e2e) and the models both accept the whole valid surface, not only the minimal one.
VALID_WORKER: dict[str, Any] = {
    "image": "registry.example/worker:1.0",
    "imagePullPolicy": "IfNotPresent",
    "env": [
        {"name": "PLAIN", "value": "1"},
        {"name": "relaxed.name-1 with space", "value": "ok"},
        {
            "name": "EMPTY_VALUE_WITH_SOURCE",
            "value": "",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        },
        {
            "name": "LABEL",
            "valueFrom": {
                "fieldRef": {
                    "apiVersion": "v1",
                    "fieldPath": "metadata.labels['app.kubernetes.io/name']",
                }
            },
        },
        {
            "name": "CPU_LIMIT",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
        },
        {
            "name": "TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "api", "key": "token", "optional": True}},
        },
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings.v1", "key": "mode"}}},
    ],
    "envFrom": [
        {"configMapRef": {"name": "settings"}, "prefix": "APP_"},
        {"secretRef": {"name": "api"}},
    ],
    "resources": {
        "requests": {"cpu": "250m", "memory": "256Mi", "example.com/gpu": 1},
        "limits": {"cpu": 1, "memory": "1Gi", "example.com/gpu": "1", "ephemeral-storage": "1e9"},
    },
    "volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "results"}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {
            "name": "config",
            "configMap": {
                "name": "settings",
                "items": [{"key": "a.yaml", "path": "conf/a.yaml"}],
                "defaultMode": 0o444,
            },
        },
        {"name": "creds", "secret": {"secretName": "api"}},
        {"name": "nfs", "nfs": {"server": "nfs.example", "path": "/exports"}},
    ],
    "volumeMounts": [
        {"name": "data", "mountPath": "/data"},
        {"name": "cache", "mountPath": "/cache", "subPath": "rq"},
        {
            "name": "config",
            "mountPath": "/etc/app",
            "readOnly": True,
            "recursiveReadOnly": "IfPossible",
        },
        {"name": "tmp", "mountPath": "/scratch"},
    ],
    "nodeSelector": {"kubernetes.io/os": "linux", "disk": "ssd"},
    "tolerations": [
        {
            "key": "example.com/dedicated",
            "operator": "Equal",
            "value": "rq",
            "effect": "NoSchedule",
        },
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ],
    "podLabels": {"team": "quant", "example.com/tier": ""},
    "podAnnotations": {"Example.COM/owner": "quant team", "note": "any text"},
    "serviceAccountName": "rq.workers",
}

VALID_SPEC: dict[str, Any] = {
    "redis": {"url": "redis://redis:6379/0"},
    "queues": ["high", "default"],
    "worker": VALID_WORKER,
    "schedules": [
        {"name": "nightly", "schedule": "0 3 * * *", "function": "tasks.jobs.run"},
        {
            "name": "weekdays",
            "schedule": "*/15 08-18 ? JAN-dec Mon-FRI",
            "timeZone": "Europe/Berlin",
            "function": "tasks.jobs.run",
        },
        {"name": "often", "schedule": "@every 1h30m", "timeZone": "UTC", "function": "m.f"},
    ],
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
    # ---- resources: the Kubernetes quantity grammar, names, requests <= limits
    (
        "limits-cpu-lots",
        {"worker.resources": {"limits": {"cpu": "lots"}}},
        "spec.worker.resources.limits.cpu",
    ),
    (
        "negative-memory-request",
        {"worker.resources": {"requests": {"memory": "-1Gi"}}},
        "spec.worker.resources.requests.memory",
    ),
    (
        "negative-int-limit",
        {"worker.resources": {"limits": {"cpu": -1}}},
        "spec.worker.resources.limits.cpu",
    ),
    (
        "quantity-bad-suffix",
        {"worker.resources": {"limits": {"memory": "1GB"}}},
        "spec.worker.resources.limits.memory",
    ),
    (
        "unknown-resource-name",
        {"worker.resources": {"limits": {"gpu": 1}}},
        "spec.worker.resources.limits",
    ),
    (
        "request-above-limit",
        {"worker.resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}},
        "spec.worker.resources.requests",
    ),
    (
        "extended-resource-fraction",
        {
            "worker.resources": {
                "requests": {"example.com/gpu": "500m"},
                "limits": {"example.com/gpu": "500m"},
            }
        },
        "spec.worker.resources.limits",
    ),
    (
        "extended-request-without-limit",
        {"worker.resources": {"requests": {"example.com/gpu": 1}}},
        "spec.worker.resources.requests",
    ),
    (
        "hugepages-without-cpu-or-memory",
        {"worker.resources": {"limits": {"hugepages-2Mi": "2Mi"}}},
        "spec.worker.resources",
    ),
    # ---- env and envFrom (Kubernetes 1.34: relaxed names, one value source)
    ("env-without-name", {"worker.env": [{"value": "x"}]}, "spec.worker.env[0].name"),
    (
        "env-name-with-equals",
        {"worker.env": [{"name": "A=B", "value": "x"}]},
        "spec.worker.env[0].name",
    ),
    (
        "env-name-not-ascii",
        {"worker.env": [{"name": "CAFÉ", "value": "x"}]},
        "spec.worker.env[0].name",
    ),
    (
        "env-value-and-valueFrom",
        {
            "worker.env": [
                {
                    "name": "A",
                    "value": "x",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                }
            ]
        },
        "spec.worker.env[0].valueFrom",
    ),
    (
        "env-valueFrom-empty",
        {"worker.env": [{"name": "A", "valueFrom": {}}]},
        "spec.worker.env[0].valueFrom",
    ),
    (
        "env-valueFrom-two-sources",
        {
            "worker.env": [
                {
                    "name": "A",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "metadata.name"},
                        "secretKeyRef": {"name": "s", "key": "k"},
                    },
                }
            ]
        },
        "spec.worker.env[0].valueFrom",
    ),
    (
        "env-unknown-fieldPath",
        {
            "worker.env": [
                {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}}
            ]
        },
        "spec.worker.env[0].valueFrom.fieldRef.fieldPath",
    ),
    (
        "env-fieldRef-apiVersion",
        {
            "worker.env": [
                {
                    "name": "A",
                    "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}},
                }
            ]
        },
        "spec.worker.env[0].valueFrom.fieldRef.apiVersion",
    ),
    (
        "env-bad-label-subscript",
        {
            "worker.env": [
                {
                    "name": "A",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['bad key']"}},
                }
            ]
        },
        "spec.worker.env[0].valueFrom.fieldRef.fieldPath",
    ),
    (
        "env-unknown-resource",
        {
            "worker.env": [
                {"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}
            ]
        },
        "spec.worker.env[0].valueFrom.resourceFieldRef.resource",
    ),
    (
        "env-cpu-divisor",
        {
            "worker.env": [
                {
                    "name": "A",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1Ki"}},
                }
            ]
        },
        "spec.worker.env[0].valueFrom.resourceFieldRef.divisor",
    ),
    (
        "env-secret-without-key",
        {"worker.env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
        "spec.worker.env[0].valueFrom.secretKeyRef.key",
    ),
    (
        "env-secret-without-name",
        {"worker.env": [{"name": "A", "valueFrom": {"secretKeyRef": {"key": "k"}}}]},
        "spec.worker.env[0].valueFrom.secretKeyRef.name",
    ),
    (
        "env-configmap-bad-key",
        {
            "worker.env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "a/b"}}}
            ]
        },
        "spec.worker.env[0].valueFrom.configMapKeyRef.key",
    ),
    (
        "env-key-dotdot",
        {
            "worker.env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "..a"}}}
            ]
        },
        "spec.worker.env[0].valueFrom.configMapKeyRef.key",
    ),
    ("env-unknown-field", {"worker.env": [{"name": "A", "valu": "x"}]}, "spec.worker.env[0].valu"),
    ("envFrom-without-source", {"worker.envFrom": [{"prefix": "X_"}]}, "spec.worker.envFrom[0]"),
    (
        "envFrom-two-sources",
        {"worker.envFrom": [{"configMapRef": {"name": "c"}, "secretRef": {"name": "s"}}]},
        "spec.worker.envFrom[0]",
    ),
    (
        "envFrom-prefix-with-equals",
        {"worker.envFrom": [{"prefix": "A=", "secretRef": {"name": "s"}}]},
        "spec.worker.envFrom[0].prefix",
    ),
    (
        "envFrom-bad-name",
        {"worker.envFrom": [{"secretRef": {"name": "Not_A_Name"}}]},
        "spec.worker.envFrom[0].secretRef.name",
    ),
    # ---- volumes and volumeMounts
    (
        "volume-without-source",
        {"worker.volumes": [{"name": "data"}], "worker.volumeMounts": []},
        "spec.worker.volumes[0]",
    ),
    (
        "volume-two-sources",
        {
            "worker.volumes": [{"name": "data", "emptyDir": {}, "secret": {"secretName": "s"}}],
            "worker.volumeMounts": [],
        },
        "spec.worker.volumes[0]",
    ),
    (
        "volume-without-name",
        {"worker.volumes": [{"emptyDir": {}}], "worker.volumeMounts": []},
        "spec.worker.volumes[0].name",
    ),
    (
        "volume-bad-name",
        {"worker.volumes": [{"name": "Data_1", "emptyDir": {}}], "worker.volumeMounts": []},
        "spec.worker.volumes[0].name",
    ),
    (
        "volume-reserved-name",
        {"worker.volumes": [{"name": "tmp", "emptyDir": {}}], "worker.volumeMounts": []},
        "spec.worker.volumes[0].name",
    ),
    (
        "volume-unknown-source",
        {"worker.volumes": [{"name": "d", "bucket": {}}], "worker.volumeMounts": []},
        "spec.worker.volumes[0].bucket",
    ),
    (
        "duplicate-volume-names",
        {
            "worker.volumes": [{"name": "d", "emptyDir": {}}, {"name": "d", "emptyDir": {}}],
            "worker.volumeMounts": [],
        },
        "spec.worker.volumes",
    ),
    (
        "pvc-without-claim-name",
        {"worker.volumes": [{"name": "d", "persistentVolumeClaim": {}}], "worker.volumeMounts": []},
        "spec.worker.volumes[0].persistentVolumeClaim.claimName",
    ),
    (
        "emptydir-bad-size",
        {
            "worker.volumes": [{"name": "d", "emptyDir": {"sizeLimit": "big"}}],
            "worker.volumeMounts": [],
        },
        "spec.worker.volumes[0].emptyDir.sizeLimit",
    ),
    (
        "secret-item-absolute-path",
        {
            "worker.volumes": [
                {
                    "name": "d",
                    "secret": {"secretName": "s", "items": [{"key": "k", "path": "/etc/k"}]},
                }
            ],
            "worker.volumeMounts": [],
        },
        "spec.worker.volumes[0].secret.items[0].path",
    ),
    (
        "volume-mode-too-large",
        {
            "worker.volumes": [{"name": "d", "configMap": {"name": "c", "defaultMode": 1000}}],
            "worker.volumeMounts": [],
        },
        "spec.worker.volumes[0].configMap.defaultMode",
    ),
    (
        "mount-unknown-volume",
        {"worker.volumeMounts": [{"name": "nowhere", "mountPath": "/x"}]},
        "spec.worker.volumeMounts",
    ),
    (
        "mount-without-path",
        {"worker.volumeMounts": [{"name": "data"}]},
        "spec.worker.volumeMounts[0].mountPath",
    ),
    (
        "mount-on-tmp",
        {"worker.volumeMounts": [{"name": "data", "mountPath": "/tmp"}]},
        "spec.worker.volumeMounts[0].mountPath",
    ),
    (
        "duplicate-mount-paths",
        {
            "worker.volumeMounts": [
                {"name": "data", "mountPath": "/x"},
                {"name": "cache", "mountPath": "/x"},
            ]
        },
        "spec.worker.volumeMounts",
    ),
    (
        "mount-subpath-escapes",
        {"worker.volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": "a/../../etc"}]},
        "spec.worker.volumeMounts[0].subPath",
    ),
    (
        "mount-subpath-and-expr",
        {
            "worker.volumeMounts": [
                {"name": "data", "mountPath": "/x", "subPath": "a", "subPathExpr": "$(POD_NAME)"}
            ]
        },
        "spec.worker.volumeMounts[0].subPathExpr",
    ),
    (
        "mount-bad-propagation",
        {
            "worker.volumeMounts": [
                {"name": "data", "mountPath": "/x", "mountPropagation": "Sideways"}
            ]
        },
        "spec.worker.volumeMounts[0].mountPropagation",
    ),
    (
        "mount-bidirectional-unprivileged",
        {
            "worker.volumeMounts": [
                {"name": "data", "mountPath": "/x", "mountPropagation": "Bidirectional"}
            ]
        },
        "spec.worker.volumeMounts[0].mountPropagation",
    ),
    (
        "mount-recursive-with-propagation",
        {
            "worker.volumeMounts": [
                {
                    "name": "data",
                    "mountPath": "/x",
                    "readOnly": True,
                    "recursiveReadOnly": "Enabled",
                    "mountPropagation": "HostToContainer",
                }
            ]
        },
        "spec.worker.volumeMounts[0].recursiveReadOnly",
    ),
    (
        "mount-recursive-not-readonly",
        {
            "worker.volumeMounts": [
                {"name": "data", "mountPath": "/x", "recursiveReadOnly": "Enabled"}
            ]
        },
        "spec.worker.volumeMounts[0].recursiveReadOnly",
    ),
    # ---- the rest of the pod
    ("bad-pull-policy", {"worker.imagePullPolicy": "Sometimes"}, "spec.worker.imagePullPolicy"),
    ("image-with-trailing-space", {"worker.image": "busybox "}, "spec.worker.image"),
    (
        "bad-service-account",
        {"worker.serviceAccountName": "Bad_SA"},
        "spec.worker.serviceAccountName",
    ),
    (
        "node-selector-bad-key",
        {"worker.nodeSelector": {"bad key": "x"}},
        "spec.worker.nodeSelector",
    ),
    (
        "node-selector-bad-value",
        {"worker.nodeSelector": {"disk": "not ok!"}},
        "spec.worker.nodeSelector.disk",
    ),
    (
        "toleration-bad-operator",
        {"worker.tolerations": [{"key": "k", "operator": "Sometimes"}]},
        "spec.worker.tolerations[0].operator",
    ),
    (
        "toleration-no-key-not-exists",
        {"worker.tolerations": [{"operator": "Equal", "value": "x"}]},
        "spec.worker.tolerations[0].operator",
    ),
    (
        "toleration-seconds-not-noexecute",
        {"worker.tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]},
        "spec.worker.tolerations[0].effect",
    ),
    (
        "toleration-exists-with-value",
        {"worker.tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
        "spec.worker.tolerations[0].value",
    ),
    (
        "toleration-bad-effect",
        {"worker.tolerations": [{"key": "k", "effect": "Never"}]},
        "spec.worker.tolerations[0].effect",
    ),
    (
        "toleration-bad-key",
        {"worker.tolerations": [{"key": "bad key", "operator": "Exists"}]},
        "spec.worker.tolerations[0].key",
    ),
    (
        "pod-label-bad-value",
        {"worker.podLabels": {"team": "quant team"}},
        "spec.worker.podLabels.team",
    ),
    ("pod-label-bad-key", {"worker.podLabels": {"-team": "quant"}}, "spec.worker.podLabels"),
    (
        "pod-annotation-bad-key",
        {"worker.podAnnotations": {"a/b/c": "x"}},
        "spec.worker.podAnnotations",
    ),
    # ---- schedules: cron ranges, steps, macros; time zones
    (
        "reversed-cron-range",
        {"schedules.0.schedule": "30-10 * * * *"},
        "spec.schedules[0].schedule",
    ),
    (
        "reversed-month-names",
        {"schedules.0.schedule": "0 0 1 DEC-JAN *"},
        "spec.schedules[0].schedule",
    ),
    (
        "reversed-weekday-names",
        {"schedules.0.schedule": "0 9 * * FRI-MON"},
        "spec.schedules[0].schedule",
    ),
    ("cron-weekday-7", {"schedules.0.schedule": "0 9 * * 7"}, "spec.schedules[0].schedule"),
    ("cron-hour-24", {"schedules.0.schedule": "0 24 * * *"}, "spec.schedules[0].schedule"),
    ("cron-day-zero", {"schedules.0.schedule": "0 0 0 * *"}, "spec.schedules[0].schedule"),
    ("cron-zero-step", {"schedules.0.schedule": "*/0 * * * *"}, "spec.schedules[0].schedule"),
    ("cron-name-in-minute", {"schedules.0.schedule": "MON * * * *"}, "spec.schedules[0].schedule"),
    ("cron-uppercase-macro", {"schedules.0.schedule": "@DAILY"}, "spec.schedules[0].schedule"),
    ("cron-every-without-unit", {"schedules.0.schedule": "@every 5"}, "spec.schedules[0].schedule"),
    (
        "cron-tz-prefix",
        {"schedules.0.schedule": "CRON_TZ=UTC 0 9 * * *"},
        "spec.schedules[0].schedule",
    ),
    ("unknown-time-zone", {"schedules.0.timeZone": "Mars/Olympus"}, "spec.schedules[0].timeZone"),
    ("time-zone-local", {"schedules.0.timeZone": "Local"}, "spec.schedules[0].timeZone"),
    (
        "time-zone-part-too-long",
        {"schedules.0.timeZone": "America/Argentina_Buenos_Aires"},
        "spec.schedules[0].timeZone",
    ),
    ("time-zone-empty", {"schedules.0.timeZone": ""}, "spec.schedules[0].timeZone"),
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
