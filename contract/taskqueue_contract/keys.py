"""RQ's Redis key layout (rq 3.0), for any key prefix: the one place it is spelled.

RQ builds every key from ``RQ_KEY_PREFIX`` (default ``rq``), read once when rq is
imported; a TaskQueue names its prefix in ``spec.redis.keyPrefix``. Code that cannot
import rq with that prefix (the operator serves many TaskQueues, the plugin any of them)
builds keys here instead. ``tests/unit/contract/test_keys.py`` checks every template
against rq's own classes.

Types of the keys, as rq 3.0 writes them:

======================  ======  ====================================================
queue, intermediate     LIST    pending job ids; ids a worker took but has not started
started (``wip``)       ZSET    ``<job id>:<execution id>``, score = expiry
failed, finished        ZSET    job ids, score = now + TTL (failed: 1 year by default)
scheduled               ZSET    job ids, score = when to enqueue
deferred                ZSET    job ids waiting on dependencies
workers, queue_workers  SET     whole worker keys (``<prefix>:worker:<name>``)
worker                  HASH    ``state``, ``hostname``, ``queues``, ``birth``, ``death``...
worker_executions       SET     ``<job id>:<execution id>`` of the running executions
job                     HASH    ``status``, ``origin``, ``enqueued_at``, ``data``...
execution               HASH    one run of a job by a worker
results                 STREAM  results and failures of a job
suspended               STRING  set by ``rq suspend``: workers take no new jobs
======================  ======  ====================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "rq"
# rq.defaults' rule: the prefix is spliced into Lua and str.format templates.
PREFIX_PATTERN = r"[A-Za-z0-9_.:{}-]+"
_PREFIX = re.compile(PREFIX_PATTERN)
# Our own keys live under "<prefix>:taskqueue:" (idempotency markers, example locks).
OWN_NAMESPACE = "taskqueue"


def valid_prefix(prefix: str) -> bool:
    """Whether rq accepts `prefix` as RQ_KEY_PREFIX (it raises ValueError at import if not)."""
    return _PREFIX.fullmatch(prefix) is not None


@dataclass(frozen=True)
class Keys:
    """The keys of one key prefix: ``Keys("rq").queue("default") == "rq:queue:default"``."""

    prefix: str = DEFAULT_PREFIX

    # --- queues and their registries (per queue name) ---
    def queue(self, queue: str) -> str:
        return f"{self.prefix}:queue:{queue}"

    def intermediate(self, queue: str) -> str:
        return f"{self.queue(queue)}:intermediate"

    def started(self, queue: str) -> str:
        return f"{self.prefix}:wip:{queue}"

    def failed(self, queue: str) -> str:
        return f"{self.prefix}:failed:{queue}"

    def finished(self, queue: str) -> str:
        return f"{self.prefix}:finished:{queue}"

    def scheduled(self, queue: str) -> str:
        return f"{self.prefix}:scheduled:{queue}"

    def deferred(self, queue: str) -> str:
        return f"{self.prefix}:deferred:{queue}"

    def canceled(self, queue: str) -> str:
        return f"{self.prefix}:canceled:{queue}"

    @property
    def queues(self) -> str:
        """SET of the queue keys rq knows (``<prefix>:queue:<name>``)."""
        return f"{self.prefix}:queues"

    def queue_name(self, queue_key: str) -> str:
        """``rq:queue:high`` -> ``high`` (members of `queues`)."""
        return queue_key.removeprefix(f"{self.prefix}:queue:")

    # --- workers ---
    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def queue_workers(self, queue: str) -> str:
        return f"{self.prefix}:workers:{queue}"

    def worker(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"

    def worker_executions(self, name: str) -> str:
        return f"{self.worker(name)}:executions"

    def worker_name(self, worker_key: str) -> str:
        """``rq:worker:w1`` -> ``w1`` (members of `workers` / `queue_workers`)."""
        return worker_key.removeprefix(f"{self.prefix}:worker:")

    @property
    def suspended(self) -> str:
        """Exists while ``rq suspend`` is in force (rq.suspension.WORKERS_SUSPENDED)."""
        return f"{self.prefix}:suspended"

    # --- jobs ---
    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def results(self, job_id: str) -> str:
        return f"{self.prefix}:results:{job_id}"

    def execution(self, composite: str) -> str:
        """``composite`` is ``<job id>:<execution id>``, as the started registry holds it."""
        return f"{self.prefix}:execution:{composite}"

    # --- ours ---
    def own(self, *parts: str) -> str:
        """A key of ours under the prefix: ``own("enqueued", d)`` -> ``rq:taskqueue:enqueued:d``."""
        return ":".join((self.prefix, OWN_NAMESPACE, *parts))

    def dashboard_history(self, namespace: str, name: str) -> str:
        """STREAM: the dashboard's last hour of one TaskQueue (capped; see adapters/timeline)."""
        return self.own("dashboard", namespace, name)


def job_id_of_execution(composite: str) -> str:
    """``<job id>:<execution id>`` -> job id (job ids may contain ':', execution ids not)."""
    return composite.rsplit(":", 1)[0]
