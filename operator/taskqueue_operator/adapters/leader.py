"""Leader election on a coordination.k8s.io Lease, for several operator replicas.

Only the leader runs the TaskQueue loops; standbys keep their watch caches warm and take
over when the leader's lease expires. Writes are optimistic (resourceVersion), so two
candidates can never both believe they won.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import kubernetes
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("taskqueue.leader")
Callback = Callable[[], Awaitable[None]]


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | datetime | None) -> datetime | None:
    if text is None:
        return None
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaderElection:
    """Acquire and renew a Lease; call `on_start`/`on_stop` on each change of leadership."""

    def __init__(
        self,
        api: kubernetes.client.CoordinationV1Api,
        namespace: str,
        identity: str,
        name: str = "taskqueue-operator",
        lease_seconds: int = 15,
        renew_seconds: float = 3.0,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.identity = identity
        self.name = name
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.leading = False

    def try_acquire(self) -> bool:
        """One round: True while we hold the lease."""
        now = _now()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "renewTime": _micro(now),
        }
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = {"metadata": {"name": self.name}, "spec": {**spec, "acquireTime": _micro(now)}}
            try:
                self.api.create_namespaced_lease(self.namespace, body)
                return True
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
        holder = lease.spec.holder_identity
        renewed = _parse(lease.spec.renew_time) or now
        duration = lease.spec.lease_duration_seconds or self.lease_seconds
        if holder != self.identity and renewed + timedelta(seconds=duration) > now:
            return False  # someone else holds a live lease
        if holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = (lease.spec.lease_transitions or 0) + 1
        body = {
            "metadata": {"name": self.name, "resourceVersion": lease.metadata.resource_version},
            "spec": spec,
        }
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, body)
            return True
        except ApiException as error:
            if error.status == 409:  # another candidate wrote first
                return False
            raise

    async def run(self, on_start: Callback, on_stop: Callback) -> None:
        loop = asyncio.get_running_loop()
        renewed = 0.0
        while True:
            try:
                leading = await asyncio.to_thread(self.try_acquire)
                if leading:
                    renewed = loop.time()
            except Exception as error:
                log.warning("leader election: %s", error)
                # Keep acting only while our lease is surely still ours.
                leading = self.leading and loop.time() - renewed < self.lease_seconds * 2 / 3
            if leading and not self.leading:
                log.info("%s is now the leader", self.identity)
                self.leading = True
                await on_start()
            elif not leading and self.leading:
                log.warning("%s lost the leadership", self.identity)
                self.leading = False
                await on_stop()
            await asyncio.sleep(self.renew_seconds)
