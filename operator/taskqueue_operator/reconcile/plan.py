"""One tick's plan: (spec, observation, loop state) -> (new state, status, effects). Pure.

The controller observes, calls `plan`, runs the effects one by one (adapters/executor.py)
and folds what they gave back into the state with `record_outcomes`. Nothing here does
I/O or reads a clock: `observation.time` is the tick's moment.

A failed effect never stops the others: its key gets a failure with a streak and a
backoff (that effect alone waits), the next status carries it as a condition naming the
user's field, and the first failure of a streak posts one Warning Event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from taskqueue_contract.failures import FailureKind
from taskqueue_contract.timestamps import format_kubernetes

from taskqueue_operator.api.models import (
    REQUEUE_ANNOTATION,
    RequeueStatus,
    TaskQueue,
    TaskQueueStatus,
)
from taskqueue_operator.observation import Observation
from taskqueue_operator.reconcile import drift
from taskqueue_operator.reconcile.abandoned import (
    InTransit,
    find_abandoned,
    stuck_in_transit,
    worker_alive_since,
)
from taskqueue_operator.reconcile.effects import (
    AnnotatePod,
    ApplyChild,
    DeleteChild,
    Effect,
    EffectError,
    Outcome,
    PatchStatus,
    PostEvent,
    RecoverAbandoned,
    RequeueFailed,
    ReturnInTransit,
    Scale,
)
from taskqueue_operator.reconcile.fields import with_user_fields
from taskqueue_operator.reconcile.labels import (
    DELETION_COST_ANNOTATION,
    cronjob_name,
    worker_deployment_name,
)
from taskqueue_operator.reconcile.pod_start import PodStarts, measure
from taskqueue_operator.reconcile.pods import pod_problems
from taskqueue_operator.reconcile.prewarm import Prewarm, prewarm, schedule_runs
from taskqueue_operator.reconcile.schedules import desired_cronjobs
from taskqueue_operator.reconcile.status import (
    Health,
    Refusal,
    ScaleInfo,
    build_status,
    patch_due,
    pod_start_status,
    status_dict,
)
from taskqueue_operator.reconcile.workers import WORKER_CONTAINER, desired_deployment
from taskqueue_operator.scaling.policy import ScalerState, decide

BUSY_WORKER_DELETION_COST = 10000
"""A pod's deletion cost per busy work loop: one busy loop outranks an idle pod, and a pod
with more busy loops outlives one with fewer (the ReplicaSet removes the cheapest)."""
VANISHED_POD_MEMORY_SECONDS = 3600.0
MAX_BACKOFF_SECONDS = 60.0
_CHILD_EFFECTS = ("apply/", "delete/")


@dataclass(frozen=True)
class EffectFailure:
    """A streak of failures of one effect key."""

    error: EffectError
    streak: int
    since: float
    retry_at: float
    subject: str
    """What failed, for people: `Deployment backtests-workers`, `scale`..."""


@dataclass(frozen=True)
class LoopState:
    """Everything one TaskQueue's loop carries from tick to tick."""

    scaler: ScalerState = field(default_factory=ScalerState)
    generation: int | None = None
    """The generation the children were last checked for."""
    last_scale: tuple[str, str] | None = None
    redis_reachable: bool | None = None
    in_transit_seen: Mapping[InTransit, float] = field(default_factory=dict)
    requeued_token: str | None = None
    requeue: RequeueStatus | None = None
    failures: Mapping[str, EffectFailure] = field(default_factory=dict)
    announced_pods: frozenset[tuple[str, str]] = frozenset()
    """(pod, reason) pairs already told in an Event: one Event per problem, not per tick."""
    suspended: bool = False
    status: dict[str, Any] | None = None
    """The status last written (as sent), to tell whether a patch is due."""
    status_model: TaskQueueStatus | None = None
    """The same as a TaskQueueStatus, which build_status continues from."""
    status_written_at: float = 0.0
    recovered_jobs: int = 0
    scale_deferred: bool = False
    """Last tick marked pods (deletion costs) for a scale-down it then held back."""
    pod_starts: PodStarts = field(default_factory=PodStarts)


