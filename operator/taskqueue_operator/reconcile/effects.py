"""The typed effects a tick's plan asks for, and what executing one gave. Plain data.

The plan (reconcile/plan.py) decides; the executor (adapters/executor.py) runs each effect
on its own and reports an `Outcome`. Every effect has a `key`: failures, their streaks and
their backoff are kept per key, so one refused CronJob never stops the scaler, the status
or the other children.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# An effect's error is observed data (a dry-run's refusals are one), so it is defined
# with the observation, below the reconcile layer; it is re-exported here with the effects.
from taskqueue_operator.observation import EffectError as EffectError
from taskqueue_operator.reconcile.abandoned import AbandonedJob, AbandonedPolicy, InTransit


@dataclass(frozen=True)
class ApplyChild:
    """Server-side apply of a desired Deployment or CronJob (create, or restore drift)."""

    body: dict[str, Any]
    live: bool
    """The child exists: this restores `drifted` paths rather than creating it."""
    drifted: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def key(self) -> str:
        return f"apply/{self.kind}/{self.name}"


@dataclass(frozen=True)
class DeleteChild:
    kind: str
    name: str
    why: str

    @property
    def key(self) -> str:
        return f"delete/{self.kind}/{self.name}"


@dataclass(frozen=True)
class AnnotatePod:
    """Set a worker pod's deletion cost before a scale-down: the ReplicaSet removes the
    cheapest pods first, so idle ones go and busy ones stay."""

    pod: str
    annotations: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        return f"annotate/{self.pod}"


@dataclass(frozen=True)
class Scale:
    deployment: str
    replicas: int
    current: int
    reason: str
    after: frozenset[str] = frozenset()
    """Keys of effects that must have succeeded first (the deletion costs of a
    scale-down): without them the ReplicaSet might remove a busy pod."""

    @property
    def key(self) -> str:
        return "scale"

    @property
    def direction(self) -> str:
        return "up" if self.replicas > self.current else "down"


@dataclass(frozen=True)
class RecoverAbandoned:
    """Requeue (or fail, per policy) the started jobs of workers that no longer exist."""

    jobs: tuple[AbandonedJob, ...]
    policy: AbandonedPolicy

    @property
    def key(self) -> str:
        return "recover-abandoned"


@dataclass(frozen=True)
class ReturnInTransit:
    """Put back jobs a worker took off a queue and died before starting."""

    jobs: tuple[InTransit, ...]

    @property
    def key(self) -> str:
        return "return-in-transit"


@dataclass(frozen=True)
class RequeueFailed:
    """The `taskqueue.dev/requeue-failed` annotation: requeue the dead letters once."""

    token: str
    queues: tuple[str, ...]

    @property
    def key(self) -> str:
        return "requeue-failed"


@dataclass(frozen=True)
class PostEvent:
    type: str
    reason: str
    message: str

    @property
    def key(self) -> str:
        return f"event/{self.reason}"


@dataclass(frozen=True)
class PatchStatus:
    status: dict[str, Any]
    model: Any = None
    """The same status as a TaskQueueStatus: what the next build continues from."""

    @property
    def key(self) -> str:
        return "status"


Effect = (
    ApplyChild
    | DeleteChild
    | AnnotatePod
    | Scale
    | RecoverAbandoned
    | ReturnInTransit
    | RequeueFailed
    | PostEvent
    | PatchStatus
)


@dataclass(frozen=True)
class Outcome:
    effect: Effect
    error: EffectError | None = None
    result: Any = None
    """What the effect returned (recovered jobs, requeued count...), for follow-ups."""
    skipped: bool = field(default=False)
    """Not run: an effect it depends on failed."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped
