"""kopf decorators only: watch events in, loops of the registry do the work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
import kubernetes

from taskqueue_operator.adapters.kube import Kube, load_config
from taskqueue_operator.adapters.leader import LeaderElection
from taskqueue_operator.api.models import GROUP, PLURAL, VERSION
from taskqueue_operator.reconcile.labels import MANAGED_BY, TASKQUEUE_LABEL
from taskqueue_operator.registry import LoopRegistry
from taskqueue_operator.settings import OperatorSettings

# kopf's label filter: a value, or kopf.PRESENT (kopf does not export the token's type).
MANAGED: Mapping[str, Any] = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    TASKQUEUE_LABEL: kopf.PRESENT,
}
_registry: LoopRegistry | None = None
_tasks: list[asyncio.Task[None]] = []
_runners: list[Any] = []
_kube: Kube | None = None


def _json(body: kopf.RawBody) -> dict[str, Any]:
    """kopf types a watched object as a TypedDict of the few fields kopf itself reads; it
    is the API server's whole JSON object, which our loops read as such."""
    return cast(dict[str, Any], body)


def post_event(body: dict[str, Any], event_type: str, reason: str, message: str) -> None:
    raw = cast(kopf.RawBody, body)  # the TaskQueue's JSON object, as kopf's watch gave it
    kopf.event(kopf.Body(raw), type=event_type, reason=reason, message=message)


def registry() -> LoopRegistry:
    if _registry is None:
        raise RuntimeError("the operator has not started")
    return _registry


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """`memo.operator` is our OperatorSettings, put there by `main` (kopf.run(memo=...))."""
    global _registry, _kube
    options: OperatorSettings = memo.operator
    # Our own group for kopf's bookkeeping, should it ever write any.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Events come from our loops; kopf's own log lines become Events only when they warn.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.reconnect_backoff = 1.0
    load_config()
    _kube = await Kube.connect()
    _registry = LoopRegistry(_kube, post_event, options.loop_settings())
    if options.dashboard_port:
        from taskqueue_operator.dashboard import serve

        _runners.append(await serve(_registry, options.dashboard_port, options.dashboard_host))
    if options.leader_election_namespace:
        _registry.active = False
        leader = LeaderElection(
            kubernetes.client.CoordinationV1Api(),
            options.leader_election_namespace,
            options.identity,
            name=options.leader_election_name,
            lease_seconds=options.leader_election_lease_duration,
            renew_deadline=options.leader_election_renew_deadline,
            retry_period=options.leader_election_retry_period,
        )
        _tasks.append(asyncio.create_task(leader.run(_registry.activate, _registry.deactivate)))


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    # The election first: a leader stops its loops, then releases the Lease, so a standby
    # takes over at once instead of after the lease duration.
    for task in _tasks:
        task.cancel()
    for task in _tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            logging.getLogger("taskqueue.leader").exception("leader election ended with")
    _tasks.clear()
    for runner in _runners:
        await runner.cleanup()
    if _registry is not None:
        await _registry.stop_all()
    if _kube is not None:
        await _kube.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def taskqueue_event(event: kopf.RawEvent, **_: Any) -> None:
    await registry().taskqueue_event(event.get("type"), _json(event["object"]))


def _route(kind: str, event: kopf.RawEvent) -> None:
    body = _json(event["object"])
    meta = body["metadata"]
    owner = (meta["namespace"], meta["labels"][TASKQUEUE_LABEL])
    registry().child_event(owner, kind, event.get("type"), body)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def deployment_event(event: kopf.RawEvent, **_: Any) -> None:
    _route("Deployment", event)


@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED)
async def cronjob_event(event: kopf.RawEvent, **_: Any) -> None:
    _route("CronJob", event)


@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
    _route("Pod", event)
