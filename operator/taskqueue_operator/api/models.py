"""The TaskQueue API (v1alpha1): the single source of truth for the spec and the status.

The CRD's OpenAPI schema and CEL rules are generated from these models (see `crd.py`).
Every cross-field rule exists twice on purpose: as a CEL rule, so `kubectl apply` refuses
a bad manifest, and as a pydantic validator, so the operator never acts on one either.
Field docstrings become the CRD's descriptions and the field reference in
docs/taskqueue-spec.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from taskqueue_contract.durations import DURATION_PATTERN, parse_duration

from taskqueue_operator.api.base import ApiModel, cel
from taskqueue_operator.api.cron import CRON_PATTERN, CRON_RANGE_RULE, cron_error
from taskqueue_operator.api.kubernetes import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    RESERVED_VOLUME,
    EnvFromSource,
    EnvVar,
    ResourceRequirements,
    Toleration,
    Volume,
    VolumeMount,
    annotation_map,
    embedded,
    label_map,
)
from taskqueue_operator.api.timezones import TIME_ZONE_SET, TIME_ZONES

GROUP = "taskqueue.dev"
VERSION = "v1alpha1"
KIND = "TaskQueue"
PLURAL = "taskqueues"
SINGULAR = "taskqueue"
SHORT_NAMES = ["tq"]
API_VERSION = f"{GROUP}/{VERSION}"
# Set it to a new value (any token) to requeue every failed job once.
REQUEUE_ANNOTATION = f"{GROUP}/requeue-failed"

DEFAULT_WORKER_IMAGE = "ghcr.io/taskqueue-dev/taskqueue-worker:0.1.0"
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"
FUNCTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
KEY_PREFIX_PATTERN = r"^[A-Za-z0-9_.\-]{1,32}$"
REDIS_URL_PATTERN = r"^(rediss?|unix)://\S+$"
# batch validation's validTimeZoneCharacters, per `/`-separated part.
TIMEZONE_PATTERN = r"^[A-Za-z.\-_0-9+]{1,14}(/[A-Za-z.\-_0-9+]{1,14})*$"
MAX_QUEUES = 32
MAX_SCHEDULES = 64
# CronJob names are limited to 52 characters; ours are "<taskqueue>-<schedule>".
MAX_CRONJOB_NAME = 52

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]


def _preserve(description: str) -> dict[str, Any]:
    """Schema extras for embedded Kubernetes types we pass through untouched."""
    return {"x-kubernetes-preserve-unknown-fields": True, "description": description}


def _kubernetes_list(max_items: int, description: str) -> Any:
    """A list of an embedded Kubernetes type (see `kubernetes.embedded`)."""
    return Field(default_factory=list, max_length=max_items, description=description)


def _check_time_zone(name: str) -> str:
    if name not in TIME_ZONE_SET:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin"
        )
    return name


def _check_cron(expression: str) -> str:
    error = cron_error(expression)
    if error:
        raise ValueError(f"schedule {expression!r} {error}")
    return expression


TimeZone = Annotated[
    str,
    Field(
        max_length=64,
        pattern=TIMEZONE_PATTERN,
        description="IANA time zone of the schedule (default: the controller manager's, "
        "usually UTC), e.g. Europe/Berlin.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self in {list(TIME_ZONES)}",
                    "timeZone must be an IANA time zone name such as UTC or Europe/Berlin",
                    message_expression="'unknown time zone ' + self + ': use an IANA name "
                    "such as UTC or Europe/Berlin'",
                )
            ]
        },
    ),
    AfterValidator(_check_time_zone),
]


# ---------------------------------------------------------------------------- spec


class SecretKeyRef(ApiModel):
    """A key of a Secret in the TaskQueue's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class ValueSource(ApiModel):
    """Where a secret value comes from."""

    secret_key_ref: SecretKeyRef


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace by name."""

    name: str = Field(min_length=1, max_length=253)


class RedisTLS(ApiModel):
    """TLS to Redis for rediss:// URLs: the CA to trust, and a client certificate for a
    Redis that requires one (`tls-auth-clients yes`, Redis's default with TLS on)."""

    ca_from: ValueSource | None = Field(
        default=None,
        description="PEM CA bundle that signed Redis's certificate, from a Secret key "
        "(cert-manager's `ca.crt`). Without it the system's trusted CAs are used.",
    )
    client_certificate_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="A kubernetes.io/tls Secret (keys tls.crt and tls.key): the client "
        "certificate workers, schedules and the operator present to Redis.",
    )


