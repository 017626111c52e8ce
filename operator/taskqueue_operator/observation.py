"""What the operator observed of one TaskQueue: plain data, shared by status and scaling."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskqueue_contract import timestamps
from taskqueue_contract.keys import job_id_of_execution

BUSY_STATES = frozenset({"busy"})


@dataclass(frozen=True)
class QueueStats:
    """Counts of one RQ queue. `running` counts only unexpired started entries."""

    name: str
    pending: int = 0
    running: int = 0
    scheduled: int = 0
    deferred: int = 0
    failed: int = 0
    finished: int = 0
    oldest_enqueued_at: str | None = None
    """RQ's ISO timestamp of the job at the head of the queue (the longest wait)."""
    in_transit: tuple[str, ...] = ()
    """Job ids in RQ's intermediate list: taken by a worker, not started yet (first 100)."""

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest pending job has waited; 0 for an empty queue."""
        enqueued = timestamps.epoch(self.oldest_enqueued_at) if self.pending else None
        return 0.0 if enqueued is None else max(0.0, now - enqueued)


@dataclass(frozen=True)
class WorkerInfo:
    """One RQ worker hash. `hostname` is the pod name in our pods."""

    name: str
    state: str
    hostname: str | None
    queues: tuple[str, ...] = ()
    executions: tuple[str, ...] = ()
    """Started executions, as RQ keys them: `<job id>:<execution id>`."""
    dead: bool = False
    birth: str = ""
    """RQ's ISO timestamp of the worker's start: orders workers of one pod."""
    # Lifetime counters RQ keeps in the worker hash: the source of service-time estimates.
    successful_job_count: int = 0
    failed_job_count: int = 0
    total_working_time: float = 0.0

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(sorted({job_id_of_execution(e) for e in self.executions}))

    @property
    def busy(self) -> bool:
        return self.state in BUSY_STATES or bool(self.job_ids)


@dataclass(frozen=True)
class RedisObservation:
    """One poll of Redis, at wall-clock `time` (seconds since the epoch)."""

    time: float
    queues: tuple[QueueStats, ...]
    workers: tuple[WorkerInfo, ...] = ()
    maxmemory_policy: str | None = None
    """`maxmemory-policy` when Redis lets us read its CONFIG (managed Redis may not)."""
    maxmemory: int | None = None
    suspended: bool = False
    """`rq suspend` is in effect for this key prefix: workers take no new jobs."""
    departed: tuple[WorkerInfo, ...] = ()
    """Hashes of workers asked for by name (seen before) that left the queues' worker
    sets: RQ keeps a stopped worker's hash 60 s, with its final job counters."""

    @property
    def pending(self) -> int:
        return sum(q.pending for q in self.queues)

    @property
    def running(self) -> int:
        return sum(q.running for q in self.queues)

    @property
    def scheduled(self) -> int:
        return sum(q.scheduled for q in self.queues)

    @property
    def failed(self) -> int:
        return sum(q.failed for q in self.queues)

    @property
    def finished(self) -> int:
        return sum(q.finished for q in self.queues)

    @property
    def live_workers(self) -> tuple[WorkerInfo, ...]:
        return tuple(w for w in self.workers if not w.dead)

    @property
    def busy_workers(self) -> int:
        return sum(1 for w in self.live_workers if w.busy)

    @property
    def idle_workers(self) -> int:
        return len(self.live_workers) - self.busy_workers

    def oldest_age(self) -> float:
        """Seconds the oldest pending job of any queue has waited; 0 when none waits."""
        return max((q.oldest_age(self.time) for q in self.queues), default=0.0)

    def busy_pods(self) -> set[str]:
        """Pods whose worker runs a job: they must survive a scale-down."""
        return set(self.busy_workers_by_pod())

    def busy_workers_by_pod(self) -> Counter[str]:
        """How many of each pod's work loops run a job (pods with none are absent)."""
        return Counter(w.hostname for w in self.live_workers if w.busy and w.hostname)


@dataclass(frozen=True)
class DeploymentObservation:
    """Replica counts of the worker Deployment as the API reports them."""

    exists: bool = False
    replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    updated_replicas: int = 0
    pods: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ChildrenSnapshot:
    """The TaskQueue's children as the watch caches hold them at the tick."""

    deployment: Mapping[str, Any] | None = None
    cronjobs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    vanished_pods: Mapping[str, float] = field(default_factory=dict)
    """Pods we saw and then saw go (deleted, or finished for good), with when."""
    pods_seen_at: Mapping[str, float] = field(default_factory=dict)
    """When the watch first told us of each live pod (ms precision, unlike the pod's
    creationTimestamp): where a pod start is measured from."""
    changed: bool = True
    """A watch event (or our own write) changed them since the last tick's check."""


@dataclass(frozen=True)
class EffectError:
    """Why the API server (or Redis) refused an effect, as the user should read it."""

    message: str
    code: int | None = None
    """The HTTP status of an API error; None for Redis and network errors."""
    reason: str | None = None
    """The API server's reason (Invalid, Forbidden, Conflict...), when it gave one."""
    fields: tuple[str, ...] = ()
    """The fields the API server named, as paths in the child (details.causes[].field)."""

    @property
    def terminal(self) -> bool:
        """Retrying cannot help until someone changes something: the spec (Invalid), or
        the operator's permissions (Forbidden)."""
        return self.code in (400, 403, 422)


@dataclass(frozen=True)
class DryRun:
    """A server-side dry-run of one generation's children: what the API server refused."""

    generation: int | None
    refusals: tuple[tuple[dict[str, Any], EffectError], ...] = ()
    """(the desired child, the API server's error) per refused child."""


@dataclass(frozen=True)
class Observation:
    """Everything one tick saw. `redis` is None when Redis could not be read."""

    time: float
    redis: RedisObservation | None
    redis_error: str | None
    deployment: DeploymentObservation
    redis_failure_reason: str | None = None
    """What kind of failure `redis_error` is (a contract FailureKind's value)."""
    children: ChildrenSnapshot = field(default_factory=ChildrenSnapshot)
    dry_run: DryRun | None = None
    """The latest dry-run of the children, when the current generation has one."""


def deployment_observation(children: ChildrenSnapshot) -> DeploymentObservation:
    """Replica counts of the cached worker Deployment; its pods not being deleted."""
    live = children.deployment
    pods = tuple(
        sorted(
            name
            for name, pod in children.pods.items()
            if not (pod.get("metadata") or {}).get("deletionTimestamp")
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
