"""Which TaskQueue loops run, and routing of child watch events to them."""

from __future__ import annotations

import asyncio
from typing import Any

from taskqueue_operator import metrics
from taskqueue_operator.adapters.executor import EventSink
from taskqueue_operator.adapters.kube import Kube
from taskqueue_operator.adapters.redis_observer import RedisConnections
from taskqueue_operator.controller import ChildCache, LoopSettings, TaskQueueLoop

Key = tuple[str, str]


class LoopRegistry:
    """Starts a loop when a TaskQueue appears, stops it when the TaskQueue is gone.

    Child events can arrive before their TaskQueue's (the watches start together):
    they are kept in a cache that the loop adopts when it starts.
    """

    def __init__(
        self,
        kube: Kube,
        post_event: EventSink,
        settings: LoopSettings | None = None,
    ) -> None:
        self.kube = kube
        self.post_event = post_event
        self.settings = settings or LoopSettings()
        self.connections = RedisConnections()
        self.loops: dict[Key, TaskQueueLoop] = {}
        self.orphans: dict[Key, ChildCache] = {}
        self.bodies: dict[Key, dict[str, Any]] = {}
        # Re-listed objects (listing events, type None, of objects we already knew: a
        # watch gap) per kind; the loops read their children from the API when these move.
        self.listings: dict[str, int] = {}
        # False on a standby replica: it keeps the caches, the leader runs the loops.
        self.active = True
        self._pending: set[asyncio.Task[None]] = set()
        metrics.collect_from(self.samples)

    def samples(self) -> list[metrics.TaskQueueSample]:
        """The gauges of the loops running here, at scrape time: none on a standby."""
        if not self.active:
            return []
        found = (loop.metric_sample() for loop in list(self.loops.values()))
        return [sample for sample in found if sample is not None]

    async def taskqueue_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type is None and key in self.bodies:  # a re-list, not the first listing
            self.listings["TaskQueue"] = self.listings.get("TaskQueue", 0) + 1
        gone = event_type == "DELETED" or bool(meta.get("deletionTimestamp"))
        loop = self.loops.get(key)
        if loop is not None and loop.body["metadata"].get("uid") != meta.get("uid"):
            await self.loops.pop(key).stop()  # deleted and re-created under the same name
            loop = None
        if gone:
            if loop is not None:
                await self.loops.pop(key).stop()
                metrics.forget(*key)
            self.orphans.pop(key, None)
            self.bodies.pop(key, None)
            return
        self.bodies[key] = body
        if not self.active:
            return
        if loop is None:
            loop = TaskQueueLoop(
                body,
                self.kube,
                self.connections,
                self.post_event,
                self.settings,
                listings=self.listings,
                on_gone=self._forget_later,
            )
            cached = self.orphans.pop(key, None)
            if cached is not None:
                loop.children = cached
            self.loops[key] = loop
            loop.start()
        else:
            loop.update_body(body)

    @staticmethod
    def _known(children: ChildCache | None, kind: str, body: dict[str, Any]) -> bool:
        """A listed child we already had: a re-list after a gap, not the start-up listing
        (which would make every loop read its children from the API once for nothing)."""
        if children is None:
            return False
        name = body["metadata"]["name"]
        if kind == "Deployment":
            return children.deployment is not None
        return name in (children.cronjobs if kind == "CronJob" else children.pods)

    def _forget_later(self, body: dict[str, Any]) -> None:
        """A loop found its TaskQueue gone: handle it as the DELETED event that never came
        (in a task: the loop cannot await its own stop)."""
        task = asyncio.get_running_loop().create_task(self.taskqueue_event("DELETED", body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def child_event(
        self, owner: Key, kind: str, event_type: str | None, body: dict[str, Any]
    ) -> None:
        loop = self.loops.get(owner)
        if event_type is None and self._known(loop.children if loop else None, kind, body):
            self.listings[kind] = self.listings.get(kind, 0) + 1
        if loop is not None:
            loop.child_event(kind, event_type or "ADDED", body)
            return
        self.orphans.setdefault(owner, ChildCache()).record(kind, event_type or "ADDED", body)

    async def activate(self) -> None:
        """Leadership won: run a loop for every known TaskQueue."""
        self.active = True
        for body in list(self.bodies.values()):
            await self.taskqueue_event("ADDED", body)

    async def deactivate(self) -> None:
        """Leadership lost: stop acting at once; keep what the watches tell us."""
        self.active = False
        for key, loop in list(self.loops.items()):
            await loop.stop()
            self.orphans[key] = loop.children
        self.loops.clear()

    async def stop_all(self) -> None:
        for loop in list(self.loops.values()):
            await loop.stop()
        self.loops.clear()
        await self.connections.close()
