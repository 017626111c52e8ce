"""The Lease is released on shutdown and a released Lease is taken at once (issue 13 part 5)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException
from taskqueue_contract.timestamps import format_micro as _micro
from taskqueue_operator.adapters.leader import LeaderElection


class FakeLeases:
    """One Lease with optimistic concurrency, as the API server keeps it."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.writes: list[dict[str, Any]] = []

    def _view(self) -> SimpleNamespace:
        assert self.lease is not None
        spec = self.lease["spec"]
        return SimpleNamespace(
            metadata=SimpleNamespace(resource_version=str(self.version)),
            spec=SimpleNamespace(
                holder_identity=spec.get("holderIdentity"),
                renew_time=spec.get("renewTime"),
                acquire_time=spec.get("acquireTime"),
                lease_duration_seconds=spec.get("leaseDurationSeconds"),
                lease_transitions=spec.get("leaseTransitions"),
            ),
        )

    def read_namespaced_lease(self, name: str, namespace: str) -> SimpleNamespace:
        if self.lease is None:
            raise ApiException(status=404)
        return self._view()

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        if self.lease is not None:
            raise ApiException(status=409)
        self._write(body)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        if body["metadata"]["resourceVersion"] != str(self.version):
            raise ApiException(status=409)
        self._write(body)

    def _write(self, body: dict[str, Any]) -> None:
        self.lease = copy.deepcopy(body)
        self.version += 1
        self.writes.append(copy.deepcopy(body["spec"]))


def candidate(api: FakeLeases, identity: str, **timings: float) -> LeaderElection:
    return LeaderElection(api, "tq-system", identity, **timings)  # type: ignore[arg-type]


def test_release_clears_the_holder_and_a_standby_takes_it_at_once() -> None:
    api = FakeLeases()
    leader, standby = candidate(api, "a"), candidate(api, "b")
    assert leader.try_acquire()
    assert not standby.try_acquire()  # a live lease of someone else
    assert leader.release()
    spec = api.lease["spec"]  # type: ignore[index]
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1
    assert standby.try_acquire()  # no waiting for the lease duration
    assert api.lease["spec"]["holderIdentity"] == "b"  # type: ignore[index]
    assert api.lease["spec"]["leaseTransitions"] == 1  # type: ignore[index]


def test_release_leaves_someone_elses_lease_alone() -> None:
    api = FakeLeases()
    assert candidate(api, "b").try_acquire()
    writes = len(api.writes)
    assert not candidate(api, "a").release()
    assert len(api.writes) == writes
    assert not candidate(FakeLeases(), "a").release()  # no Lease at all


def test_an_expired_lease_is_taken_a_live_one_is_not() -> None:
    api = FakeLeases()
    old = datetime.now(UTC) - timedelta(seconds=20)
    api.lease = {"spec": {"holderIdentity": "dead", "renewTime": _micro(old)}}
    api.lease["spec"]["leaseDurationSeconds"] = 15
    assert candidate(api, "b").try_acquire()
    api.lease["spec"]["renewTime"] = _micro(datetime.now(UTC))
    assert not candidate(api, "c").try_acquire()


def test_run_stops_the_loops_then_releases_when_cancelled() -> None:
    api = FakeLeases()
    events: list[str] = []

    async def on_start() -> None:
        events.append("start")

    async def on_stop() -> None:
        holder = api.lease["spec"]["holderIdentity"]  # type: ignore[index]
        events.append(f"stop while held by {holder!r}")

    async def scenario() -> None:
        leader = candidate(api, "a", retry_period=0.01, renew_deadline=0.05, lease_seconds=1)
        task = asyncio.create_task(leader.run(on_start, on_stop))
        while not leader.leading:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not leader.leading

    asyncio.run(scenario())
    assert events == ["start", "stop while held by 'a'"]  # the loops stop first
    assert api.lease["spec"]["holderIdentity"] == ""  # type: ignore[index]


def test_a_standby_cancelled_writes_nothing() -> None:
    api = FakeLeases()
    assert candidate(api, "a").try_acquire()

    async def nothing() -> None:
        raise AssertionError("a standby never starts or stops loops")

    async def scenario() -> None:
        standby = candidate(api, "b", retry_period=0.01, renew_deadline=0.05, lease_seconds=1)
        task = asyncio.create_task(standby.run(nothing, nothing))
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    writes = len(api.writes)
    asyncio.run(scenario())
    assert len(api.writes) == writes
    assert api.lease["spec"]["holderIdentity"] == "a"  # type: ignore[index]


def test_failing_renewals_stop_acting_after_the_renew_deadline() -> None:
    api = FakeLeases()
    events: list[str] = []

    async def on_start() -> None:
        events.append("start")

    async def on_stop() -> None:
        events.append("stop")

    async def scenario() -> None:
        leader = candidate(api, "a", retry_period=0.01, renew_deadline=0.1, lease_seconds=1)
        task = asyncio.create_task(leader.run(on_start, on_stop))
        while not leader.leading:
            await asyncio.sleep(0.01)

        def broken(*_: Any) -> None:
            raise ApiException(status=500)

        api.read_namespaced_lease = broken  # type: ignore[method-assign]
        await asyncio.sleep(0.05)
        assert leader.leading  # within the renew deadline
        await asyncio.sleep(0.2)
        assert not leader.leading
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert events == ["start", "stop"]
