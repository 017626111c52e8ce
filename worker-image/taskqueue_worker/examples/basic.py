"""Tiny tasks for tests, demos and benchmarks."""

from __future__ import annotations

import os
import time

from taskqueue_worker.progress import set_progress


def noop() -> None:
    """Does nothing: measures the queue's own overhead."""
    return None


def sleep(seconds: float) -> float:
    """Sleep `seconds` (reporting progress about every second); returns `seconds`.

    Sleeps in slices against a monotonic deadline, so a signal handled meanwhile
    (a warm shutdown request) neither shortens nor lengthens the job.
    """
    seconds = float(seconds)
    start = time.monotonic()
    deadline = start + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        if seconds:
            set_progress((time.monotonic() - start) / seconds)
    return seconds


def fail(message: str = "failed on purpose") -> None:
    """Always raises: fills the failed registry (dead letters) on demand."""
    raise RuntimeError(message)


def flaky(key: str, failures: int) -> int:
    """Fail the first `failures` calls for `key`, then succeed; returns the attempt number.

    Attempts are counted in Redis (the running job's connection, else ``REDIS_URL``),
    so the count survives the work horse, retries and other worker pods. The
    counter expires after a day.
    """
    from rq import get_current_job
    from rq.defaults import RQ_KEY_PREFIX

    job = get_current_job()
    if job is not None:
        connection = job.connection
    else:
        import redis

        connection = redis.Redis.from_url(os.environ["REDIS_URL"])
    from taskqueue_contract.keys import Keys

    counter = Keys(RQ_KEY_PREFIX).own("flaky", key)
    with connection.pipeline() as pipe:
        pipe.incr(counter)
        pipe.expire(counter, 86400)
        attempt = int(pipe.execute()[0])
    if attempt <= failures:
        raise RuntimeError(f"flaky {key!r}: attempt {attempt} fails ({failures} planned failures)")
    return attempt
