"""The TaskQueue status: a pure function of the spec, one observation and the last status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from taskqueue_contract.redaction import redact
from taskqueue_contract.timestamps import epoch, format_kubernetes

from taskqueue_operator.api.models import (
    Condition,
    PodStartStatus,
    QueueStatus,
    RequeueStatus,
    TaskQueue,
    TaskQueueStatus,
    WorkerCounts,
)
from taskqueue_operator.observation import Observation
from taskqueue_operator.reconcile.labels import selector_string, worker_selector
from taskqueue_operator.reconcile.pod_start import PodStarts
from taskqueue_operator.reconcile.pods import PodProblem

# Fields that move with every job; everything else is "structure" and is patched at once.
COUNTER_FIELDS = frozenset(
    {"pending", "running", "scheduled", "deadLetters", "workers", "queues", "oldestPendingSince"}
)
# Sent as null when None: a merge patch keeps what it does not name.
CLEARED_FIELDS = ("oldestPendingSince",)
# Not compared at all: it only says when the rest was last seen.
VOLATILE_FIELDS = frozenset({"lastObservedTime"})


@dataclass(frozen=True)
class ScaleInfo:
    """What the scaler decided this tick (or the fixed size), for the status."""

    desired_replicas: int
    limited: str | None = None
    last_scale_time: str | None = None
    last_scale_reason: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A child (or a write) the API server refused, as the status tells it."""

    subject: str
    """`Deployment backtests-workers`, `CronJob backtests-nightly`, `scale`..."""
    message: str
    """The API server's message, naming the user's field where one is behind it."""
    terminal: bool
    """Retrying cannot help until the spec (or the operator's permissions) changes."""
    dry_run: bool = False
    """Found by the dry-run of a new spec: nothing was touched."""


@dataclass(frozen=True)
class Health:
    """What the plan knows beyond one observation: refusals, pods, suspension."""

    refusals: tuple[Refusal, ...] = ()
    pod_problems: tuple[PodProblem, ...] = ()
    suspended: bool = False


# kstatus' "abnormal-true" conditions: True means something needs attention. The others
# (Ready, ChildrenApplied, RedisReachable, RedisEvictionSafe) are healthy when True.
ABNORMAL_WHEN_TRUE = frozenset(
    {"Reconciling", "Stalled", "WorkersSuspended", "DeadLetters", "ScalingLimited"}
)


def pod_start_status(starts: PodStarts) -> PodStartStatus | None:
    """The measured pod starts for the status; None before the first (the previous
    status' figure is kept then: an operator restart measures afresh)."""
    median = starts.median
    if median is None:
        return None
    return PodStartStatus(
        seconds=round(median, 2),
        last_seconds=round(starts.samples[-1], 2),
        samples=len(starts.samples),
    )


def condition_healthy(condition: dict[str, Any]) -> bool:
    """Whether a condition of ours is in its good state (Unknown never is)."""
    status = condition.get("status")
    if condition.get("type") in ABNORMAL_WHEN_TRUE:
        return status == "False"
    return status == "True"


