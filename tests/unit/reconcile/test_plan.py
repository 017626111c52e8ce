"""The tick's plan: every effect it asks for, and how failures fold into the next plan."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from factories import make_taskqueue
from taskqueue_operator.api.models import REQUEUE_ANNOTATION, TaskQueue
from taskqueue_operator.observation import (
    ChildrenSnapshot,
    DeploymentObservation,
    DryRun,
    Observation,
    QueueStats,
    RedisObservation,
    WorkerInfo,
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
from taskqueue_operator.reconcile.plan import LoopState, Plan, plan, record_outcomes
from taskqueue_operator.reconcile.schedules import desired_cronjobs
from taskqueue_operator.reconcile.workers import desired_deployment

NOW = 1_800_000_000.0
SCHEDULE = {"name": "nightly", "schedule": "0 3 * * *", "function": "tasks.nightly"}
AUTOSCALED = {"minReplicas": 0, "maxReplicas": 10, "targetBacklogPerWorker": 5}


def taskqueue(worker: dict[str, Any] | None = None, **spec: Any) -> TaskQueue:
    return make_taskqueue(worker={"image": "registry.example/w:1", **(worker or {})}, **spec)


def redis(
    pending: int = 0, workers: tuple[WorkerInfo, ...] = (), suspended: bool = False, **queue: Any
) -> RedisObservation:
    return RedisObservation(
        time=NOW,
        queues=(QueueStats("high", pending=pending, **queue), QueueStats("default")),
        workers=workers,
        suspended=suspended,
    )


def live(body: dict[str, Any], **status: Any) -> dict[str, Any]:
    """A child as the API server returns it: what we applied plus a status."""
    return {**body, "status": status}


def observe(
    tq: TaskQueue,
    redis_observation: RedisObservation | None = None,
    *,
    replicas: int | None = None,
    ready: int | None = None,
    children: bool = True,
    pods: dict[str, dict[str, Any]] | None = None,
    at: float = NOW,
    **fields: Any,
) -> Observation:
    """An observation where the children exist as desired (unless `children=False`)."""
    replicas = tq.spec.fixed_replicas if replicas is None else replicas
    ready = replicas if ready is None else ready
    deployment = (
        live(desired_deployment(tq, replicas), readyReplicas=ready, updatedReplicas=replicas)
        if children
        else None
    )
    cronjobs = {n: live(c) for n, c in desired_cronjobs(tq).items()} if children else {}
    snapshot = ChildrenSnapshot(deployment=deployment, cronjobs=cronjobs, pods=pods or {})
    return Observation(
        time=at,
        redis=redis_observation if redis_observation is not None else redis(),
        redis_error=None,
        deployment=DeploymentObservation(
            exists=children, replicas=replicas, ready_replicas=ready, updated_replicas=replicas
        ),
        children=snapshot,
        **fields,
    )


def kinds(effects: tuple[Effect, ...]) -> list[str]:
    return [type(e).__name__ for e in effects]


def of(effects: tuple[Effect, ...], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def conditions(result: Plan) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in result.status["conditions"]}


def message(result: Plan, kind: str) -> str:
    return next(c["message"] for c in result.status["conditions"] if c["type"] == kind)


def succeed(tq: TaskQueue, result: Plan, **results: Any) -> tuple[LoopState, list[Effect]]:
    outcomes = [Outcome(e, result=results.get(type(e).__name__)) for e in result.effects]
    return record_outcomes(tq, result.state, outcomes, NOW)


# ---------------------------------------------------------------------- children


def test_a_new_taskqueue_gets_its_deployment_cronjobs_and_a_status() -> None:
    tq = taskqueue(schedules=[SCHEDULE])
    result = plan(tq, observe(tq, children=False), LoopState())
    applies = of(result.effects, ApplyChild)
    assert [(a.kind, a.name, a.live) for a in applies] == [
        ("Deployment", "backtests-workers", False),
        ("CronJob", "backtests-nightly", False),
    ]
    assert isinstance(result.effects[-1], PatchStatus)
    assert conditions(result)["Ready"] == ("False", "DeploymentMissing")
    assert conditions(result)["Reconciling"] == ("True", "Creating")

    state, events = succeed(tq, result, ApplyChild={"metadata": {"generation": 1}})
    assert [(e.reason, e.message) for e in events if isinstance(e, PostEvent)] == [
        ("Created", "Deployment backtests-workers"),
        ("Created", "CronJob backtests-nightly"),
    ]
    assert state.status == result.status


def test_children_as_desired_need_nothing_but_the_status() -> None:
    tq = taskqueue(schedules=[SCHEDULE])
    result = plan(tq, observe(tq), LoopState())
    assert kinds(result.effects) == ["PatchStatus"]
    assert conditions(result)["Ready"] == ("True", "WorkersReady")
    state, _ = succeed(tq, result)
    again = plan(tq, observe(tq, at=NOW + 1), state)
    assert again.effects == ()  # nothing changed: not even a status write


def test_drift_is_restored_and_a_users_scale_is_named_as_such() -> None:
    tq = taskqueue(replicas=2)
    observation = observe(tq)
    scaled = {
        **observation.children.deployment,
        "spec": {  # type: ignore[dict-item]
            **observation.children.deployment["spec"],
            "replicas": 5,
        },
    }  # type: ignore[index]
    observation = replace(observation, children=replace(observation.children, deployment=scaled))
    result = plan(tq, observation, LoopState())
    (apply,) = of(result.effects, ApplyChild)
    assert apply.live and apply.drifted == (".spec.replicas",)
    _, events = succeed(tq, result)
    (event,) = [e for e in events if isinstance(e, PostEvent)]
    assert event.reason == "ReplicasRestored"
    assert "spec.replicas=2" in event.message and "restored the spec" not in event.message


def test_other_drift_says_which_paths_it_restored() -> None:
    tq = taskqueue()
    observation = observe(tq)
    deployment = observation.children.deployment
    assert deployment is not None
    spec = {**deployment["spec"], "revisionHistoryLimit": 10}
    drifted = replace(observation.children, deployment={**deployment, "spec": spec})
    result = plan(tq, replace(observation, children=drifted), LoopState())
    _, events = succeed(tq, result)
    (event,) = [e for e in events if isinstance(e, PostEvent)]
    assert event.reason == "DriftCorrected" and ".spec.revisionHistoryLimit" in event.message


def test_a_removed_schedules_cronjob_is_deleted() -> None:
    with_schedule = taskqueue(schedules=[SCHEDULE])
    observation = observe(with_schedule)
    without = taskqueue()
    result = plan(without, observation, LoopState())
    (delete,) = of(result.effects, DeleteChild)
    assert (delete.kind, delete.name) == ("CronJob", "backtests-nightly")
    _, events = succeed(without, result)
    assert [e.reason for e in events if isinstance(e, PostEvent)] == ["Deleted"]


# ----------------------------------------------------------------------- scaling


def test_backlog_scales_up_at_once() -> None:
    tq = taskqueue(scaling=AUTOSCALED)
    result = plan(tq, observe(tq, redis(pending=20), replicas=1), LoopState())
    (scale,) = of(result.effects, Scale)
    assert (scale.current, scale.replicas, scale.after) == (1, 4, frozenset())
    assert result.status["desiredReplicas"] == 4
    state, events = succeed(tq, result)
    assert [e.reason for e in events if isinstance(e, PostEvent)] == ["Scaled"]
    assert state.last_scale is not None


def test_a_scale_down_marks_busy_pods_a_tick_before_it_scales() -> None:
    tq = taskqueue(scaling={**AUTOSCALED, "scaleDownDelay": "0s"})
    busy = WorkerInfo("w1", "busy", "pod-busy", executions=("j1:e1",))
    idle = WorkerInfo("w2", "idle", "pod-idle")
    pods = {name: {"metadata": {"name": name}} for name in ("pod-busy", "pod-idle", "pod-3")}
    observation = observe(tq, redis(workers=(busy, idle), running=1), replicas=3, pods=pods)
    first = plan(tq, observation, LoopState())
    annotations = {a.pod: dict(a.annotations) for a in of(first.effects, AnnotatePod)}
    cost = "controller.kubernetes.io/pod-deletion-cost"
    assert annotations == {
        "pod-busy": {cost: "10000"},
        "pod-idle": {cost: "0"},
        "pod-3": {cost: "0"},
    }
    # The ReplicaSet controller must see the marks before the scale: not in this tick.
    assert of(first.effects, Scale) == []
    assert first.status["desiredReplicas"] == 1

    marked = {name: {"metadata": {"name": name, "annotations": annotations[name]}} for name in pods}
    second_observation = replace(
        observation,
        time=NOW + 1,
        children=replace(observation.children, pods=marked),
    )
    second = plan(tq, second_observation, succeed(tq, first)[0])
    (scale,) = of(second.effects, Scale)
    assert scale.replicas == 1 and scale.after == frozenset()  # the busy floor, marks seen

    # Busy pods changed meanwhile: marked again and scaled at once (a tick's delay at most).
    flapped = replace(second_observation, redis=redis(workers=(idle,), running=0))
    third = plan(tq, flapped, succeed(tq, first)[0])
    assert {a.pod for a in of(third.effects, AnnotatePod)} == {"pod-busy"}
    (scale,) = of(third.effects, Scale)
    assert scale.after == {"annotate/pod-busy"}
    assert kinds(third.effects).index("Scale") > kinds(third.effects).index("AnnotatePod")


def test_rq_suspend_holds_the_pool_and_says_so() -> None:
    tq = taskqueue(scaling=AUTOSCALED)
    result = plan(tq, observe(tq, redis(pending=50, suspended=True), replicas=1), LoopState())
    assert of(result.effects, Scale) == []
    assert result.status["desiredReplicas"] == 1
    assert conditions(result)["WorkersSuspended"] == ("True", "Suspended")
    assert conditions(result)["Ready"] == ("False", "WorkersSuspended")
    assert [e.reason for e in of(result.effects, PostEvent)] == ["WorkersSuspended"]
    resumed = plan(tq, observe(tq, redis(pending=50), replicas=1), result.state)
    assert of(resumed.effects, Scale)[0].replicas == 10
    assert [e.reason for e in of(resumed.effects, PostEvent)] == ["WorkersResumed"]


# ---------------------------------------------------------------------- recovery


def test_jobs_of_a_vanished_pod_are_recovered() -> None:
    tq = taskqueue()
    gone = WorkerInfo("w1", "busy", "pod-gone", executions=("job-1:exec-1",))
    observation = observe(tq, redis(workers=(gone,), running=1))
    children = replace(observation.children, vanished_pods={"pod-gone": NOW - 5})
    result = plan(tq, replace(observation, children=children), LoopState())
    (recover,) = of(result.effects, RecoverAbandoned)
    assert [(j.job_id, j.pod) for j in recover.jobs] == [("job-1", "pod-gone")]
    assert recover.policy == "requeue"


def test_a_job_stuck_in_transit_goes_back_after_the_grace() -> None:
    tq = taskqueue()
    stuck = redis(in_transit=("job-9",))
    first = plan(tq, observe(tq, stuck), LoopState())
    assert of(first.effects, ReturnInTransit) == []
    later = plan(tq, observe(tq, replace(stuck, time=NOW + 20), at=NOW + 20), first.state)
    (back,) = of(later.effects, ReturnInTransit)
    assert back.jobs == (("high", "job-9"),)
    state, events = succeed(tq, later, ReturnInTransit=["job-9"])
    assert state.in_transit_seen == {}
    assert [e.reason for e in events if isinstance(e, PostEvent)] == ["StuckJobsReturned"]


def test_the_requeue_annotation_acts_once_per_token() -> None:
    tq = make_taskqueue(worker={"image": "w"})
    tq = tq.model_copy(
        update={"metadata": {**tq.metadata, "annotations": {REQUEUE_ANNOTATION: "t1"}}}
    )
    result = plan(tq, observe(tq), LoopState())
    (requeue,) = of(result.effects, RequeueFailed)
    assert requeue.token == "t1" and requeue.queues == ("high", "default")
    state, events = succeed(tq, result, RequeueFailed=7)
    assert [e.reason for e in events if isinstance(e, PostEvent)] == ["RequeuedFailedJobs"]
    again = plan(tq, observe(tq, at=NOW + 1), state)
    assert of(again.effects, RequeueFailed) == []
    assert again.status["requeue"]["token"] == "t1" and again.status["requeue"]["requeued"] == 7


# ------------------------------------------------------------------------ health


def test_a_missing_secret_is_not_an_unreachable_redis() -> None:
    tq = taskqueue()
    observation = replace(
        observe(tq),
        redis=None,
        redis_error="Secret quant/redis: 404 Not Found",
        redis_failure_reason="SecretMissing",
    )
    result = plan(tq, observation, LoopState(redis_reachable=True))
    (event,) = of(result.effects, PostEvent)
    assert (event.type, event.reason) == ("Warning", "SecretMissing")
    assert conditions(result)["RedisReachable"] == ("False", "SecretMissing")
    assert conditions(result)["Ready"] == ("False", "SecretMissing")


def test_a_crash_looping_worker_is_named_with_its_exit_code_once() -> None:
    tq = taskqueue(replicas=1)
    pod = {
        "metadata": {"name": "backtests-workers-abc"},
        "status": {
            "containerStatuses": [
                {
                    "name": "worker",
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                }
            ]
        },
    }
    observation = observe(tq, ready=0, pods={"backtests-workers-abc": pod})
    result = plan(tq, observation, LoopState())
    assert conditions(result)["Ready"] == ("False", "CrashLoopBackOff")
    assert "last exit code 1: Error" in message(result, "Ready")
    assert [e.reason for e in of(result.effects, PostEvent)] == ["WorkerPodFailing"]
    again = plan(tq, replace(observation, time=NOW + 1), result.state)
    assert of(again.effects, PostEvent) == []


# ---------------------------------------------------------------------- failures


def refused(field: str = "spec.template.spec.containers[0].resources.limits[cpu]") -> EffectError:
    return EffectError(
        message=f'Deployment.apps "backtests-workers" is invalid: {field}: Invalid value: "3"',
        code=422,
        reason="Invalid",
        fields=(field,),
    )


def test_a_dry_run_refusal_stalls_before_anything_is_touched_and_names_the_users_field() -> None:
    tq = make_taskqueue(
        worker={"image": "w", "resources": {"limits": {"cpu": "3"}}}, scaling=AUTOSCALED
    )
    body = desired_deployment(tq, 1)
    dry_run = DryRun(tq.metadata["generation"], ((body, refused()),))
    observation = replace(observe(tq, redis(pending=3), children=False), dry_run=dry_run)
    result = plan(tq, observation, LoopState())
    assert of(result.effects, ApplyChild) == []
    assert conditions(result)["Stalled"] == ("True", "ChildRefused")
    assert conditions(result)["Ready"] == ("False", "ChildRefused")
    assert result.status["pending"] == 3  # the counters keep coming
    assert result.status["observedGeneration"] == tq.metadata["generation"]
    assert "spec.worker.resources.limits.cpu" in message(result, "Stalled")


def test_a_refused_apply_becomes_a_condition_an_event_and_a_backoff_for_it_alone() -> None:
    tq = make_taskqueue(
        worker={"image": "w", "env": [{"name": "A", "value": "1"}]},
        scaling=AUTOSCALED,
        schedules=[SCHEDULE],
    )
    first = plan(tq, observe(tq, redis(pending=20), replicas=1, children=False), LoopState())
    deployment_apply = next(e for e in first.effects if isinstance(e, ApplyChild))
    env = deployment_apply.body["spec"]["template"]["spec"]["containers"][0]["env"]
    position = [e["name"] for e in env].index("A")
    field = f"spec.template.spec.containers[0].env[{position}].name"
    outcomes = [
        Outcome(e, error=refused(field)) if e is deployment_apply else Outcome(e)
        for e in first.effects
    ]
    state, events = record_outcomes(tq, first.state, outcomes, NOW)
    warnings = [e for e in events if isinstance(e, PostEvent) and e.type == "Warning"]
    assert [w.reason for w in warnings] == ["ChildRefused"]
    assert "spec.worker.env[0].name" in warnings[0].message

    second = plan(tq, observe(tq, redis(pending=20), at=NOW + 0.5, children=False), state)
    # Backing off, this effect alone (the CronJob is not in this test's cache: applied again).
    assert [a.kind for a in of(second.effects, ApplyChild)] == ["CronJob"]
    assert isinstance(second.effects[-1], PatchStatus)
    assert conditions(second)["Stalled"] == ("True", "ChildRefused")
    assert conditions(second)["ChildrenApplied"] == ("False", "Refused")
    assert "spec.worker.env[0].name" in message(second, "Ready")
    assert second.status["pending"] == 20

    third = plan(tq, observe(tq, redis(pending=20), at=NOW + 1.5, children=False), second.state)
    assert [a.kind for a in of(third.effects, ApplyChild)] == ["Deployment", "CronJob"]
    again, events = record_outcomes(
        tq, third.state, [Outcome(e, error=refused(field)) for e in third.effects[:1]], NOW + 1.5
    )
    assert again.failures["apply/Deployment/backtests-workers"].streak == 2
    assert [e for e in events if isinstance(e, PostEvent)] == []  # one Event per streak

    fixed = tq.model_copy(update={"metadata": {**tq.metadata, "generation": 4}})
    fourth = plan(fixed, observe(fixed, redis(pending=20), at=NOW + 2, children=False), again)
    assert "apply/Deployment/backtests-workers" in [e.key for e in fourth.effects]


def test_a_transient_failure_is_reconciling_not_stalled() -> None:
    tq = taskqueue(scaling=AUTOSCALED)
    first = plan(tq, observe(tq, redis(pending=20), replicas=1), LoopState())
    (scale,) = of(first.effects, Scale)
    error = EffectError("the server is currently unable to handle the request", code=503)
    state, events = record_outcomes(tq, first.state, [Outcome(scale, error=error)], NOW)
    assert [e.reason for e in events if isinstance(e, PostEvent)] == ["ScaleFailed"]
    second = plan(tq, observe(tq, redis(pending=20), replicas=1, at=NOW + 0.5), state)
    assert of(second.effects, Scale) == []
    assert conditions(second)["Stalled"][0] == "False"
    assert conditions(second)["Reconciling"] == ("True", "Retrying")
    later = plan(tq, observe(tq, redis(pending=20), replicas=1, at=NOW + 2), second.state)
    (retry,) = of(later.effects, Scale)
    recovered, events = record_outcomes(tq, later.state, [Outcome(retry)], NOW + 2)
    assert recovered.failures == {}
    assert [e.reason for e in events if isinstance(e, PostEvent)] == ["Recovered", "Scaled"]


def test_a_failed_status_write_is_planned_again() -> None:
    tq = taskqueue()
    first = plan(tq, observe(tq), LoopState())
    (patch,) = of(first.effects, PatchStatus)
    state, _ = record_outcomes(tq, first.state, [Outcome(patch, error=EffectError("503"))], NOW)
    assert state.status is None
    second = plan(tq, observe(tq, at=NOW + 1), state)
    assert kinds(second.effects) == ["PatchStatus"]


@pytest.mark.parametrize("effect_kind", ["ApplyChild", "Scale", "PatchStatus"])
def test_every_effect_has_a_key_for_its_failures(effect_kind: str) -> None:
    tq = taskqueue(scaling=AUTOSCALED)
    result = plan(tq, observe(tq, redis(pending=20), replicas=1, children=True), LoopState())
    fresh = plan(tq, observe(tq, children=False), LoopState())
    keys = {type(e).__name__: e.key for e in (*result.effects, *fresh.effects)}
    assert keys[effect_kind]


def test_an_outage_is_redis_unreachable_and_its_return_is_told() -> None:
    tq = taskqueue()
    down = replace(
        observe(tq),
        redis=None,
        redis_error="ConnectionError: refused",
        redis_failure_reason="ConnectionFailed",
    )
    lost = plan(tq, down, LoopState(redis_reachable=True))
    assert [(e.type, e.reason) for e in of(lost.effects, PostEvent)] == [
        ("Warning", "RedisUnreachable")
    ]
    assert conditions(lost)["RedisReachable"] == ("False", "ConnectionFailed")
    back = plan(tq, observe(tq, at=NOW + 1), lost.state)
    assert [(e.type, e.reason) for e in of(back.effects, PostEvent)] == [
        ("Normal", "RedisReachable")
    ]


# ---------------------------------------------------------------------- pre-warm


def test_a_pool_at_zero_is_prewarmed_before_a_slot_and_the_plan_wakes_for_the_window() -> None:
    soon = {**SCHEDULE, "schedule": "1 8 * * *"}  # NOW is 08:00:00 UTC
    tq = taskqueue(scaling=AUTOSCALED, schedules=[soon])
    early = plan(tq, observe(tq, replicas=0), LoopState())
    assert of(early.effects, Scale) == []
    # Unmeasured pod start 5 s + poll 1 s + margin 1 s: the window opens 7 s before 08:01.
    assert early.wake_at == NOW + 60 - 7
    due = plan(tq, observe(tq, replicas=0, at=NOW + 53), LoopState())
    (scale,) = of(due.effects, Scale)
    assert scale.replicas == 1
    assert "pre-warm for schedule nightly at 08:01:00 UTC" in scale.reason


def test_a_fixed_pool_is_never_prewarmed() -> None:
    soon = {**SCHEDULE, "schedule": "1 8 * * *"}
    tq = taskqueue(replicas=0, schedules=[soon])
    result = plan(tq, observe(tq, at=NOW + 55), LoopState())
    assert of(result.effects, Scale) == [] and result.wake_at is None


def test_deletion_costs_count_the_busy_loops_of_each_pod() -> None:
    tq = taskqueue(scaling={**AUTOSCALED, "scaleDownDelay": "0s"}, worker={"processes": 4})

    def loop(pod: str, slot: int, busy: bool) -> WorkerInfo:
        executions = (f"j-{pod}-{slot}:e",) if busy else ()
        return WorkerInfo(f"{pod}-{slot}-0a1b2c3d", "busy" if busy else "idle", pod, executions)

    workers = (
        loop("pod-a", 0, True),  # one busy loop of four
        *(loop("pod-a", slot, False) for slot in (1, 2, 3)),
        loop("pod-b", 0, True),  # two busy loops
        loop("pod-b", 1, True),
        *(loop("pod-c", slot, False) for slot in range(4)),  # idle
    )
    pods = {name: {"metadata": {"name": name}} for name in ("pod-a", "pod-b", "pod-c")}
    result = plan(
        tq, observe(tq, redis(workers=workers, running=3), replicas=3, pods=pods), LoopState()
    )
    cost = "controller.kubernetes.io/pod-deletion-cost"
    marks = {a.pod: int(dict(a.annotations)[cost]) for a in of(result.effects, AnnotatePod)}
    assert marks == {"pod-a": 10000, "pod-b": 20000, "pod-c": 0}
    # 3 busy loops fit one pod of four, but they are in two pods: both stay.
    assert result.status["desiredReplicas"] == 2


def test_ready_counts_pods_and_their_workers() -> None:
    tq = taskqueue(replicas=3, worker={"processes": 4})
    result = plan(tq, observe(tq, replicas=3, ready=2), LoopState())
    assert message(result, "Ready") == "2/3 worker pods ready (4 workers each)"
    single = taskqueue(replicas=3)
    assert message(plan(single, observe(single, replicas=3, ready=2), LoopState()), "Ready") == (
        "2/3 workers ready"
    )