@dataclass(frozen=True)
class PlanSettings:
    counter_patch_interval: float = 2.0
    """Status writes for counters alone at most this often (the controller raises it
    with the number of TaskQueues, to share a write budget)."""


@dataclass(frozen=True)
class Plan:
    state: LoopState
    status: dict[str, Any]
    effects: tuple[Effect, ...]
    scale: ScaleInfo
    decision_reason: str | None = None
    wake_at: float | None = None
    """Tick again by then even if nothing happens: a schedule's pre-warm window opens or
    closes."""


def backoff_seconds(streak: int) -> float:
    """1, 2, 4 ... 60 s: a refused child is retried, but not 60 times a minute."""
    return float(min(MAX_BACKOFF_SECONDS, 2 ** max(0, streak - 1)))


def _due(state: LoopState, key: str, now: float) -> bool:
    failure = state.failures.get(key)
    return failure is None or failure.retry_at <= now


def _subject(effect: Effect) -> str:
    if isinstance(effect, ApplyChild | DeleteChild):
        return f"{effect.kind} {effect.name}"
    if isinstance(effect, AnnotatePod):
        return f"Pod {effect.pod}"
    return effect.key


# ------------------------------------------------------------------------- plan


def plan(
    taskqueue: TaskQueue,
    observation: Observation,
    state: LoopState,
    settings: PlanSettings | None = None,
) -> Plan:
    settings = settings or PlanSettings()
    now = observation.time
    generation = taskqueue.metadata.get("generation")
    effects: list[Effect] = []
    if generation != state.generation:
        # A new spec deserves a fresh try of every child at once.
        state = replace(
            state,
            failures={k: v for k, v in state.failures.items() if not k.startswith(_CHILD_EFFECTS)},
        )

    state, transition = _redis_transition(state, observation)
    effects += transition
    suspended = observation.redis is not None and observation.redis.suspended
    if suspended != state.suspended:
        effects.append(_suspension_event(suspended, taskqueue))
        state = replace(state, suspended=suspended)

    if observation.redis is not None:
        state, recovery = _recovery(taskqueue, observation, state)
        effects += recovery
        seen = observation.children
        starts = measure(state.pod_starts, seen.pods, seen.pods_seen_at, observation.redis.workers)
        state = replace(state, pod_starts=starts)

    warm = _prewarm(taskqueue, observation, state)
    scale, decision_reason, state, scaling = _scaling(
        taskqueue, observation, state, suspended, warm
    )
    effects += scaling

    dry_run = observation.dry_run
    refused_by_dry_run = (
        dry_run is not None and dry_run.generation == generation and bool(dry_run.refusals)
    )
    if not refused_by_dry_run:
        state, children = _children(taskqueue, observation, state, scale.desired_replicas)
        effects += children

    problems = pod_problems(observation.children.pods, WORKER_CONTAINER)
    state, pod_events = _pod_events(state, problems)
    effects += pod_events

    health = _health(taskqueue, observation, state, problems, suspended, refused_by_dry_run)
    built = build_status(
        taskqueue,
        observation,
        scale,
        state.status_model,
        state.requeue,
        health=health,
        pod_start=pod_start_status(state.pod_starts),
    )
    status = status_dict(built)
    if patch_due(
        state.status, status, now - state.status_written_at, settings.counter_patch_interval
    ):
        effects.append(PatchStatus(status, built))
    return Plan(
        state=replace(state, generation=generation),
        status=status,
        effects=tuple(effects),
        scale=scale,
        decision_reason=decision_reason,
        wake_at=warm.wake_at,
    )


