"""Observe one TaskQueue's Redis: resolve its URL (Secrets, TLS files), read the stats.

A failure to resolve or read is data (a classified `RedisFailure`), never an exception:
the plan turns it into conditions and Events.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable

import redis.asyncio as aioredis
from taskqueue_contract.failures import FailureKind, RedisFailure, TLSConfigError, classify
from taskqueue_contract.tls import resolve_url, secret_refs

from taskqueue_operator.adapters import redis_stats
from taskqueue_operator.adapters.kube import Kube
from taskqueue_operator.api.models import RedisSpec, TaskQueueSpec
from taskqueue_operator.observation import RedisObservation

MEMORY_POLICY_INTERVAL = 60.0


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


class RedisObserver:
    """The Redis side of one TaskQueue's observation, with what it caches between ticks."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        connections: RedisConnections,
        secret_refresh_interval: float = 60.0,
        timeout: float = 2.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.connections = connections
        self.secret_refresh_interval = secret_refresh_interval
        self.timeout = timeout
        self.url: str | None = None
        """The connection URL: the spec's or its Secret's, with TLS files in the query."""
        self.url_spec: RedisSpec | None = None
        self.url_read_at = 0.0
        self.reachable = False
        self.memory_policy_checked = 0.0
        self.memory_policy: tuple[str | None, int | None] = (None, None)

    async def client(self, redis_spec: RedisSpec, now: float) -> aioredis.Redis:
        """The shared client for the connection URL, re-read from its Secrets when stale,
        after a failure (a rotated password or certificate) or when spec.redis changed."""
        stale = now - self.url_read_at > self.secret_refresh_interval
        from_secrets = redis_spec.url is None or redis_spec.tls is not None
        if (
            self.url is None
            or self.url_spec != redis_spec
            or (from_secrets and (stale or not self.reachable))
        ):
            self.url = await self.connection_url(redis_spec)
            self.url_spec = redis_spec
            self.url_read_at = now
        return self.connections.get(self.url)

    async def connection_url(self, redis_spec: RedisSpec) -> str:
        """The URL from the spec or its Secret, plus the files of its TLS material."""
        inline, refs = secret_refs(redis_spec.model_dump(by_alias=True, exclude_none=True))
        values = {
            ref: await self.kube.read_secret_key(self.namespace, ref.name, ref.key) for ref in refs
        }
        try:
            return await asyncio.to_thread(resolve_url, inline, values)
        except TLSConfigError as error:
            raise TLSConfigError(f"spec.redis.tls: {error}") from None

    async def observe(
        self, spec: TaskQueueSpec, now: float, departed: Iterable[str] = ()
    ) -> tuple[RedisObservation | None, RedisFailure | None]:
        """The stats, or None and why (a failure kind: the condition's reason). `departed`:
        workers seen before, read again if they left the queues (their final counters)."""
        try:
            client = await self.client(spec.redis, now)
            observation = await asyncio.wait_for(
                redis_stats.read_stats(
                    client, spec.redis.key_prefix, spec.queues, now, departed=departed
                ),
                timeout=self.timeout,
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # every failure to resolve or read Redis is data
            self.reachable = False
            failure = classify(error, self.url)
            if failure.kind in (FailureKind.SECRET_MISSING, FailureKind.SECRET_UNREADABLE):
                message = f"cannot read the Redis URL or TLS Secrets: {failure.message}"
                failure = RedisFailure(failure.kind, message)
            return None, failure
        self.reachable = True
        return await self.with_memory_policy(client, observation, now), None

    async def with_memory_policy(
        self, client: aioredis.Redis, observation: RedisObservation, now: float
    ) -> RedisObservation:
        """An evicting maxmemory policy silently loses queued jobs: check it once a minute."""
        if now - self.memory_policy_checked > MEMORY_POLICY_INTERVAL:
            self.memory_policy_checked = now
            self.memory_policy = await redis_stats.read_memory_policy(client)
        policy, limit = self.memory_policy
        return dataclasses.replace(observation, maxmemory_policy=policy, maxmemory=limit)
