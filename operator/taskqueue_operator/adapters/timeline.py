"""The dashboard's last hour of one TaskQueue, kept where it survives an operator restart.

In memory: one point per tick (pending, running, workers, desired, ready, throughput) and
the scaling decisions. In Redis: every `SAVE_EVERY` seconds the newest point, and every
scaling decision, appended to a capped stream under the TaskQueue's own key prefix
(`<prefix>:taskqueue:dashboard:<namespace>:<name>`, at most `STREAM_LENGTH` entries, gone
`KEY_TTL` after the last write). A new leader or a restarted operator reads the stream
back once, so the charts show the hour before it; in Redis the points are 5 s apart.

A write that fails (a read-only ACL user, say) loses nothing the user needs: the charts
go on from memory, the dashboard says why nothing is saved, and the loop posts one
Warning Event per streak.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import redis.exceptions

from taskqueue_operator.adapters.executor import effect_error
from taskqueue_operator.adapters.points import PointLog
from taskqueue_operator.observation import Observation
from taskqueue_operator.rates import Throughput

WINDOW_SECONDS = 3600.0
POINTS = 3600  # an hour of 1 s ticks
SCALE_EVENTS = 200
SAVE_EVERY = 5.0
STREAM_LENGTH = 1000  # an hour of points 5 s apart (720) and room for scaling decisions
KEY_TTL = 2 * 3600


class Timeline:
    def __init__(self) -> None:
        self.points = PointLog(maxlen=POINTS)
        self.scale_events: deque[dict[str, Any]] = deque(maxlen=SCALE_EVENTS)
        self.throughput = Throughput()
        self.loaded = False
        self.save_error: str | None = None
        """Why the last save failed; None while saving works."""
        self._saved_at: float | None = None
        self._unsaved_events: list[dict[str, Any]] = []

    def record(
        self,
        observation: Observation,
        desired: int,
        job_totals: tuple[int, int],
        scales: list[tuple[int, int, str]],
    ) -> None:
        """One tick: a point, and the scaling decisions that took effect (from, to, why)."""
        redis = observation.redis
        if redis is not None:
            self.throughput.update(observation.time, *job_totals)
        finished, failed = self.throughput.per_minute() if redis is not None else (None, None)
        self.points.append(
            {
                "t": round(observation.time, 3),
                "pending": redis.pending if redis else None,
                "running": redis.running if redis else None,
                "workers": len(redis.live_workers) if redis else None,
                "desired": desired,
                "ready": observation.deployment.ready_replicas,
                "finishedPerMinute": finished,
                "failedPerMinute": failed,
            }
        )
        for current, replicas, reason in scales:
            event: dict[str, Any] = {"t": round(observation.time, 3), "from": current}
            event.update(to=replicas, reason=reason)
            self.scale_events.append(event)
            self._unsaved_events.append(event)

    async def sync(self, client: Any, key: str, now: float) -> str | None:
        """Load the saved hour once, then save when due. Returns the error of a save that
        failed after saves worked (or at the first try): the start of a streak, once."""
        try:
            if not self.loaded:
                self._merge(await _read(client, key), now)
                self.loaded = True
            if self._saved_at is None or now - self._saved_at >= SAVE_EVERY:
                await self._save(client, key)
                self._saved_at = now
        except (TimeoutError, OSError, redis.exceptions.RedisError) as error:
            first = self.save_error is None
            self.save_error = effect_error(error).message[:500]
            self._saved_at = now  # retried at the next save, not on every tick
            return self.save_error if first else None
        self.save_error = None
        return None

    async def _save(self, client: Any, key: str) -> None:
        pipe = client.pipeline(transaction=False)
        entries = [("scale", e) for e in self._unsaved_events]
        if self.points:
            entries.append(("point", self.points[-1]))
        for kind, data in entries:
            pipe.xadd(
                key,
                {"kind": kind, "data": json.dumps(data, separators=(",", ":"))},
                maxlen=STREAM_LENGTH,
                approximate=True,
            )
        pipe.expire(key, KEY_TTL)
        await pipe.execute()
        self._unsaved_events = []

    def _merge(self, saved: list[tuple[str, dict[str, Any]]], now: float) -> None:
        """Saved entries of the last hour go before what this loop has seen itself."""
        _prepend(self.points, [d for k, d in saved if k == "point"], now)
        _prepend(self.scale_events, [d for k, d in saved if k == "scale"], now)


def _prepend(
    kept: deque[dict[str, Any]] | PointLog, saved: list[dict[str, Any]], now: float
) -> None:
    """The saved entries older than `kept`'s first and within the hour, as many as fit
    (the newest of them), in front of `kept`."""
    first = kept[0]["t"] if kept else float("inf")
    older = [d for d in saved if now - WINDOW_SECONDS <= d["t"] < first]
    room = (kept.maxlen or len(older)) - len(kept)
    if room > 0 and older:
        kept.extendleft(reversed(older[-room:]))


async def _read(client: Any, key: str) -> list[tuple[str, dict[str, Any]]]:
    """The stream's entries, oldest first; entries that are not ours are skipped."""
    found: list[tuple[str, dict[str, Any]]] = []
    for _id, fields in await client.xrange(key, "-", "+", count=STREAM_LENGTH + 100):
        kind = fields.get(b"kind", b"").decode(errors="replace")
        try:
            data = json.loads(fields.get(b"data", b""))
        except ValueError:
            continue
        if (
            kind in ("point", "scale")
            and isinstance(data, dict)
            and isinstance(data.get("t"), int | float)
        ):
            found.append((kind, data))
    found.sort(key=lambda entry: entry[1]["t"])
    return found