def _redis_transition(state: LoopState, observation: Observation) -> tuple[LoopState, list[Effect]]:
    """One Event per change of reachability, not one per tick."""
    reachable = observation.redis is not None
    if state.redis_reachable is reachable:
        return state, []
    events: list[Effect] = []
    if not reachable:
        reason = _unreachable_reason(observation.redis_failure_reason)
        events.append(
            PostEvent("Warning", reason, observation.redis_error or "Redis did not answer")
        )
    elif state.redis_reachable is False:
        events.append(PostEvent("Normal", "RedisReachable", "Redis answers again"))
    return replace(state, redis_reachable=reachable), events


def _unreachable_reason(kind: str | None) -> str:
    """An outage is `RedisUnreachable`; anything a user must fix (a missing Secret, a wrong
    password or certificate) is named as such."""
    try:
        failure = FailureKind(kind or FailureKind.CONNECTION_FAILED)
    except ValueError:
        return kind or "RedisUnreachable"
    return "RedisUnreachable" if failure.transient else failure.value


def _suspension_event(suspended: bool, taskqueue: TaskQueue) -> PostEvent:
    if suspended:
        return PostEvent(
            "Warning",
            "WorkersSuspended",
            "`rq suspend` is in effect: the workers take no new jobs and the operator does not "
            f"add workers; `rq resume` (key prefix {taskqueue.spec.redis.key_prefix}) resumes",
        )
    return PostEvent("Normal", "WorkersResumed", "`rq resume`: workers take jobs again")


def _recovery(
    taskqueue: TaskQueue, observation: Observation, state: LoopState
) -> tuple[LoopState, list[Effect]]:
    redis = observation.redis
    assert redis is not None
    effects: list[Effect] = []
    children = observation.children
    horizon = observation.time - VANISHED_POD_MEMORY_SECONDS
    vanished = {name for name, seen in children.vanished_pods.items() if seen >= horizon}
    alive = worker_alive_since(dict(children.pods), WORKER_CONTAINER)
    abandoned = find_abandoned(redis.workers, set(children.pods), vanished, alive)
    if abandoned and _due(state, "recover-abandoned", observation.time):
        policy = taskqueue.spec.scaling.abandoned_jobs if taskqueue.spec.scaling else "requeue"
        effects.append(RecoverAbandoned(tuple(abandoned), policy))

    observed = [(q.name, job_id) for q in redis.queues for job_id in q.in_transit]
    seen, due = stuck_in_transit(dict(state.in_transit_seen), observed, redis.time)
    state = replace(state, in_transit_seen=seen)
    if due and _due(state, "return-in-transit", observation.time):
        effects.append(ReturnInTransit(tuple(due)))

    token = (taskqueue.metadata.get("annotations") or {}).get(REQUEUE_ANNOTATION)
    done = ((state.status or {}).get("requeue") or {}).get("token")
    if (
        token
        and token not in (done, state.requeued_token)
        and _due(state, "requeue-failed", observation.time)
    ):
        effects.append(RequeueFailed(token, tuple(taskqueue.spec.queues)))
    return state, effects


def _prewarm(taskqueue: TaskQueue, observation: Observation, state: LoopState) -> Prewarm:
    """The workers the schedules want up around their slots (autoscaled pools only)."""
    spec = taskqueue.spec
    if spec.scaling is None or not spec.schedules:
        return Prewarm()
    cronjobs = observation.children.cronjobs
    runs = {
        s.name: schedule_runs(cronjobs.get(cronjob_name(taskqueue.name, s.name)))
        for s in spec.schedules
    }
    return prewarm(
        spec.schedules,
        runs,
        observation.time,
        state.pod_starts.median,
        spec.scaling.poll_interval_seconds,
    )


