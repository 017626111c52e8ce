"""One loop per TaskQueue: observe -> plan -> execute.

The loop owns no business logic. It observes (watch caches, one Redis poll, a dry-run of
a new spec's children) into one immutable `Observation`; the pure `plan` (reconcile/plan.py)
turns it and the loop's state into the status and a list of typed effects; the executor
(adapters/executor.py) runs each effect on its own, and `record_outcomes` folds what they
gave into the next state. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
import redis.asyncio as aioredis
from taskqueue_contract.keys import Keys
from taskqueue_contract.redaction import redact

from taskqueue_operator import metrics
from taskqueue_operator.adapters.executor import EventSink, Executor, effect_error
from taskqueue_operator.adapters.kube import Kube
from taskqueue_operator.adapters.redis_observer import RedisConnections, RedisObserver
from taskqueue_operator.adapters.timeline import Timeline
from taskqueue_operator.api.models import TaskQueue, TaskQueueStatus
from taskqueue_operator.observation import (
    ChildrenSnapshot,
    DryRun,
    Observation,
    deployment_observation,
)
from taskqueue_operator.rates import JobCounters, OutcomeWindow
from taskqueue_operator.reconcile.abandoned import worker_died
from taskqueue_operator.reconcile.effects import Outcome, Scale
from taskqueue_operator.reconcile.plan import (
    VANISHED_POD_MEMORY_SECONDS,
    LoopState,
    Plan,
    PlanSettings,
    desired_children,
    plan,
    record_outcomes,
)
from taskqueue_operator.reconcile.status import invalid_spec_message, invalid_spec_status
from taskqueue_operator.reconcile.workers import WORKER_CONTAINER


@dataclass(frozen=True)
class LoopSettings:
    """Timings of the per-TaskQueue loop."""

    fixed_poll_interval: float = 1.0
    """Observation interval when autoscaling is off (spec.scaling has its own)."""
    counter_patch_interval: float = 2.0
    """Status writes for counters alone (pending, running...) at most this often."""
    counter_writes_per_second: float = 50.0
    """All TaskQueues together: counter-only status writes share this budget, so a
    thousand busy queues do not mean a thousand API writes per second."""
    secret_refresh_interval: float = 60.0
    """Re-read the Redis URL Secret this often (and at once after a Redis error)."""
    redis_timeout: float = 2.0
    """One observation may take this long before Redis counts as unreachable."""


def _parsed_status(status: dict[str, Any] | None) -> TaskQueueStatus | None:
    """A status written by us before (or another version): unreadable means start over."""
    if not status:
        return None
    try:
        return TaskQueueStatus.model_validate(status)
    except pydantic.ValidationError:
        return None


def sleep_seconds(poll_interval: float, wake_at: float | None, now: float) -> float:
    """Until the next tick: the poll interval, or less when the plan asked to be woken
    earlier (a schedule's pre-warm window opens or closes before the next poll)."""
    if wake_at is None:
        return poll_interval
    return min(poll_interval, max(0.0, wake_at - now))


class TaskQueueGone(Exception):
    """The TaskQueue no longer exists: its loop ends."""


@dataclass
class ChildCache:
    """The latest watch events of this TaskQueue's children, kept in memory."""

    deployment: dict[str, Any] | None = None
    cronjobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    vanished_pods: dict[str, float] = field(default_factory=dict)
    """Pods we saw and then saw go (deleted, or finished for good), with when."""
    pods_seen_at: dict[str, float] = field(default_factory=dict)
    """When each live pod's first event came."""
    dirty: bool = True

    def record(self, kind: str, event_type: str, body: dict[str, Any]) -> bool:
        """Keep the latest state; True when the loop should tick now: the children need a
        drift check, or a worker died (its jobs are recovered without waiting for a poll)."""
        name = body["metadata"]["name"]
        gone = event_type == "DELETED"
        if kind == "Deployment":
            self.deployment = None if gone else body
        elif kind == "CronJob":
            if gone:
                self.cronjobs.pop(name, None)
            else:
                self.cronjobs[name] = body
        elif kind == "Pod":
            phase = (body.get("status") or {}).get("phase")
            before = self.pods.get(name)
            if gone or phase in ("Failed", "Succeeded"):  # evicted or done: its worker is dead
                self.pods.pop(name, None)
                self.pods_seen_at.pop(name, None)
                self.vanished_pods[name] = time.time()
                return worker_died(before, None, WORKER_CONTAINER)
            self.pods[name] = body
            self.pods_seen_at.setdefault(name, time.time())
            # Pods never need a drift check; a death is worth a tick at once.
            return worker_died(before, body, WORKER_CONTAINER)
        else:
            raise ValueError(f"unexpected child kind {kind}")
        self.dirty = True
        return True

    def replace(self, kind: str, bodies: list[dict[str, Any]]) -> None:
        """A fresh list of one kind supersedes what the watch told. After a watch gap (410
        Gone, then a re-list) kopf sends the objects that exist, but no DELETED event for
        those removed meanwhile: without this, a child deleted while the API server was out
        of reach stayed cached, so it was never re-created."""
        if kind == "Deployment":
            cached = {} if self.deployment is None else {"": self.deployment}
        else:
            cached = dict(self.cronjobs if kind == "CronJob" else self.pods)
        listed = {body["metadata"]["name"] for body in bodies}
        for body in cached.values():
            if body["metadata"]["name"] not in listed:
                self.record(kind, "DELETED", body)
        for body in bodies:
            self.record(kind, "ADDED", body)

    def remember(self, applied: dict[str, Any]) -> None:
        """A child we just wrote: its watch event may come after the next tick."""
        if applied.get("kind") == "Deployment":
            self.deployment = applied
        else:
            self.cronjobs[applied["metadata"]["name"]] = applied

    def forget_cronjob(self, name: str) -> None:
        self.cronjobs.pop(name, None)

    def set_replicas(self, replicas: int) -> None:
        """Our scale patch, until the Deployment's watch event catches up."""
        if self.deployment is not None:
            self.deployment = {
                **self.deployment,
                "spec": {**(self.deployment.get("spec") or {}), "replicas": replicas},
            }

    def snapshot(self) -> ChildrenSnapshot:
        """The plan's view: copies of the containers (the watch replaces bodies, never
        mutates them in place). Taking it consumes `dirty`."""
        horizon = time.time() - VANISHED_POD_MEMORY_SECONDS
        for name in [n for n, seen in self.vanished_pods.items() if seen < horizon]:
            del self.vanished_pods[name]
        snapshot = ChildrenSnapshot(
            deployment=self.deployment,
            cronjobs=dict(self.cronjobs),
            pods=dict(self.pods),
            vanished_pods=dict(self.vanished_pods),
            pods_seen_at=dict(self.pods_seen_at),
            changed=self.dirty,
        )
        self.dirty = False
        return snapshot


class TaskQueueLog(logging.LoggerAdapter[logging.Logger]):
    """Every line names the whole TaskQueue: kopf's format cuts logger names to 20 chars."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{(self.extra or {}).get('taskqueue')}] {msg}", kwargs


class TaskQueueLoop:
    """The controller of one TaskQueue, alive while the TaskQueue exists."""

    def __init__(
        self,
        body: dict[str, Any],
        kube: Kube,
        connections: RedisConnections,
        post_event: EventSink,
        settings: LoopSettings | None = None,
        clock: Callable[[], float] = time.time,
        listings: dict[str, int] | None = None,
        on_gone: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.body = body
        self.on_gone = on_gone
        """Told when a re-list shows the TaskQueue deleted (no DELETED event came)."""
        self.kube = kube
        self.connections = connections
        self.post_event = post_event
        self.settings = settings or LoopSettings()
        self.clock = clock
        self.children = ChildCache()
        self.listings = {} if listings is None else listings
        """Listing (re-list) events seen per kind, shared by all loops (the registry's)."""
        self.resynced_listings = dict(self.listings)
        """`listings` when this loop last read its children from the API."""
        self.wake = asyncio.Event()
        self.log = TaskQueueLog(
            logging.getLogger("taskqueue.loop"), {"taskqueue": f"{self.namespace}/{self.name}"}
        )
        status = body.get("status") or None
        self.state = LoopState(status=status, status_model=_parsed_status(status))
        self.invalid_spec: pydantic.ValidationError | None = None
        """Why the operator's model refused the body last parsed (the CRD let it through)."""
        self.redis = RedisObserver(
            kube,
            self.namespace,
            connections,
            self.settings.secret_refresh_interval,
            self.settings.redis_timeout,
        )
        self.dry_run: DryRun | None = None
        self._task: asyncio.Task[None] | None = None
        self._parsed: tuple[tuple[Any, str], TaskQueue] | None = None
        self.last_observation: Observation | None = None
        self.last_plan: Plan | None = None
        self.timeline = Timeline()
        """The dashboard's last hour (saved in the TaskQueue's Redis)."""
        self.outcomes = OutcomeWindow()
        # From the loop's start: the workers of a new TaskQueue count from their first job
        # even when Redis was first read after it.
        self.job_counters = JobCounters(last_time=clock())
        """finished / failed job totals per queue: counters that live (and end) with the loop."""
        self.executor = Executor(
            kube,
            self.namespace,
            self.name,
            lambda: self.body,
            post_event,
            self.log,
            # Through `self.children`: the registry may hand the loop another cache.
            remember=lambda applied: self.children.remember(applied),
            forget_cronjob=lambda name: self.children.forget_cronjob(name),
            set_replicas=lambda replicas: self.children.set_replicas(replicas),
            clock=clock,
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def recovered_jobs(self) -> int:
        return self.state.recovered_jobs

    def start(self) -> None:
        self.connections.loops += 1
        self._task = asyncio.create_task(self.run(), name=f"taskqueue:{self.namespace}/{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self.connections.loops -= 1
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def update_body(self, body: dict[str, Any]) -> None:
        """Our own status patches come back as events too: only a new spec wakes the loop."""
        old_generation = self.body["metadata"].get("generation")
        self.body = body
        if body["metadata"].get("generation") != old_generation:
            self.wake.set()

    def child_event(self, kind: str, event_type: str, body: dict[str, Any]) -> None:
        """A watch event of a child: cache it and let the loop check for drift."""
        if self.children.record(kind, event_type, body):
            self.wake.set()

    async def run(self) -> None:
        failures = 0
        schedule = metrics.TickLag()
        while True:
            interval = self.settings.fixed_poll_interval
            started = time.monotonic()
            schedule.started(started)
            try:
                interval = await self.tick()
                failures = 0
            except asyncio.CancelledError:
                raise
            except TaskQueueGone:
                return
            except Exception as error:  # a failure outside any effect (an observation)
                failures += 1
                # The traceback once per streak: an API server away for a minute would
                # otherwise print sixty of them.
                log = self.log.exception if failures == 1 else self.log.warning
                log("tick failed (%d in a row): %s", failures, redact(str(error))[:500])
            finally:
                metrics.TICK_DURATION.observe(time.monotonic() - started)
            self.wake.clear()
            # Monotonic, not self.clock: the lag is the event loop's, whatever clock the
            # plan is given.
            schedule.sleeping_until(time.monotonic() + interval)
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=interval)
            except TimeoutError:
                continue
            schedule.woken()

    # ----------------------------------------------------------------------- tick

    def parse(self) -> TaskQueue | None:
        """The validated spec, parsed again only when the generation or metadata moved."""
        generation = self.body["metadata"].get("generation")
        key = (generation, repr(self.body["metadata"].get("annotations")))
        if self._parsed is not None and self._parsed[0] == key:
            return self._parsed[1]
        try:
            parsed = TaskQueue.model_validate(self.body)
        except pydantic.ValidationError as error:
            self._parsed = None
            self.invalid_spec = error
            return None
        self._parsed = (key, parsed)
        return parsed

    async def tick(self) -> float:
        """One pass: observe, plan, execute. Returns the seconds until the next one."""
        taskqueue = self.parse()
        if taskqueue is None:
            if self.invalid_spec is not None:
                await self.report_invalid_spec(self.invalid_spec)
            return self.settings.fixed_poll_interval * 10
        scaling = taskqueue.spec.scaling
        interval = scaling.poll_interval_seconds if scaling else self.settings.fixed_poll_interval

        observation = await self.observe(taskqueue)
        settings = PlanSettings(
            counter_patch_interval=max(
                self.settings.counter_patch_interval,
                self.connections.loops / self.settings.counter_writes_per_second,
            )
        )
        planned = plan(taskqueue, observation, self.state, settings)
        self.log.debug("plan: %s (%s)", [e.key for e in planned.effects], planned.decision_reason)
        self.executor.redis_url = self.redis.url
        self.executor.key_prefix = taskqueue.spec.redis.key_prefix
        outcomes = await self.executor.run(planned.effects, observation.time)
        self.state, follow_ups = record_outcomes(taskqueue, planned.state, outcomes, self.clock())
        await self.executor.post(follow_ups)
        self.report(taskqueue, observation, planned, outcomes)
        await self.save_timeline(taskqueue, observation)
        return sleep_seconds(interval, planned.wake_at, self.clock())

    async def report_invalid_spec(self, error: pydantic.ValidationError) -> None:
        """A body the operator's model refuses (the CRD let it through): say which field,
        once per generation, in an Event and in the status."""
        generation = self.body["metadata"].get("generation")
        message = invalid_spec_message(error.errors())
        status = invalid_spec_status(self.state.status, generation, message, self.clock())
        if status == self.state.status:
            return
        self.post_event(self.body, "Warning", "InvalidSpec", message)
        await self.kube.patch_status(self.namespace, self.name, status)
        self.state = dataclasses.replace(self.state, status=status, status_model=None)

    # ------------------------------------------------------------------- observe

    async def observe(self, taskqueue: TaskQueue) -> Observation:
        """Everything the plan needs, in one immutable value."""
        await self.resync_children()
        now = self.clock()
        redis_observation, failure = await self.redis.observe(
            taskqueue.spec, now, departed=self.job_counters.workers
        )
        await self.dry_run_children(taskqueue)
        children = self.children.snapshot()
        observation = Observation(
            time=now,
            redis=redis_observation,
            redis_error=failure.describe() if failure else None,
            redis_failure_reason=failure.reason if failure else None,
            deployment=deployment_observation(children),
            children=children,
            dry_run=self.dry_run,
        )
        return observation

    async def resync_children(self) -> None:
        """Read the children from the API once a watch re-listed (after a gap, e.g. an API
        server restart): the re-list cannot tell what was deleted meanwhile. A re-list of
        TaskQueues means a gap of every watch; a re-list of one kind, a gap of that one."""
        listings = dict(self.listings)  # taken first: re-lists while we read count again
        if listings == self.resynced_listings:
            return
        everything = listings.get("TaskQueue") != self.resynced_listings.get("TaskQueue")
        if everything:
            uid = await self.kube.read_taskqueue_uid(self.namespace, self.name)
            if uid != self.body["metadata"].get("uid"):
                self.log.info("deleted while the watch was cut: stopping its loop")
                if self.on_gone is not None:
                    self.on_gone(self.body)
                raise TaskQueueGone(self.name)
        for kind in ("Deployment", "CronJob", "Pod"):
            if everything or listings.get(kind) != self.resynced_listings.get(kind):
                bodies = await self.kube.list_children(self.namespace, kind, self.name)
                self.children.replace(kind, bodies)
        self.resynced_listings = listings

    async def dry_run_children(self, taskqueue: TaskQueue) -> None:
        """Once per generation: would the API server take the children of this spec? What
        only the server validates (and the CRD cannot express) is refused here, naming the
        field, before anything is touched."""
        generation = taskqueue.metadata.get("generation")
        if self.dry_run is not None and self.dry_run.generation == generation:
            return
        scaling = taskqueue.spec.scaling
        replicas = scaling.min_replicas if scaling else taskqueue.spec.fixed_replicas
        refusals = []
        for body in desired_children(taskqueue, self.children.deployment, replicas):
            try:
                await self.kube.apply(body, dry_run=True)
            except Exception as error:
                failure = effect_error(error)
                if not failure.terminal:
                    # The API server is away or busy: the tick goes on without a verdict
                    # (an apply would meet the same), and the next tick asks again.
                    self.log.info("dry-run of %s: %s", body["kind"], failure.message[:300])
                    return
                refusals.append((body, failure))
        self.dry_run = DryRun(generation, tuple(refusals))
        if refusals:
            self.log.warning(
                "the API server refuses the children of generation %s: %s",
                generation,
                "; ".join(f"{b['kind']} {b['metadata']['name']}: {e.message}" for b, e in refusals),
            )

    async def redis_client(self, taskqueue: TaskQueue, now: float) -> aioredis.Redis:
        """The shared client of this TaskQueue's Redis (the dashboard reads through it)."""
        return await self.redis.client(taskqueue.spec.redis, now)

    # -------------------------------------------------------------------- report

    def report(
        self,
        taskqueue: TaskQueue,
        observation: Observation,
        planned: Plan,
        outcomes: list[Outcome],
    ) -> None:
        """What the dashboard and the metrics read: the last observation and plan."""
        self.last_observation = observation
        self.last_plan = planned
        redis = observation.redis
        if redis is not None:
            self.outcomes.update(redis)
            self.job_counters.declare(",".join(taskqueue.spec.queues))
            self.job_counters.update(redis)
        counters = self.job_counters
        self.timeline.record(
            observation,
            planned.scale.desired_replicas,
            (sum(counters.finished.values()), sum(counters.failed.values())),
            [
                (o.effect.current, o.effect.replicas, o.effect.reason)
                for o in outcomes
                if isinstance(o.effect, Scale) and o.ok
            ],
        )
        if redis is None:
            metrics.record_redis_error(self.namespace, self.name)

    async def save_timeline(self, taskqueue: TaskQueue, observation: Observation) -> None:
        """The dashboard's hour into Redis (read back once first); while Redis answers."""
        if observation.redis is None:
            return
        try:
            client = await self.redis_client(taskqueue, observation.time)
        except Exception:  # the observation just used it; the next tick tries again
            return
        key = Keys(taskqueue.spec.redis.key_prefix).dashboard_history(self.namespace, self.name)
        error = await self.timeline.sync(client, key, observation.time)
        if error is not None:
            message = f"the dashboard's history is not saved in Redis ({key}): {error}"
            self.log.warning("%s", message)
            self.post_event(self.body, "Warning", "DashboardHistoryNotSaved", message)

    def metric_sample(self) -> metrics.TaskQueueSample | None:
        """The gauges of this TaskQueue, read at scrape time."""
        observation, planned = self.last_observation, self.last_plan
        if observation is None or planned is None:
            return None
        taskqueue = self.parse()
        spec = taskqueue.spec if taskqueue is not None else None
        scaling = spec.scaling if spec is not None else None
        counters = self.job_counters
        return metrics.TaskQueueSample(
            namespace=self.namespace,
            name=self.name,
            observation=observation,
            desired_replicas=planned.scale.desired_replicas,
            failure_ratio=self.outcomes.failure_ratio(),
            target_queue_seconds=scaling.target_queue_seconds if scaling else None,
            target_backlog_per_worker=scaling.target_backlog_per_worker if scaling else None,
            max_replicas=(
                None if spec is None else scaling.max_replicas if scaling else spec.fixed_replicas
            ),
            jobs_finished=tuple((q, counters.finished[q]) for q in counters.queues()),
            jobs_failed=tuple((q, counters.failed[q]) for q in counters.queues()),
            pod_start_seconds=self.state.pod_starts.median,
        )
