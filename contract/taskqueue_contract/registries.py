"""How to count and list RQ's registries without running rq's cleanup.

rq's ``registry.count`` / ``get_job_ids()`` first clean expired entries, which runs job
callbacks that need the application's code; the operator, the plugin and the dashboard
have none of it. An entry of the started, failed and finished registries lives while its
score (an expiry time) is in the future, so "live" is ``score >= now`` everywhere: the
status's DEAD column, ``kubectl taskqueue dlq list`` and the dashboard count the same
entries. The scheduled and deferred registries have no expiry: count them whole.

The functions take any redis-py client or pipeline, sync or asyncio (they only queue
the command and return what the client returns).
"""

from __future__ import annotations

from typing import Any

LIVE_MAX = "+inf"


def count_live(client: Any, key: str, now: float) -> Any:
    """``ZCOUNT key now +inf``: the unexpired entries of a started/failed/finished registry."""
    return client.zcount(key, now, LIVE_MAX)


def live_entries(
    client: Any, key: str, now: float, *, newest_first: bool = False, limit: int = 0
) -> Any:
    """The unexpired entries with their scores; ``limit`` > 0 takes the first ``limit``.

    Oldest score first by default; ``newest_first`` for "the latest failures" (when the
    failure TTLs agree, the highest score is the newest failure).
    """
    page: dict[str, int] = {"start": 0, "num": limit} if limit > 0 else {}
    if newest_first:
        return client.zrevrangebyscore(key, LIVE_MAX, now, withscores=True, **page)
    return client.zrangebyscore(key, now, LIVE_MAX, withscores=True, **page)