def _scaling(
    taskqueue: TaskQueue,
    observation: Observation,
    state: LoopState,
    suspended: bool,
    warm: Prewarm,
) -> tuple[ScaleInfo, str | None, LoopState, list[Effect]]:
    spec = taskqueue.spec
    if spec.scaling is None:
        return ScaleInfo(desired_replicas=spec.fixed_replicas), None, state, []
    deployment = observation.deployment
    current = deployment.replicas if deployment.exists else spec.scaling.min_replicas
    decision = decide(
        spec.scaling,
        observation.redis,
        current,
        state.scaler,
        observation.time,
        pod_start=state.pod_starts.median,
        prewarm=warm.workers,
        prewarm_reason=warm.reason,
        processes=spec.worker.processes,
    )
    replicas, reason, limited = decision.replicas, decision.reason, decision.limited
    if suspended and replicas > current:
        # Suspended workers take no jobs: more of them would only cost.
        replicas, limited = current, "rq suspend: holding the workers there are"
        reason = f"{reason}; {limited}"
    state = replace(state, scaler=decision.state)
    effects: list[Effect] = []
    if replicas != current and deployment.exists and _due(state, "scale", observation.time):
        marks: list[AnnotatePod] = []
        if replicas < current and spec.scaling.protect_busy_workers:
            marks = _deletion_costs(observation)
        if marks and not state.scale_deferred:
            # The ReplicaSet controller ranks pods from its own watch cache: a scale sent
            # right after the marks can reach it first and remove a busy pod. Mark now,
            # scale on the next tick (the marks are then seen by the watches; if busy pods
            # changed meanwhile, mark again and scale at once: a tick's delay at most).
            effects += marks
            held = replace(state, scale_deferred=True)
            why = f"{reason}; marking pods before the scale-down"
            return _scale_info(held, replicas, limited), why, held, effects
        effects += marks
        effects.append(
            Scale(
                worker_deployment_name(taskqueue.name),
                replicas,
                current,
                reason,
                frozenset(m.key for m in marks),
            )
        )
        state = replace(state, last_scale=(format_kubernetes(observation.time), reason))
    state = replace(state, scale_deferred=False)
    desired = replicas if deployment.exists else current
    return _scale_info(state, desired, limited), reason, state, effects


def _scale_info(state: LoopState, desired: int, limited: str | None) -> ScaleInfo:
    last = state.last_scale
    return ScaleInfo(
        desired_replicas=desired,
        limited=limited,
        last_scale_time=last[0] if last else None,
        last_scale_reason=last[1] if last else None,
    )


def _deletion_costs(observation: Observation) -> list[AnnotatePod]:
    """Before a scale-down: the ReplicaSet removes the cheapest pods, so idle ones go."""
    busy = observation.redis.busy_workers_by_pod() if observation.redis else Counter[str]()
    effects = []
    for name, pod in sorted(observation.children.pods.items()):
        cost = str(BUSY_WORKER_DELETION_COST * busy[name])
        annotations = pod.get("metadata", {}).get("annotations") or {}
        if annotations.get(DELETION_COST_ANNOTATION) != cost:
            effects.append(AnnotatePod(name, ((DELETION_COST_ANNOTATION, cost),)))
    return effects


def desired_children(
    taskqueue: TaskQueue, live_deployment: Mapping[str, Any] | None, replicas: int
) -> list[dict[str, Any]]:
    """The Deployment and the CronJobs of this spec. An autoscaled Deployment that exists
    keeps its replicas (the scaler owns them); otherwise it gets `replicas`."""
    if taskqueue.spec.autoscaling and live_deployment is not None:
        replicas = int((live_deployment.get("spec") or {}).get("replicas") or 0)
    return [desired_deployment(taskqueue, replicas), *desired_cronjobs(taskqueue).values()]


