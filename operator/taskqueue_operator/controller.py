"""One loop per TaskQueue: observe -> decide -> act -> report.

The loop owns no business logic: desired children, the scale decision and the status are
pure functions (reconcile/, scaling/). Here we only gather inputs (watch events cached in
memory, one Redis poll per tick) and write the differences (server-side apply, a replica
patch, a status patch when something changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
import redis.asyncio as aioredis
import redis.exceptions
from kubernetes.client.exceptions import ApiException
from taskqueue_worker.redis_tls import CLIENT_CERTIFICATE_KEYS, TLSConfigError, url_with_tls

from taskqueue_operator import metrics
from taskqueue_operator.adapters import redis_stats
from taskqueue_operator.adapters.kube import Kube, SecretUnreadable
from taskqueue_operator.adapters.recovery import (
    recover_with_prefix,
    requeue_failed_with_prefix,
    return_in_transit,
)
from taskqueue_operator.api.models import (
    REQUEUE_ANNOTATION,
    RedisSpec,
    RequeueStatus,
    TaskQueue,
    TaskQueueStatus,
)
from taskqueue_operator.observation import DeploymentObservation, Observation, RedisObservation
from taskqueue_operator.rates import OutcomeWindow
from taskqueue_operator.reconcile import drift
from taskqueue_operator.reconcile.abandoned import (
    container_deaths,
    find_abandoned,
    stuck_in_transit,
)
from taskqueue_operator.reconcile.labels import DELETION_COST_ANNOTATION, worker_deployment_name
from taskqueue_operator.reconcile.schedules import desired_cronjobs
from taskqueue_operator.reconcile.status import (
    ScaleInfo,
    build_status,
    patch_due,
    redact,
    status_dict,
    timestamp,
)
from taskqueue_operator.reconcile.workers import WORKER_CONTAINER, desired_deployment
from taskqueue_operator.scaling.policy import ScalerState, decide

EventSink = Callable[[dict[str, Any], str, str, str], None]
BUSY_POD_DELETION_COST = "10000"
VANISHED_POD_MEMORY_SECONDS = 3600.0
HISTORY_POINTS = 3600  # an hour of 1 s ticks, for the dashboard
IDLE_POD_DELETION_COST = "0"


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


class RedisConnections:
    """One client per Redis URL, shared by all TaskQueues that use it; and the fleet size."""

    def __init__(self) -> None:
        self._clients: dict[str, aioredis.Redis] = {}
        self.loops = 0

    def get(self, url: str) -> aioredis.Redis:
        if url not in self._clients:
            self._clients[url] = redis_stats.connect(url)
        return self._clients[url]

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _parsed_status(status: dict[str, Any] | None) -> TaskQueueStatus | None:
    """A status written by us before (or another version): unreadable means start over."""
    if not status:
        return None
    try:
        return TaskQueueStatus.model_validate(status)
    except pydantic.ValidationError:
        return None


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
    dirty: bool = True

    def record(self, kind: str, event_type: str, body: dict[str, Any]) -> bool:
        """Keep the latest state; True when the children need a drift check."""
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
            if gone or phase in ("Failed", "Succeeded"):  # evicted or done: its worker is dead
                self.pods.pop(name, None)
                self.vanished_pods[name] = time.time()
            else:
                self.pods[name] = body
            return False  # pods never need a reconcile, only the next tick's bookkeeping
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
        self.log = logging.getLogger(f"taskqueue.{self.namespace}.{self.name}")
        self.scaler_state = ScalerState()
        self.last_status: dict[str, Any] | None = body.get("status") or None
        self.previous_status = _parsed_status(self.last_status)
        """`last_status` as the model build_status continues from."""
        self.last_status_patch = 0.0
        self.last_scale: tuple[str | None, str | None] = (None, None)
        self.reconciled_generation: int | None = None
        self.invalid_generation: int | None = None
        self.redis_url: str | None = None
        """The connection URL: the spec's or its Secret's, with TLS files in the query."""
        self.redis_url_spec: RedisSpec | None = None
        self.redis_url_read_at = 0.0
        self.redis_was_reachable: bool | None = None
        self.recovered_jobs = 0
        self.in_transit_seen: dict[tuple[str, str], float] = {}
        self.requeued_token: str | None = None
        self.memory_policy_checked = 0.0
        self.memory_policy: tuple[str | None, int | None] = (None, None)
        self._task: asyncio.Task[None] | None = None
        self._parsed: tuple[tuple[Any, str], TaskQueue] | None = None
        self.last_observation: Observation | None = None
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_POINTS)
        self.scale_events: deque[dict[str, Any]] = deque(maxlen=200)
        self.outcomes = OutcomeWindow()

    # ------------------------------------------------------------------ lifecycle

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

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
        while True:
            interval = self.settings.fixed_poll_interval
            try:
                interval = await self.tick()
                failures = 0
            except asyncio.CancelledError:
                raise
            except TaskQueueGone:
                return
            except Exception as error:  # one bad tick must not end the loop
                failures += 1
                # The traceback once per streak: an API server away for a minute would
                # otherwise print sixty of them.
                log = self.log.exception if failures == 1 else self.log.warning
                log("tick failed (%d in a row): %s", failures, redact(str(error))[:500])
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=interval)

    # ----------------------------------------------------------------------- tick

    def parse(self) -> TaskQueue | None:
        """The validated spec, parsed again only when the generation or metadata moved."""
        generation = self.body["metadata"].get("generation")
        key = (generation, repr(self.body["metadata"].get("annotations")))
        if self._parsed is not None and self._parsed[0] == key:
            return self._parsed[1]
        try:
            parsed = TaskQueue.model_validate(self.body)
            self._parsed = (key, parsed)
            return parsed
        except pydantic.ValidationError as error:
            if self.invalid_generation != generation:
                self.invalid_generation = generation
                message = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
                )
                self.post_event(self.body, "Warning", "InvalidSpec", message[:1000])
            return None

    async def tick(self) -> float:
        """One pass. Returns the seconds until the next one."""
        taskqueue = self.parse()
        if taskqueue is None:
            return self.settings.fixed_poll_interval * 10
        scaling = taskqueue.spec.scaling
        interval = scaling.poll_interval_seconds if scaling else self.settings.fixed_poll_interval

        await self.resync_children()
        now = self.clock()
        redis_observation, redis_error = await self.observe_redis(taskqueue, now)
        deployment = self.deployment_observation()
        observation = Observation(now, redis_observation, redis_error, deployment)

        requeue = None
        if redis_observation is not None:
            await self.recover_abandoned_jobs(taskqueue, redis_observation)
            await self.return_stuck_in_transit(taskqueue, redis_observation)
            requeue = await self.requeue_on_annotation(taskqueue, now)
        scale = await self.decide_and_scale(taskqueue, observation)
        await self.reconcile_children(taskqueue, scale.desired_replicas)
        self.record_metrics(taskqueue, observation, scale)
        self.record_history(observation, scale)
        await self.report(taskqueue, observation, scale, requeue)
        return interval

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

    # ------------------------------------------------------------------- observe

    async def redis_client(self, taskqueue: TaskQueue, now: float) -> aioredis.Redis:
        """The shared client for the connection URL, re-read from its Secrets when stale,
        after a failure (a rotated password or certificate) or when spec.redis changed."""
        redis_spec = taskqueue.spec.redis
        stale = now - self.redis_url_read_at > self.settings.secret_refresh_interval
        from_secrets = redis_spec.url is None or redis_spec.tls is not None
        if (
            self.redis_url is None
            or self.redis_url_spec != redis_spec
            or (from_secrets and (stale or not self.redis_was_reachable))
        ):
            self.redis_url = await self.connection_url(redis_spec)
            self.redis_url_spec = redis_spec
            self.redis_url_read_at = now
        return self.connections.get(self.redis_url)

    async def connection_url(self, redis_spec: RedisSpec) -> str:
        """The URL from the spec or its Secret, plus the files of its TLS material."""
        url = redis_spec.url
        if url is None:
            ref = redis_spec.url_from.secret_key_ref  # type: ignore[union-attr]
            url = await self.kube.read_secret_key(self.namespace, ref.name, ref.key)
        tls = redis_spec.tls
        if tls is None:
            return url
        pems: dict[str, str] = {}
        if tls.ca_from is not None:
            ca = tls.ca_from.secret_key_ref
            pems["ssl_ca_certs"] = await self.kube.read_secret_key(self.namespace, ca.name, ca.key)
        if tls.client_certificate_secret_ref is not None:
            name = tls.client_certificate_secret_ref.name
            for argument, key in CLIENT_CERTIFICATE_KEYS.items():
                pems[argument] = await self.kube.read_secret_key(self.namespace, name, key)
        try:
            return await asyncio.to_thread(url_with_tls, url, pems)
        except TLSConfigError as error:
            raise TLSConfigError(f"redis.tls: {error}") from None

    async def observe_redis(
        self, taskqueue: TaskQueue, now: float
    ) -> tuple[RedisObservation | None, str | None]:
        try:
            client = await self.redis_client(taskqueue, now)
            observation = await asyncio.wait_for(
                redis_stats.read_stats(
                    client, taskqueue.spec.redis.key_prefix, taskqueue.spec.queues, now
                ),
                timeout=self.settings.redis_timeout,
            )
        except (redis.exceptions.RedisError, OSError, TimeoutError) as error:
            message = redact(
                f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            )
        except TLSConfigError as error:
            message = str(error)
        except (SecretUnreadable, ApiException) as error:
            message = redact(f"cannot read the Redis URL or TLS Secrets: {error}")
        except ValueError as error:  # redis-py refuses to parse the URL (scheme, port...)
            message = redact(f"invalid Redis URL: {error}")
        else:
            self.redis_transition(True, "Redis answered")
            return await self.with_memory_policy(client, observation, now), None
        self.redis_transition(False, message)
        return None, message

    async def with_memory_policy(
        self, client: aioredis.Redis, observation: RedisObservation, now: float
    ) -> RedisObservation:
        """An evicting maxmemory policy silently loses queued jobs: check it once a minute."""
        if now - self.memory_policy_checked > 60:
            self.memory_policy_checked = now
            self.memory_policy = await redis_stats.read_memory_policy(client)
        policy, limit = self.memory_policy
        return dataclasses.replace(observation, maxmemory_policy=policy, maxmemory=limit)

    def redis_transition(self, reachable: bool, message: str) -> None:
        """One Event per change of reachability, not one per tick."""
        if self.redis_was_reachable is reachable:
            return
        if not reachable:
            self.post_event(self.body, "Warning", "RedisUnreachable", message)
        elif self.redis_was_reachable is False:
            self.post_event(self.body, "Normal", "RedisReachable", "Redis answers again")
        self.redis_was_reachable = reachable

    async def recover_abandoned_jobs(self, taskqueue: TaskQueue, redis: RedisObservation) -> None:
        """Requeue (or fail) at once what RQ would notice only minutes later."""
        horizon = time.time() - VANISHED_POD_MEMORY_SECONDS
        vanished = self.children.vanished_pods
        for name in [n for n, seen in vanished.items() if seen < horizon]:
            del vanished[name]
        deaths = container_deaths(self.children.pods, WORKER_CONTAINER)
        abandoned = find_abandoned(redis.workers, set(self.children.pods), set(vanished), deaths)
        url = self.redis_url
        if not abandoned or url is None:
            return
        policy = taskqueue.spec.scaling.abandoned_jobs if taskqueue.spec.scaling else "requeue"
        results = await asyncio.to_thread(
            recover_with_prefix, url, taskqueue.spec.redis.key_prefix, abandoned, policy
        )
        handled = [r for r in results if r.action in ("retried", "requeued", "failed")]
        for result in handled:
            metrics.RECOVERED_JOBS.labels(self.namespace, self.name, result.action).inc()
        self.recovered_jobs += len(handled)
        if handled:
            pods = ", ".join(sorted({r.pod for r in handled}))
            summary = ", ".join(f"{r.job_id} {r.action}" for r in handled[:10])
            self.post_event(
                self.body,
                "Warning",
                "AbandonedJobsRecovered",
                f"{len(handled)} jobs of vanished workers ({pods}): {summary}",
            )

    async def return_stuck_in_transit(self, taskqueue: TaskQueue, redis: RedisObservation) -> None:
        """Jobs a worker took off a queue and died before starting: back on the queue now,
        not after RQ's 10-minute maintenance pass (which would then fail them)."""
        observed = [(q.name, job_id) for q in redis.queues for job_id in q.in_transit]
        self.in_transit_seen, due = stuck_in_transit(self.in_transit_seen, observed, redis.time)
        if not due or self.redis_url is None:
            return
        returned = await asyncio.to_thread(
            return_in_transit, self.redis_url, taskqueue.spec.redis.key_prefix, due
        )
        for item in due:
            self.in_transit_seen.pop(item, None)
        if returned:
            metrics.RECOVERED_JOBS.labels(self.namespace, self.name, "returned").inc(len(returned))
            self.recovered_jobs += len(returned)
            self.post_event(
                self.body,
                "Warning",
                "StuckJobsReturned",
                f"{len(returned)} jobs taken by a worker that died before starting them were "
                f"put back on their queues: {', '.join(returned[:10])}",
            )

    async def requeue_on_annotation(self, taskqueue: TaskQueue, now: float) -> RequeueStatus | None:
        """`taskqueue.dev/requeue-failed: <token>`: requeue the dead letters once per token.

        The handled token is kept in status, so an operator restart does not act twice.
        """
        token = (taskqueue.metadata.get("annotations") or {}).get(REQUEUE_ANNOTATION)
        done = ((self.last_status or {}).get("requeue") or {}).get("token")
        if not token or token in (done, self.requeued_token):
            return None
        url = self.redis_url
        if url is None:
            return None
        count = await asyncio.to_thread(
            requeue_failed_with_prefix, url, taskqueue.spec.redis.key_prefix, taskqueue.spec.queues
        )
        self.requeued_token = token
        self.post_event(
            self.body,
            "Normal",
            "RequeuedFailedJobs",
            f"requeued {count} failed jobs (annotation {REQUEUE_ANNOTATION}={token})",
        )
        return RequeueStatus(token=token, requeued=count, time=timestamp(now))

    def deployment_observation(self) -> DeploymentObservation:
        live = self.children.deployment
        pods = tuple(
            sorted(
                name
                for name, pod in self.children.pods.items()
                if not pod["metadata"].get("deletionTimestamp")
            )
        )
        if live is None:
            return DeploymentObservation(exists=False, pods=pods)
        status = live.get("status") or {}
        return DeploymentObservation(
            exists=True,
            replicas=int((live.get("spec") or {}).get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            pods=pods,
        )

    # -------------------------------------------------------------------- decide

    async def decide_and_scale(self, taskqueue: TaskQueue, observation: Observation) -> ScaleInfo:
        spec = taskqueue.spec
        if spec.scaling is None:
            return ScaleInfo(desired_replicas=spec.fixed_replicas)
        current = observation.deployment.replicas
        if not observation.deployment.exists:
            current = spec.scaling.min_replicas
        decision = decide(
            spec.scaling, observation.redis, current, self.scaler_state, observation.time
        )
        self.scaler_state = decision.state
        self.log.debug(
            "decision: pending=%s current=%s exists=%s -> %s (%s)",
            observation.redis.pending if observation.redis else None,
            current,
            observation.deployment.exists,
            decision.replicas,
            decision.reason,
        )
        if decision.changed and observation.deployment.exists:
            if decision.replicas < current and spec.scaling.protect_busy_workers:
                await self.protect_busy_pods(observation)
            await self.kube.scale_deployment(
                self.namespace, worker_deployment_name(self.name), decision.replicas
            )
            if self.children.deployment is not None:  # until the watch event catches up
                self.children.deployment.setdefault("spec", {})["replicas"] = decision.replicas
            self.last_scale = (timestamp(observation.time), decision.reason)
            direction = "up" if decision.replicas > current else "down"
            self.scale_events.append(
                {
                    "t": round(observation.time, 3),
                    "from": current,
                    "to": decision.replicas,
                    "reason": decision.reason,
                }
            )
            metrics.SCALE_EVENTS.labels(self.namespace, self.name, direction).inc()
            metrics.DECISION_LATENCY.labels(self.namespace, self.name).observe(
                max(0.0, self.clock() - observation.time)
            )
            self.post_event(
                self.body,
                "Normal",
                "Scaled",
                f"scaled {direction} from {current} to {decision.replicas}: {decision.reason}",
            )
        return ScaleInfo(
            desired_replicas=decision.replicas if observation.deployment.exists else current,
            limited=decision.limited,
            last_scale_time=self.last_scale[0],
            last_scale_reason=self.last_scale[1],
        )

    async def protect_busy_pods(self, observation: Observation) -> None:
        """Before a scale-down: the ReplicaSet removes the cheapest pods, so idle ones go."""
        busy = observation.redis.busy_pods() if observation.redis else set()
        for name, pod in list(self.children.pods.items()):
            cost = BUSY_POD_DELETION_COST if name in busy else IDLE_POD_DELETION_COST
            annotations = pod["metadata"].get("annotations") or {}
            if annotations.get(DELETION_COST_ANNOTATION) != cost:
                await self.kube.annotate_pod(self.namespace, name, {DELETION_COST_ANNOTATION: cost})

    # ----------------------------------------------------------------------- act

    async def reconcile_children(self, taskqueue: TaskQueue, replicas: int) -> None:
        """Apply what is missing or drifted; delete CronJobs of removed schedules."""
        generation = taskqueue.metadata.get("generation")
        if not self.children.dirty and self.reconciled_generation == generation:
            return
        self.children.dirty = False
        live = self.children.deployment
        if taskqueue.spec.autoscaling and live is not None:
            replicas = int((live.get("spec") or {}).get("replicas") or 0)  # the scaler owns it
        deployment = desired_deployment(taskqueue, replicas)
        await self.apply_if_drifted(deployment, live)

        wanted = desired_cronjobs(taskqueue)
        for name, cronjob in wanted.items():
            await self.apply_if_drifted(cronjob, self.children.cronjobs.get(name))
        for name in drift.children_to_delete(set(self.children.cronjobs), set(wanted)):
            await self.kube.delete_cronjob(self.namespace, name)
            self.children.cronjobs.pop(name, None)
            self.post_event(self.body, "Normal", "Deleted", f"CronJob {name}: schedule removed")
        self.reconciled_generation = generation

    async def apply_if_drifted(self, desired: dict[str, Any], live: dict[str, Any] | None) -> None:
        kind, name = desired["kind"], desired["metadata"]["name"]
        if live is not None:
            paths = drift.drifted_paths(
                {"metadata": {"labels": desired["metadata"]["labels"]}, "spec": desired["spec"]},
                live,
            )
            if not paths:
                return
            self.log.info("%s %s drifted at %s: applying", kind, name, ", ".join(paths[:5]))
        applied = await self.kube.apply(desired)
        # Remember what we wrote: the watch event may come after the next tick.
        if kind == "Deployment":
            self.children.deployment = applied
        else:
            self.children.cronjobs[name] = applied
        if live is None:
            # After an operator restart the cache may lag the watch: only new objects count.
            if applied["metadata"].get("generation") == 1 and not applied.get("status"):
                self.post_event(self.body, "Normal", "Created", f"{kind} {name}")
        else:
            self.post_event(self.body, "Normal", "Updated", f"{kind} {name}: restored the spec")

    # -------------------------------------------------------------------- report

    def record_history(self, observation: Observation, scale: ScaleInfo) -> None:
        """One point per tick for the dashboard's last hour."""
        self.last_observation = observation
        redis = observation.redis
        self.history.append(
            {
                "t": round(observation.time, 3),
                "pending": redis.pending if redis else None,
                "running": redis.running if redis else None,
                "workers": len(redis.live_workers) if redis else None,
                "desired": scale.desired_replicas,
                "ready": observation.deployment.ready_replicas,
            }
        )

    def record_metrics(
        self, taskqueue: TaskQueue, observation: Observation, scale: ScaleInfo
    ) -> None:
        metrics.record_observation(self.namespace, self.name, observation, scale.desired_replicas)
        if observation.redis is not None:
            self.outcomes.update(observation.redis)
            metrics.record_failure_ratio(self.namespace, self.name, self.outcomes.failure_ratio())
            for queue in observation.redis.queues:
                metrics.QUEUE_WAIT.labels(self.namespace, self.name, queue.name).set(
                    queue.oldest_age(observation.time)
                )
        if taskqueue.spec.scaling is not None:
            target = taskqueue.spec.scaling.target_queue_seconds
            if target is not None:
                metrics.TARGET_WAIT.labels(self.namespace, self.name).set(target)

    async def report(
        self,
        taskqueue: TaskQueue,
        observation: Observation,
        scale: ScaleInfo,
        requeue: RequeueStatus | None = None,
    ) -> None:
        built = build_status(taskqueue, observation, scale, self.previous_status, requeue)
        status = status_dict(built)
        since = observation.time - self.last_status_patch
        interval = max(
            self.settings.counter_patch_interval,
            self.connections.loops / self.settings.counter_writes_per_second,
        )
        if not patch_due(self.last_status, status, since, interval):
            return
        await self.kube.patch_status(self.namespace, self.name, status)
        self.last_status = status
        self.previous_status = built
        self.last_status_patch = observation.time