def _condition(
    previous: dict[str, Condition],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> Condition:
    """Keep lastTransitionTime unless the status flips, as Kubernetes conditions do."""
    value = "True" if status else "False"
    old = previous.get(kind)
    since = old.last_transition_time if old is not None and old.status == value else now
    return Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def build_status(
    taskqueue: TaskQueue,
    observation: Observation,
    scale: ScaleInfo,
    previous: TaskQueueStatus | None,
    requeue: RequeueStatus | None = None,
    health: Health | None = None,
    pod_start: PodStartStatus | None = None,
) -> TaskQueueStatus:
    """The status to report. Counters survive a Redis outage: they show the last known values."""
    previous = previous or TaskQueueStatus()
    health = health or Health()
    now = format_kubernetes(observation.time)
    generation = taskqueue.metadata.get("generation")
    old_conditions = {c.type: c for c in previous.conditions or []}
    redis = observation.redis
    deployment = observation.deployment

    # From Redis, or the previous status' (None before the first read).
    pending: int | None
    running: int | None
    scheduled: int | None
    failed: int | None
    if redis is not None:
        queues = [
            QueueStatus(
                name=q.name,
                pending=q.pending,
                running=q.running,
                scheduled=q.scheduled,
                deferred=q.deferred,
                failed=q.failed,
            )
            for q in redis.queues
        ]
        workers = WorkerCounts(
            total=len(redis.live_workers), busy=redis.busy_workers, idle=redis.idle_workers
        )
        pending, running, scheduled, failed = (
            redis.pending,
            redis.running,
            redis.scheduled,
            redis.failed,
        )
    else:
        queues = list(previous.queues or [])
        workers = previous.workers or WorkerCounts()
        pending, running, scheduled, failed = (
            previous.pending,
            previous.running,
            previous.scheduled,
            previous.dead_letters,
        )

    if redis is not None:
        waiting = [
            moment
            for q in redis.queues
            if q.pending and (moment := epoch(q.oldest_enqueued_at)) is not None
        ]
        oldest_pending_since = format_kubernetes(min(waiting)) if waiting else None
    else:
        oldest_pending_since = previous.oldest_pending_since

    def condition(kind: str, status: bool, reason: str, message: str) -> Condition:
        return _condition(old_conditions, kind, status, reason, message, now, generation)

    ready = _ready(observation, scale, health, taskqueue.spec.worker.processes)
    conditions = [
        condition("Ready", *ready),
        condition("Reconciling", *_reconciling(observation, scale, health)),
        condition("Stalled", *_stalled(health)),
        condition("ChildrenApplied", *_children_applied(health)),
        _redis_condition(old_conditions, observation, now, generation),
        *_eviction_condition(old_conditions, observation, now, generation),
        _dead_letter_condition(old_conditions, queues, failed, now, generation),
        _scaling_condition(old_conditions, taskqueue, scale, now, generation),
        condition("WorkersSuspended", *_suspended(health, taskqueue)),
    ]
    return TaskQueueStatus(
        observed_generation=generation,
        selector=selector_string(worker_selector(taskqueue.name)),
        queue_names=",".join(taskqueue.spec.queues),
        replicas=deployment.replicas,
        desired_replicas=scale.desired_replicas,
        ready_replicas=deployment.ready_replicas,
        pending=pending,
        running=running,
        scheduled=scheduled,
        dead_letters=failed,
        workers=workers,
        queues=queues,
        schedules=previous.schedules,
        last_observed_time=now if redis is not None else previous.last_observed_time,
        last_scale_time=scale.last_scale_time or previous.last_scale_time,
        last_scale_reason=scale.last_scale_reason or previous.last_scale_reason,
        pod_start=pod_start or previous.pod_start,
        oldest_pending_since=oldest_pending_since,
        requeue=requeue or previous.requeue,
        conditions=conditions,
    )


def _redis_condition(
    old: dict[str, Condition], observation: Observation, now: str, generation: int | None
) -> Condition:
    if observation.redis is not None:
        return _condition(
            old, "RedisReachable", True, "Connected", "Redis answered", now, generation
        )
    message = redact(observation.redis_error or "Redis did not answer")
    reason = observation.redis_failure_reason or "ConnectionFailed"
    return _condition(old, "RedisReachable", False, reason, message, now, generation)


def _eviction_condition(
    old: dict[str, Condition], observation: Observation, now: str, generation: int | None
) -> list[Condition]:
    """Seed 004's allkeys-lru: with maxmemory set, an evicting policy drops queued jobs."""
    redis = observation.redis
    if redis is None or redis.maxmemory_policy is None:
        previous = old.get("RedisEvictionSafe")
        return [previous] if previous else []
    if redis.maxmemory and redis.maxmemory_policy != "noeviction":
        message = (
            f"maxmemory-policy {redis.maxmemory_policy} with maxmemory {redis.maxmemory}: "
            "Redis may evict queued jobs; set maxmemory-policy noeviction"
        )
        return [
            _condition(old, "RedisEvictionSafe", False, "EvictingPolicy", message, now, generation)
        ]
    return [
        _condition(
            old,
            "RedisEvictionSafe",
            True,
            "NoEviction",
            f"maxmemory-policy {redis.maxmemory_policy}",
            now,
            generation,
        )
    ]


def _dead_letter_condition(
    old: dict[str, Condition],
    queues: list[QueueStatus],
    failed: int | None,
    now: str,
    generation: int | None,
) -> Condition:
    if failed:
        per_queue = ", ".join(f"{q.name}={q.failed}" for q in queues if q.failed)
        message = f"{failed} failed jobs in the dead-letter registries ({per_queue})"
        return _condition(old, "DeadLetters", True, "FailedJobs", message, now, generation)
    return _condition(old, "DeadLetters", False, "NoFailedJobs", "no failed jobs", now, generation)


def _scaling_condition(
    old: dict[str, Condition],
    taskqueue: TaskQueue,
    scale: ScaleInfo,
    now: str,
    generation: int | None,
) -> Condition:
    if not taskqueue.spec.autoscaling:
        message = f"autoscaling off: spec.replicas={taskqueue.spec.fixed_replicas}"
        return _condition(old, "ScalingLimited", False, "FixedReplicas", message, now, generation)
    if scale.limited:
        return _condition(old, "ScalingLimited", True, "Limited", scale.limited, now, generation)
    return _condition(
        old, "ScalingLimited", False, "WithinLimits", "scaling freely", now, generation
    )


Verdict = tuple[bool, str, str]  # (status, reason, message)


def _told(refusals: Iterable[Refusal]) -> str:
    return "; ".join(f"{r.subject}: {r.message}" for r in refusals)


def _ready_counts(ready: int, desired: int, processes: int) -> str:
    if processes == 1:
        return f"{ready}/{desired} workers ready"
    return f"{ready}/{desired} worker pods ready ({processes} workers each)"


def _ready(
    observation: Observation, scale: ScaleInfo, health: Health, processes: int = 1
) -> Verdict:
    """Ready: the workers the TaskQueue wants run, reach Redis and take jobs. Its reason is
    the STATUS column of `kubectl get taskqueues`: the first thing to fix."""
    deployment = observation.deployment
    counts = _ready_counts(deployment.ready_replicas, scale.desired_replicas, processes)
    if observation.redis is None:
        reason = observation.redis_failure_reason or "RedisUnreachable"
        return False, reason, redact(observation.redis_error or "Redis did not answer")
    refused = [r for r in health.refusals if r.terminal]
    if refused:
        return False, "ChildRefused", _told(refused)
    if not deployment.exists:
        return False, "DeploymentMissing", "worker Deployment not found"
    if health.suspended:
        return False, "WorkersSuspended", f"`rq suspend` is in effect; {counts}"
    if deployment.ready_replicas < scale.desired_replicas:
        problems = health.pod_problems
        if problems:
            details = "; ".join(p.summary for p in problems[:3])
            return False, problems[0].reason, f"{counts}: {details}"
        return False, "WorkersNotReady", counts
    return True, "WorkersReady", counts


def _reconciling(observation: Observation, scale: ScaleInfo, health: Health) -> Verdict:
    """kstatus' Reconciling: the children are on their way to the spec."""
    deployment = observation.deployment
    transient = [r for r in health.refusals if not r.terminal]
    if transient:
        return True, "Retrying", _told(transient)
    if not deployment.exists:
        return True, "Creating", "creating the worker Deployment"
    if deployment.updated_replicas < deployment.replicas:
        message = f"{deployment.updated_replicas}/{deployment.replicas} workers updated"
        return True, "RollingOut", message
    if deployment.ready_replicas < scale.desired_replicas:
        message = f"{deployment.ready_replicas}/{scale.desired_replicas} workers ready"
        return True, "WorkersStarting", message
    return False, "Reconciled", "children match the spec"


def _stalled(health: Health) -> Verdict:
    """kstatus' Stalled: no progress until someone changes the spec (or permissions)."""
    refused = [r for r in health.refusals if r.terminal]
    if refused:
        what = "the dry-run of the new spec" if any(r.dry_run for r in refused) else "applying"
        message = _told(refused)
        return True, "ChildRefused", f"the API server refused {what}: {message}"
    return False, "Progressing", "nothing blocks the reconciliation"


def _children_applied(health: Health) -> Verdict:
    if health.refusals:
        reason = "Refused" if any(r.terminal for r in health.refusals) else "Failing"
        return False, reason, _told(health.refusals)
    return True, "Applied", "the Deployment and CronJobs match the spec"


def _suspended(health: Health, taskqueue: TaskQueue) -> Verdict:
    if health.suspended:
        message = (
            "`rq suspend` is in effect: workers take no new jobs and none are added; "
            f"`rq resume` (key prefix {taskqueue.spec.redis.key_prefix}) resumes"
        )
        return True, "Suspended", message
    return False, "NotSuspended", "workers take jobs"


def status_dict(status: TaskQueueStatus) -> dict[str, Any]:
    written = status.model_dump(by_alias=True, exclude_none=True)
    for key in CLEARED_FIELDS:
        written.setdefault(key, None)
    return written


def patch_due(
    previous: dict[str, Any] | None,
    current: dict[str, Any],
    seconds_since_last_patch: float,
    counter_interval: float,
) -> bool:
    """Write status only on change; counters alone at most every `counter_interval` seconds."""
    if previous is None:
        return True
    changed = {
        key
        for key in set(previous) | set(current)
        if key not in VOLATILE_FIELDS and previous.get(key) != current.get(key)
    }
    if not changed:
        return False
    if changed - COUNTER_FIELDS:
        return True
    return seconds_since_last_patch >= counter_interval


def invalid_spec_message(errors: list[Any]) -> str:
    """pydantic's errors of a TaskQueue body, each naming its field (`spec.worker...`)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)[:2000]


def invalid_spec_status(
    previous: dict[str, Any] | None, generation: int | None, message: str, now: float
) -> dict[str, Any]:
    """The status of a TaskQueue whose spec the operator cannot read: the counters it had,
    Ready and Stalled saying which field to fix."""
    status = dict(previous or {})
    old = {c.get("type"): c for c in status.get("conditions") or []}
    moment = format_kubernetes(now)

    def condition(kind: str, value: str, reason: str) -> dict[str, Any]:
        same = old.get(kind, {}).get("status") == value
        return {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": old[kind].get("lastTransitionTime") if same else moment,
            "observedGeneration": generation,
        }

    kept = [c for t, c in old.items() if t not in ("Ready", "Stalled", "Reconciling")]
    status["conditions"] = [
        condition("Ready", "False", "InvalidSpec"),
        condition("Stalled", "True", "InvalidSpec"),
        *kept,
    ]
    status["observedGeneration"] = generation
    return status