def _children(
    taskqueue: TaskQueue, observation: Observation, state: LoopState, replicas: int
) -> tuple[LoopState, list[Effect]]:
    """Apply what is missing or drifted; delete CronJobs of removed schedules."""
    children = observation.children
    generation = taskqueue.metadata.get("generation")
    retry = any(key.startswith(_CHILD_EFFECTS) for key in state.failures)
    if not children.changed and state.generation == generation and not retry:
        return state, []
    effects: list[Effect] = []
    live = children.deployment
    desired = desired_children(taskqueue, live, replicas)
    wanted = {b["metadata"]["name"] for b in desired if b["kind"] == "CronJob"}
    for body in desired:
        kind, name = body["kind"], body["metadata"]["name"]
        current = live if kind == "Deployment" else children.cronjobs.get(name)
        effect: Effect
        if current is None:
            effect = ApplyChild(body, live=False)
        else:
            paths = drift.drifted_paths(
                {"metadata": {"labels": body["metadata"]["labels"]}, "spec": body["spec"]},
                current,
            )
            if not paths:
                continue
            effect = ApplyChild(body, live=True, drifted=tuple(paths))
        if _due(state, effect.key, observation.time):
            effects.append(effect)
    for name in sorted(drift.children_to_delete(set(children.cronjobs), wanted)):
        effect = DeleteChild("CronJob", name, "schedule removed")
        if _due(state, effect.key, observation.time):
            effects.append(effect)
    return state, effects


def _pod_events(state: LoopState, problems: list[Any]) -> tuple[LoopState, list[Effect]]:
    current = frozenset((p.pod, p.reason) for p in problems)
    events: list[Effect] = [
        PostEvent("Warning", "WorkerPodFailing", p.summary)
        for p in problems
        if (p.pod, p.reason) not in state.announced_pods
    ]
    return replace(state, announced_pods=current), events


def _failure_reason(key: str, error: EffectError) -> str:
    if key.startswith(_CHILD_EFFECTS):
        return "ChildRefused" if error.terminal else "ChildApplyFailed"
    if key == "scale":
        return "ScaleFailed"
    if key.startswith("annotate/"):
        return "DeletionCostFailed"
    if key == "status":
        return "StatusWriteFailed"
    return "RecoveryFailed"


def _health(
    taskqueue: TaskQueue,
    observation: Observation,
    state: LoopState,
    problems: list[Any],
    suspended: bool,
    refused_by_dry_run: bool,
) -> Health:
    refusals: list[Refusal] = []
    if refused_by_dry_run and observation.dry_run is not None:
        spec = taskqueue.model_dump(by_alias=True, exclude_none=True, mode="json")["spec"]
        for body, error in observation.dry_run.refusals:
            what = f"{body['kind']} {body['metadata']['name']}"
            message = with_user_fields(error.message, spec, body)
            refusals.append(Refusal(what, message, terminal=True, dry_run=True))
    for key, failure in sorted(state.failures.items()):
        if key in ("status",) or key.startswith("event/"):
            continue
        refusals.append(Refusal(failure.subject, failure.error.message, failure.error.terminal))
    return Health(refusals=tuple(refusals), pod_problems=tuple(problems), suspended=suspended)


# ---------------------------------------------------------------- after execution


def record_outcomes(
    taskqueue: TaskQueue, state: LoopState, outcomes: list[Outcome], now: float
) -> tuple[LoopState, list[Effect]]:
    """Fold what the effects gave into the state; the Events that report them."""
    failures = dict(state.failures)
    follow_ups: list[Effect] = []
    spec: dict[str, Any] | None = None
    for outcome in outcomes:
        effect = outcome.effect
        if outcome.skipped:
            continue
        if outcome.error is not None:
            error = outcome.error
            if isinstance(effect, ApplyChild):
                if spec is None:
                    spec = taskqueue.model_dump(by_alias=True, exclude_none=True, mode="json")[
                        "spec"
                    ]
                error = replace(error, message=with_user_fields(error.message, spec, effect.body))
            old = failures.get(effect.key)
            streak = old.streak + 1 if old is not None else 1
            since = old.since if old is not None else now
            failures[effect.key] = EffectFailure(
                error, streak, since, now + backoff_seconds(streak), _subject(effect)
            )
            if old is None and not isinstance(effect, PostEvent):
                # One Warning Event per streak; its reason says which effect failed.
                follow_ups.append(
                    PostEvent(
                        "Warning",
                        _failure_reason(effect.key, error),
                        f"{_subject(effect)}: {error.message}",
                    )
                )
            continue
        if effect.key in failures:
            del failures[effect.key]
            if not effect.key.startswith("event/"):
                follow_ups.append(
                    PostEvent("Normal", "Recovered", f"{_subject(effect)}: succeeded again")
                )
        state, more = _succeeded(state, effect, outcome.result, now)
        follow_ups += more
    return replace(state, failures=failures), follow_ups


