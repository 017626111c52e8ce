"""After a watch gap the children are read from the API: what was deleted meanwhile goes."""

from __future__ import annotations

import asyncio
from typing import Any

from taskqueue_operator.controller import ChildCache, TaskQueueGone, TaskQueueLoop
from taskqueue_operator.registry import LoopRegistry


def child(name: str, phase: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name}, "spec": {}}
    if phase:
        body["status"] = {"phase": phase}
    return body


def test_replace_drops_what_the_list_lacks_and_keeps_the_rest() -> None:
    cache = ChildCache()
    for name in ("tq-hourly", "tq-daily"):
        cache.record("CronJob", "ADDED", child(name))
    cache.record("Deployment", "ADDED", child("tq-workers"))
    cache.dirty = False

    cache.replace("CronJob", [child("tq-hourly")])

    assert set(cache.cronjobs) == {"tq-hourly"}
    assert cache.dirty, "a vanished child needs the drift check that re-creates it"
    cache.replace("Deployment", [])
    assert cache.deployment is None
    cache.replace("Deployment", [child("tq-workers")])
    assert cache.deployment is not None


def test_replace_counts_pods_gone_meanwhile_as_vanished() -> None:
    cache = ChildCache()
    cache.record("Pod", "ADDED", child("w-1"))
    cache.record("Pod", "ADDED", child("w-2"))

    cache.replace("Pod", [child("w-2"), child("w-3")])

    assert set(cache.pods) == {"w-2", "w-3"}
    assert set(cache.vanished_pods) == {"w-1"}


class ListingKube:
    """Only what the resync calls: the children as the API lists them."""

    def __init__(self, children: dict[str, list[dict[str, Any]]], uid: str | None = "u") -> None:
        self.children = children
        self.uid = uid
        self.calls: list[str] = []

    async def read_taskqueue_uid(self, namespace: str, name: str) -> str | None:
        self.calls.append("TaskQueue")
        return self.uid

    async def list_children(
        self, namespace: str, kind: str, taskqueue: str
    ) -> list[dict[str, Any]]:
        self.calls.append(kind)
        return self.children.get(kind, [])


def body() -> dict[str, Any]:
    return {"metadata": {"name": "tq", "namespace": "ns", "uid": "u", "generation": 1}, "spec": {}}


def test_a_relist_makes_the_loops_read_their_children_once() -> None:
    async def scenario() -> tuple[list[str], list[str], list[str], ChildCache]:
        kube = ListingKube({"CronJob": [child("tq-hourly")]})
        registry = LoopRegistry(kube, lambda *_: None)  # type: ignore[arg-type]
        loop = TaskQueueLoop(body(), kube, registry.connections, lambda *_: None)  # type: ignore[arg-type]
        loop.listings = registry.listings
        loop.children.record("CronJob", "ADDED", child("tq-daily"))

        registry.loops[("ns", "tq")] = loop
        await loop.resync_children()
        quiet = list(kube.calls)  # no re-list yet: nothing to read
        registry.child_event(("ns", "tq"), "CronJob", None, child("tq-new"))  # first listing
        await loop.resync_children()
        assert kube.calls == quiet, "a child seen for the first time is no re-list"
        registry.child_event(("ns", "tq"), "CronJob", None, child("tq-daily"))  # known: re-list
        await loop.resync_children()
        one_kind = list(kube.calls)
        await loop.resync_children()  # already done for this re-list
        registry.listings["TaskQueue"] = 1  # every watch re-listed: read every kind
        await loop.resync_children()
        return quiet, one_kind, kube.calls, loop.children

    quiet, one_kind, calls, children = asyncio.run(scenario())
    assert quiet == []
    assert one_kind == ["CronJob"]
    assert calls == ["CronJob", "TaskQueue", "Deployment", "CronJob", "Pod"]
    assert set(children.cronjobs) == {"tq-hourly"}


def test_a_taskqueue_deleted_during_a_watch_gap_ends_its_loop() -> None:
    """kopf's re-list has no DELETED event either: the loop would act for a ghost."""

    async def whole() -> tuple[dict[Any, Any], list[str]]:
        kube = ListingKube({}, uid=None)
        registry = LoopRegistry(kube, lambda *_: None)  # type: ignore[arg-type]
        await registry.taskqueue_event("ADDED", body())
        loop = registry.loops[("ns", "tq")]
        registry.listings["TaskQueue"] = 1
        try:
            await loop.resync_children()
            raise AssertionError("the tick must stop")
        except TaskQueueGone:
            pass
        for _ in range(3):
            await asyncio.sleep(0)
        loops = dict(registry.loops)
        await registry.stop_all()
        return loops, kube.calls

    loops, calls = asyncio.run(whole())
    assert loops == {}
    assert calls[:1] == ["TaskQueue"]


def test_a_pod_event_wakes_the_loop_only_for_a_worker_death() -> None:
    from taskqueue_operator.controller import ChildCache

    cache = ChildCache()
    cache.dirty = False
    running = {"metadata": {"name": "w-1"}, "status": {"phase": "Running"}}
    died = {
        "metadata": {"name": "w-1"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "worker",
                    "lastState": {"terminated": {"finishedAt": "2026-12-02T05:00:00Z"}},
                }
            ],
        },
    }
    assert not cache.record("Pod", "ADDED", running)
    assert not cache.record("Pod", "MODIFIED", running)
    assert cache.record("Pod", "MODIFIED", died), "the container died: tick now"
    assert cache.record("Pod", "DELETED", died), "the pod went: tick now"
    assert not cache.dirty, "pods never ask for a drift check"