class RedisSpec(ApiModel):
    """How workers, schedules and the operator reach Redis."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.url) != has(self.urlFrom)",
                    "set exactly one of redis.url and redis.urlFrom",
                ),
                cel(
                    "!has(self.tls) || !has(self.url) || self.url.startsWith('rediss://')",
                    "redis.tls needs a rediss:// URL",
                    ".tls",
                ),
                cel(
                    "!has(self.url) || !self.url.matches('^[a-z]+://[^/@]*:[^/@]+@')",
                    "redis.url must not contain a password: put the URL in a Secret and "
                    "use redis.urlFrom.secretKeyRef",
                    ".url",
                ),
            ]
        }
    )

    url: str | None = Field(
        default=None,
        max_length=1024,
        pattern=REDIS_URL_PATTERN,
        description="Redis URL without credentials, e.g. redis://redis.ns.svc:6379/0.",
    )
    url_from: ValueSource | None = Field(
        default=None, description="Redis URL (may carry a password) read from a Secret key."
    )
    key_prefix: str = Field(
        default="rq",
        pattern=KEY_PREFIX_PATTERN,
        description="RQ's key prefix (RQ_KEY_PREFIX); change it only if your apps do.",
    )
    tls: RedisTLS | None = Field(
        default=None, description="CA and client certificate for a rediss:// URL."
    )

    @model_validator(mode="after")
    def _one_source(self) -> RedisSpec:
        if (self.url is None) == (self.url_from is None):
            raise ValueError("set exactly one of redis.url and redis.urlFrom")
        if self.tls is not None and self.url is not None and not self.url.startswith("rediss://"):
            raise ValueError("redis.tls needs a rediss:// URL")
        if self.url is not None and _url_has_password(self.url):
            raise ValueError("redis.url must not contain a password: use redis.urlFrom")
        return self


def _url_has_password(url: str) -> bool:
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    return "@" in netloc and ":" in netloc.split("@", 1)[0]


class WorkerSpec(ApiModel):
    """The RQ worker pods."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.volumes) || self.volumes.all(v, "
                    "self.volumes.exists_one(w, w.name == v.name))",
                    "worker.volumes[].name must be unique",
                    ".volumes",
                ),
                cel(
                    "!has(self.volumeMounts) || self.volumeMounts.all(m, "
                    "self.volumeMounts.exists_one(n, n.mountPath == m.mountPath))",
                    "worker.volumeMounts[].mountPath must be unique",
                    ".volumeMounts",
                ),
                cel(
                    f"!has(self.volumeMounts) || self.volumeMounts.all(m, m.name == "
                    f"'{RESERVED_VOLUME}' || (has(self.volumes) && "
                    "self.volumes.exists(v, v.name == m.name)))",
                    "worker.volumeMounts[].name must name one of worker.volumes",
                    ".volumeMounts",
                ),
            ]
        }
    )

    image: str = Field(
        default=DEFAULT_WORKER_IMAGE,
        min_length=1,
        max_length=512,
        # validateContainerCommon: no leading or trailing whitespace.
        pattern=r"^\S(.*\S)?$",
        description="Worker image: ours, or yours built FROM it with your task code.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, max_length=64, description="Overrides the image's worker entrypoint."
    )
    args: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None,
        max_length=128,
        description="Overrides the worker arguments (by default: worker class, then queues).",
    )
    env: list[Annotated[dict[str, Any], embedded(EnvVar)]] = _kubernetes_list(
        256, "Extra environment variables (Kubernetes EnvVar list)."
    )
    env_from: list[Annotated[dict[str, Any], embedded(EnvFromSource)]] = _kubernetes_list(
        64, "Extra environment from ConfigMaps/Secrets (Kubernetes EnvFromSource list)."
    )
    resources: ResourceRequirements | None = None
    volumes: list[Annotated[dict[str, Any], embedded(Volume)]] = _kubernetes_list(
        64, "Extra pod volumes, e.g. a PersistentVolumeClaim for Parquet results."
    )
    volume_mounts: list[Annotated[dict[str, Any], embedded(VolumeMount)]] = _kubernetes_list(
        64, "Where the extra volumes appear in the worker and schedule containers."
    )
    node_selector: label_map("nodeSelector") | None = None  # type: ignore[valid-type]
    tolerations: list[Annotated[dict[str, Any], embedded(Toleration)]] | None = Field(
        default=None, max_length=64
    )
    affinity: dict[str, Any] | None = Field(
        default=None, json_schema_extra=_preserve("A Kubernetes Affinity.")
    )
    service_account_name: str | None = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(default=None, max_length=16)
    job_timeout: Duration = Field(
        default="360s",
        description="Longest job run; the pods' termination grace period covers it, so a "
        "scale-down or rollout lets the running job finish.",
    )
    worker_class: Literal["fork", "simple"] = Field(
        default="fork",
        description="fork: a child process per job (isolation, RQ's default); simple: jobs run "
        "in the worker process (faster, for trusted short jobs).",
    )
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="RQ work loops per pod, each with its own warm shutdown (as `rq "
        "worker-pool`): the fast elasticity for I/O-bound jobs. The scaler sizes the pool "
        "in workers and runs ceil(workers / processes) pods; a pod with a busy loop is "
        "never removed before an idle one. `resources` are the whole pod's.",
    )
    pod_labels: label_map("podLabels") | None = None  # type: ignore[valid-type]
    pod_annotations: annotation_map("podAnnotations") | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _volumes_and_mounts(self) -> WorkerSpec:
        names = [v["name"] for v in self.volumes]
        if len(set(names)) != len(names):
            raise ValueError("worker.volumes[].name must be unique")
        paths = [m["mountPath"] for m in self.volume_mounts]
        if len(set(paths)) != len(paths):
            raise ValueError("worker.volumeMounts[].mountPath must be unique")
        for mount in self.volume_mounts:
            if mount["name"] not in names and mount["name"] != RESERVED_VOLUME:
                raise ValueError(
                    f"worker.volumeMounts[].name {mount['name']!r} is not in worker.volumes"
                )
        return self

    @property
    def job_timeout_seconds(self) -> float:
        return parse_duration(self.job_timeout)