def _succeeded(
    state: LoopState, effect: Effect, result: Any, now: float
) -> tuple[LoopState, list[Effect]]:
    if isinstance(effect, PatchStatus):
        return (
            replace(state, status=effect.status, status_model=effect.model, status_written_at=now),
            [],
        )
    if isinstance(effect, Scale):
        return state, [
            PostEvent(
                "Normal",
                "Scaled",
                f"scaled {effect.direction} from {effect.current} to {effect.replicas}: "
                f"{effect.reason}",
            )
        ]
    if isinstance(effect, ApplyChild):
        return state, [_applied_event(effect, result)]
    if isinstance(effect, DeleteChild):
        return state, [PostEvent("Normal", "Deleted", f"{effect.kind} {effect.name}: {effect.why}")]
    if isinstance(effect, RecoverAbandoned):
        handled = [r for r in result or [] if r.action in ("retried", "requeued", "failed")]
        if not handled:
            return state, []
        pods = ", ".join(sorted({r.pod for r in handled}))
        summary = ", ".join(f"{r.job_id} {r.action}" for r in handled[:10])
        return replace(state, recovered_jobs=state.recovered_jobs + len(handled)), [
            PostEvent(
                "Warning",
                "AbandonedJobsRecovered",
                f"{len(handled)} jobs of vanished workers ({pods}): {summary}",
            )
        ]
    if isinstance(effect, ReturnInTransit):
        seen = {k: v for k, v in state.in_transit_seen.items() if k not in set(effect.jobs)}
        state = replace(state, in_transit_seen=seen)
        returned = list(result or [])
        if not returned:
            return state, []
        return replace(state, recovered_jobs=state.recovered_jobs + len(returned)), [
            PostEvent(
                "Warning",
                "StuckJobsReturned",
                f"{len(returned)} jobs taken by a worker that died before starting them were "
                f"put back on their queues: {', '.join(returned[:10])}",
            )
        ]
    if isinstance(effect, RequeueFailed):
        count = int(result or 0)
        requeue = RequeueStatus(token=effect.token, requeued=count, time=format_kubernetes(now))
        return replace(state, requeued_token=effect.token, requeue=requeue), [
            PostEvent(
                "Normal",
                "RequeuedFailedJobs",
                f"requeued {count} failed jobs (annotation {REQUEUE_ANNOTATION}={effect.token})",
            )
        ]
    return state, []


def _applied_event(effect: ApplyChild, applied: Any) -> PostEvent:
    what = f"{effect.kind} {effect.name}"
    if not effect.live:
        # After an operator restart the cache may lag the watch: only new objects count.
        meta = (applied or {}).get("metadata") or {}
        if meta.get("generation") in (None, 1) and not (applied or {}).get("status"):
            return PostEvent("Normal", "Created", what)
        return PostEvent("Normal", "Adopted", f"{what}: already there, brought to the spec")
    if set(effect.drifted) == {".spec.replicas"}:
        wanted = effect.body["spec"].get("replicas")
        return PostEvent(
            "Normal",
            "ReplicasRestored",
            f"{what} was scaled outside the TaskQueue; set back to spec.replicas={wanted} "
            "(edit the TaskQueue's spec.replicas, or set spec.scaling, to change it)",
        )
    paths = ", ".join(effect.drifted[:5])
    return PostEvent(
        "Normal", "DriftCorrected", f"{what}: restored {paths} to the TaskQueue's spec"
    )
