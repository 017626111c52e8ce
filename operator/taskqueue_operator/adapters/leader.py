"""Leader election on a coordination.k8s.io Lease, for several operator replicas.

Only the leader runs the TaskQueue loops; standbys keep their watch caches warm and take
over when the leader's lease expires, or within their retry period when the leader
releases it on shutdown (as client-go's ReleaseOnCancel: the holder is cleared, so a
rolling update does not wait out the lease). Writes are optimistic (resourceVersion), so
two candidates can never both believe they won.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException
from taskqueue_contract import timestamps

log = logging.getLogger("taskqueue.leader")
Callback = Callable[[], Awaitable[None]]


def _body(lease: dict[str, Any]) -> kubernetes.client.V1Lease:
    """The Lease we write, as the JSON the API server takes. The client's signature asks
    for a V1Lease; it takes a JSON-shaped dict as well (kubernetes>=37 validates it into
    one, older clients send it as is), which keeps the body and the tests' fake API plain."""
    return cast(kubernetes.client.V1Lease, lease)


def _spec(lease: kubernetes.client.V1Lease) -> kubernetes.client.V1LeaseSpec:
    """A Lease without a spec is one nobody holds."""
    return lease.spec or kubernetes.client.V1LeaseSpec()


def _resource_version(lease: kubernetes.client.V1Lease) -> str:
    """Writes are conditional on it: a Lease read without one cannot be written safely."""
    version = lease.metadata.resource_version if lease.metadata else None
    if not version:
        raise ValueError("the Lease was read without a resourceVersion")
    return version


class LeaderElection:
    """Acquire and renew a Lease; call `on_start`/`on_stop` on each change of leadership."""

    def __init__(
        self,
        api: kubernetes.client.CoordinationV1Api,
        namespace: str,
        identity: str,
        name: str = "taskqueue-operator",
        lease_seconds: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.identity = identity
        self.name = name
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        """While renewals fail, keep acting this long after the last good one (less than
        the lease: we stop before a standby may take over)."""
        self.retry_period = retry_period
        self.leading = False

    def try_acquire(self) -> bool:
        """One round: True while we hold the lease."""
        now = timestamps.now()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_seconds)),
            "renewTime": timestamps.format_micro(now),
        }
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = {
                "metadata": {"name": self.name},
                "spec": {**spec, "acquireTime": timestamps.format_micro(now)},
            }
            try:
                self.api.create_namespaced_lease(self.namespace, _body(body))
                return True
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
        held = _spec(lease)
        holder = held.holder_identity or ""
        renewed = timestamps.parse(held.renew_time) or now
        duration = held.lease_duration_seconds or self.lease_seconds
        if holder and holder != self.identity and renewed + timedelta(seconds=duration) > now:
            return False  # someone else holds a live lease (an empty holder: released)
        if holder != self.identity:
            spec["acquireTime"] = timestamps.format_micro(now)
            spec["leaseTransitions"] = (held.lease_transitions or 0) + 1
        body = {
            "metadata": {"name": self.name, "resourceVersion": _resource_version(lease)},
            "spec": spec,
        }
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, _body(body))
            return True
        except ApiException as error:
            if error.status == 409:  # another candidate wrote first
                return False
            raise

    def release(self) -> bool:
        """Give the lease up, if we hold it: holderIdentity cleared, renewTime now, so a
        standby's next attempt takes it. True when released."""
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        held = _spec(lease)
        if held.holder_identity != self.identity:
            return False  # lost it meanwhile: nothing of ours to release
        now = timestamps.format_micro(timestamps.now())
        body = {
            "metadata": {"name": self.name, "resourceVersion": _resource_version(lease)},
            # What client-go writes on release: no holder, a 1 s lease renewed now.
            "spec": {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": now,
                "acquireTime": now,
                "leaseTransitions": held.lease_transitions or 0,
            },
        }
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, _body(body))
        except ApiException as error:
            if error.status == 409:  # someone else wrote first: not ours any more
                return False
            raise
        return True

    async def run(self, on_start: Callback, on_stop: Callback) -> None:
        """Acquire or renew every `retry_period` until cancelled. Cancelled while leading
        (the operator stops): `on_stop` first, so the loops are down before the lease is
        released, then the release."""
        loop = asyncio.get_running_loop()
        renewed = 0.0
        try:
            while True:
                try:
                    leading = await asyncio.to_thread(self.try_acquire)
                    if leading:
                        renewed = loop.time()
                except Exception as error:
                    log.warning("leader election: %s", error)
                    # Keep acting only while our lease is surely still ours.
                    leading = self.leading and loop.time() - renewed < self.renew_deadline
                if leading and not self.leading:
                    log.info("%s is now the leader", self.identity)
                    self.leading = True
                    await on_start()
                elif not leading and self.leading:
                    log.warning("%s lost the leadership", self.identity)
                    self.leading = False
                    await on_stop()
                await asyncio.sleep(self.retry_period)
        except asyncio.CancelledError:
            if self.leading:
                self.leading = False
                await on_stop()
                await self._release_logged()
            raise

    async def _release_logged(self) -> None:
        try:
            released = await asyncio.wait_for(asyncio.to_thread(self.release), 5)
        except Exception as error:  # the lease then expires on its own
            log.warning("could not release the leader lease: %s", error)
            return
        if released:
            log.info("%s released the leadership", self.identity)