class ScalingSpec(ApiModel):
    """Autoscaling from queue depth. Absent: a fixed `spec.replicas`."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "scaling.minReplicas must be <= scaling.maxReplicas",
                    ".minReplicas",
                ),
            ]
        }
    )

    min_replicas: int = Field(default=0, ge=0, le=1000, description="0 allows scale to zero.")
    max_replicas: int = Field(default=10, ge=1, le=1000)
    target_queue_seconds: float = Field(
        default=10.0,
        gt=0,
        le=86400,
        description="The wait a job may accept before it starts (seconds). The pool is "
        "sized from the measured arrival rate, service time, pod start and the oldest "
        "pending job's age so that jobs start within it, and shrinks when they would anyway.",
    )
    target_backlog_per_worker: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="Optional cap: never more than one worker per this many (pending + "
        "running) jobs, whatever the wait (spend less, accept longer waits).",
    )
    scale_down_delay: Duration = Field(
        default="2s",
        description="Lower demand must last this long before workers are removed. Short by "
        "default: only idle workers are removed (protectBusyWorkers, warm shutdown) and a "
        "new one starts in about a pod start, so idle workers kept longer cost more than "
        "they save (bench/policy_sim.py); raise it for load that comes back within minutes.",
    )
    poll_interval: Duration = Field(default="1s", description="How often Redis is observed.")
    max_scale_up_step: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Most workers added per decision (default: no limit).",
    )
    protect_busy_workers: bool = Field(
        default=True,
        description="Never remove a busy worker on scale-down (pod-deletion-cost + busy floor).",
    )
    abandoned_jobs: Literal["requeue", "fail"] = Field(
        default="requeue",
        description="Jobs of a worker whose pod vanished: requeue (if retries allow) or fail.",
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("scaling.minReplicas must be <= scaling.maxReplicas")
        return self

    @property
    def scale_down_delay_seconds(self) -> float:
        return parse_duration(self.scale_down_delay)

    @property
    def poll_interval_seconds(self) -> float:
        return parse_duration(self.poll_interval)


class RetrySpec(ApiModel):
    """RQ Retry for jobs enqueued by a schedule."""

    max: int = Field(ge=1, le=100)
    intervals: list[Annotated[int, Field(ge=0, le=86400)]] = Field(
        default_factory=list, max_length=100, description="Seconds between tries (RQ Retry)."
    )


class ScheduleSpec(ApiModel):
    """A periodic job: a CronJob that enqueues `function` on `queue` at `schedule`."""

    name: str = Field(min_length=1, max_length=40, pattern=DNS_LABEL_PATTERN)
    schedule: Annotated[str, AfterValidator(_check_cron)] = Field(
        min_length=1,
        # Bounded for the API server's CEL cost estimate (64 schedules x the range rule).
        max_length=128,
        description="Cron expression as CronJobs take it: 5 fields (minute 0-59, hour 0-23, "
        "day 1-31, month 1-12 or JAN-DEC, weekday 0-6 or SUN-SAT; lists, low-high ranges, "
        "steps) or a macro (@daily, @hourly..., @every 1h).",
        # CEL rules rather than `pattern`, so the error is a sentence, not the regex.
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.matches(r'{CRON_PATTERN}')",
                    "schedule must be a cron expression with 5 fields (minute 0-59, hour 0-23, "
                    "day 1-31, month 1-12 or JAN-DEC, weekday 0-6 or SUN-SAT, e.g. '0 9 * * *') "
                    "or a macro such as @daily or @every 1h",
                ),
                cel(
                    CRON_RANGE_RULE,
                    "schedule has a range whose start is after its end (e.g. 30-10): "
                    "write it low-high",
                ),
            ]
        },
    )
    time_zone: TimeZone | None = None
    function: str = Field(
        max_length=512, pattern=FUNCTION_PATTERN, description="Dotted path, e.g. tasks.ingest.run."
    )
    args: list[Any] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    queue: str | None = Field(
        default=None,
        pattern=QUEUE_NAME_PATTERN,
        description="One of spec.queues (default: the first).",
    )
    job_timeout: Duration | None = None
    retry: RetrySpec | None = None
    result_ttl: Duration | None = None
    failure_ttl: Duration | None = None
    suspend: bool = False
    starting_deadline_seconds: int | None = Field(default=None, ge=1, le=86400)
    prewarm_workers: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Workers started one measured pod start before each slot and held until "
        "the slot's run has enqueued (at most 60 s after the slot), so the first job does not "
        "wait a pod start; still capped by scaling.maxReplicas. 0 turns it off.",
    )


class TaskQueueSpec(ApiModel):
    """Desired state of a TaskQueue."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.schedules) || self.schedules.all(s, "
                    "self.schedules.exists_one(t, t.name == s.name))",
                    "schedules[].name must be unique",
                    ".schedules",
                ),
                cel(
                    "!has(self.schedules) || self.schedules.all(s, "
                    "!has(s.queue) || s.queue in self.queues)",
                    "schedules[].queue must be one of spec.queues",
                    ".schedules",
                ),
                cel(
                    "!(has(self.scaling) && has(self.replicas))",
                    "set spec.replicas (fixed size) or spec.scaling (autoscaling), not both",
                    ".replicas",
                ),
            ]
        }
    )

    redis: RedisSpec
    queues: list[Annotated[str, Field(pattern=QUEUE_NAME_PATTERN, max_length=63)]] = Field(
        min_length=1,
        max_length=MAX_QUEUES,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Queue names in priority order, as RQ workers listen.",
    )
    worker: WorkerSpec = Field(default_factory=WorkerSpec)
    replicas: int | None = Field(
        default=None, ge=0, le=1000, description="Fixed worker count when scaling is absent."
    )
    scaling: ScalingSpec | None = None
    schedules: list[ScheduleSpec] = Field(default_factory=list, max_length=MAX_SCHEDULES)

    @model_validator(mode="after")
    def _cross_field(self) -> TaskQueueSpec:
        if len(set(self.queues)) != len(self.queues):
            raise ValueError("spec.queues must not repeat a queue")
        names = [s.name for s in self.schedules]
        if len(set(names)) != len(names):
            raise ValueError("schedules[].name must be unique")
        for schedule in self.schedules:
            if schedule.queue is not None and schedule.queue not in self.queues:
                raise ValueError(f"schedules[].queue {schedule.queue!r} must be one of spec.queues")
        if self.scaling is not None and self.replicas is not None:
            raise ValueError("set spec.replicas or spec.scaling, not both")
        return self

    @property
    def autoscaling(self) -> bool:
        return self.scaling is not None

    @property
    def fixed_replicas(self) -> int:
        return 1 if self.replicas is None else self.replicas


