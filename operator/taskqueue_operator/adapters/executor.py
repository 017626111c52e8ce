"""Run a plan's effects, each on its own: one failure is an `Outcome`, never an exception.

The only place where a tick writes: to the API server (apply, delete, scale, annotate,
status, Events) and to Redis (recovery). What the API server said is kept as the user
should read it (message, HTTP code, reason, the fields it named).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import kubernetes.client.exceptions
import kubernetes_asyncio.client.exceptions
import redis.exceptions
from taskqueue_contract.redaction import redact

from taskqueue_operator import metrics
from taskqueue_operator.adapters.kube import Kube
from taskqueue_operator.adapters.recovery import (
    recover_with_prefix,
    requeue_failed_with_prefix,
    return_in_transit,
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

# The async client's (our Kube) and the sync one's (leader election) errors alike.
API_ERRORS = (
    kubernetes.client.exceptions.ApiException,
    kubernetes_asyncio.client.exceptions.ApiException,
)
EventSink = Callable[[dict[str, Any], str, str, str], None]


def effect_error(error: BaseException) -> EffectError:
    """What went wrong, for a condition: the API server's own message, not its headers."""
    if isinstance(error, API_ERRORS):
        body: dict[str, Any] = {}
        with contextlib.suppress(TypeError, ValueError):  # not JSON: a proxy's text
            body = json.loads(error.body or "{}")
        message = str(body.get("message") or f"{error.status} {error.reason}")
        causes = (body.get("details") or {}).get("causes") or []
        fields = tuple(str(c["field"]) for c in causes if c.get("field"))
        return EffectError(
            message=redact(message)[:2000],
            code=error.status,
            reason=body.get("reason") or error.reason,
            fields=fields,
        )
    if isinstance(error, redis.exceptions.RedisError | OSError | TimeoutError):
        text = str(error) or type(error).__name__
        return EffectError(message=redact(f"{type(error).__name__}: {text}")[:2000])
    return EffectError(message=redact(f"{type(error).__name__}: {error}")[:2000])


class Executor:
    """Runs the effects of one TaskQueue's plans."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        body: Callable[[], dict[str, Any]],
        post_event: EventSink,
        log: logging.LoggerAdapter[logging.Logger],
        remember: Callable[[dict[str, Any]], None],
        forget_cronjob: Callable[[str], None],
        set_replicas: Callable[[int], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.body = body
        self.post_event = post_event
        self.log = log
        self.remember = remember
        """Keep a child we wrote in the cache: its watch event may come after the next tick."""
        self.forget_cronjob = forget_cronjob
        self.set_replicas = set_replicas
        self.clock = clock
        self.redis_url: str | None = None
        self.key_prefix = "rq"

    async def run(self, effects: Sequence[Effect], observed_at: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        failed: set[str] = set()
        for effect in effects:
            after = effect.after if isinstance(effect, Scale) else frozenset()
            if after & failed:
                outcomes.append(Outcome(effect, skipped=True))
                failed.add(effect.key)
                continue
            try:
                result = await self._run(effect, observed_at)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # one refused effect must not stop the others
                refused = effect_error(error)
                outcome = Outcome(effect, error=refused)
                failed.add(effect.key)
                self.log.warning("%s failed: %s", effect.key, refused.message[:500])
            else:
                outcome = Outcome(effect, result=result)
            outcomes.append(outcome)
        return outcomes

    async def post(self, events: Sequence[Effect]) -> None:
        """Follow-up Events: best effort, a failure is logged and dropped."""
        await self.run([e for e in events if isinstance(e, PostEvent)], self.clock())

    async def _run(self, effect: Effect, observed_at: float) -> Any:
        if isinstance(effect, PostEvent):
            self.post_event(self.body(), effect.type, effect.reason, effect.message)
            return None
        if isinstance(effect, ApplyChild):
            applied = await self.kube.apply(effect.body)
            self.remember(applied)
            if effect.live:
                self.log.info(
                    "%s %s drifted at %s: applied",
                    effect.kind,
                    effect.name,
                    ", ".join(effect.drifted[:5]),
                )
            return applied
        if isinstance(effect, DeleteChild):
            await self.kube.delete_cronjob(self.namespace, effect.name)
            self.forget_cronjob(effect.name)
            return None
        if isinstance(effect, AnnotatePod):
            await self.kube.annotate_pod(self.namespace, effect.pod, dict(effect.annotations))
            return None
        if isinstance(effect, Scale):
            await self.kube.scale_deployment(self.namespace, effect.deployment, effect.replicas)
            self.set_replicas(effect.replicas)
            metrics.SCALE_EVENTS.labels(self.namespace, self.name, effect.direction).inc()
            metrics.DECISION_LATENCY.labels(self.namespace, self.name).observe(
                max(0.0, self.clock() - observed_at)
            )
            return None
        if isinstance(effect, PatchStatus):
            await self.kube.patch_status(self.namespace, self.name, effect.status)
            return None
        url = self.redis_url
        if url is None:
            raise ConnectionError("no Redis URL yet")
        if isinstance(effect, RecoverAbandoned):
            results = await asyncio.to_thread(
                recover_with_prefix, url, self.key_prefix, list(effect.jobs), effect.policy
            )
            for result in results:
                if result.action in ("retried", "requeued", "failed"):
                    metrics.RECOVERED_JOBS.labels(self.namespace, self.name, result.action).inc()
            return results
        if isinstance(effect, ReturnInTransit):
            returned = await asyncio.to_thread(
                return_in_transit, url, self.key_prefix, list(effect.jobs)
            )
            if returned:
                metrics.RECOVERED_JOBS.labels(self.namespace, self.name, "returned").inc(
                    len(returned)
                )
            return returned
        if isinstance(effect, RequeueFailed):
            return await asyncio.to_thread(
                requeue_failed_with_prefix, url, self.key_prefix, list(effect.queues)
            )
        raise TypeError(f"unknown effect {effect!r}")