# -------------------------------------------------------------------------- status


class QueueStatus(ApiModel):
    """Counts of one RQ queue."""

    name: str
    pending: int = 0
    running: int = 0
    scheduled: int = 0
    deferred: int = 0
    failed: int = 0


class WorkerCounts(ApiModel):
    """RQ workers registered for this TaskQueue's queues, by state."""

    total: int = 0
    busy: int = 0
    idle: int = 0


# The condition types the operator writes: kstatus's three (so `kubectl wait
# --for=condition=Ready` and kstatus readers work), then ours. `type` stays an open string
# (an older or newer operator may write others); this tuple documents the set.
CONDITION_TYPES = (
    "Ready",
    "Reconciling",
    "Stalled",
    "RedisReachable",
    "DeadLetters",
    "ScalingLimited",
    "RedisEvictionSafe",
    "WorkersSuspended",
    "ChildrenApplied",
)


class Condition(ApiModel):
    """A Kubernetes-style condition (kstatus), with the generation it was computed for."""

    type: str = Field(
        min_length=1,
        max_length=316,
        description="One of " + ", ".join(CONDITION_TYPES) + ".",
    )
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class ScheduleStatus(ApiModel):
    """The CronJob of one schedule."""

    name: str
    cron_job: str
    last_schedule_time: str | None = None


class PodStartStatus(ApiModel):
    """How long a new worker pod takes to serve: from the pod's creation to its RQ worker
    registered in Redis (image pull, container start, Python imports, Redis connect)."""

    seconds: float = Field(description="Median over the last 20 pods measured.")
    last_seconds: float = Field(description="The most recent pod's.")
    samples: int = Field(description="Pods the median rests on (at most 20).")


class RequeueStatus(ApiModel):
    """The last `taskqueue.dev/requeue-failed` annotation token the operator acted on."""

    token: str
    requeued: int = 0
    time: str | None = None


class TaskQueueStatus(ApiModel):
    """Observed state, written by the operator only."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    observed_generation: int | None = None
    selector: str | None = Field(default=None, description="Label selector of the workers (scale).")
    queue_names: str | None = Field(default=None, description="spec.queues joined, for the table.")
    replicas: int | None = None
    desired_replicas: int | None = None
    ready_replicas: int | None = None
    pending: int | None = None
    running: int | None = None
    scheduled: int | None = None
    dead_letters: int | None = None
    workers: WorkerCounts | None = None
    queues: list[QueueStatus] | None = None
    schedules: list[ScheduleStatus] | None = None
    last_observed_time: str | None = None
    last_scale_time: str | None = None
    last_scale_reason: str | None = None
    requeue: RequeueStatus | None = None
    pod_start: PodStartStatus | None = None
    oldest_pending_since: str | None = Field(
        default=None,
        description="When the longest-waiting pending job was enqueued (all queues); absent "
        "while none waits. `kubectl get tq` shows its age in the OLDEST column.",
    )
    conditions: list[Condition] | None = None


class TaskQueue(ApiModel):
    """The whole resource as the operator reads it."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    api_version: Literal["taskqueue.dev/v1alpha1"] = "taskqueue.dev/v1alpha1"
    kind: Literal["TaskQueue"] = "TaskQueue"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: TaskQueueSpec

    @model_validator(mode="after")
    def _cronjob_names_fit(self) -> TaskQueue:
        name = str(self.metadata.get("name", ""))
        for schedule in self.spec.schedules:
            if len(name) + 1 + len(schedule.name) > MAX_CRONJOB_NAME:
                raise ValueError(
                    f"metadata.name and schedules[].name {schedule.name!r} together must fit "
                    f"a CronJob name: at most {MAX_CRONJOB_NAME - 1} characters"
                )
        return self

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "default"))
