"""Progress reporting for long jobs: ``job.meta['progress']`` in [0, 1].

Inside a job::

    from taskqueue_worker.progress import set_progress

    for i, chunk in enumerate(chunks):
        work(chunk)
        set_progress((i + 1) / len(chunks), message=f"chunk {i + 1}/{len(chunks)}")

Readers (an API's status endpoint) use ``Job.fetch(id).meta.get("progress")``.
Outside a job (tests, notebooks) the calls do nothing and return ``False``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rq.job import Job

T = TypeVar("T")


def set_progress(fraction: float, message: str | None = None, job: Job | None = None) -> bool:
    """Record progress on the current (or given) job and save its meta.

    `fraction` is clamped to [0, 1] (rounding in callers often overshoots);
    NaN is refused. Returns whether a job was updated.
    """
    value = float(fraction)
    if math.isnan(value):
        raise ValueError("progress must be a number in [0, 1], got NaN")
    value = min(1.0, max(0.0, value))
    if job is None:
        from rq import get_current_job

        job = get_current_job()
        if job is None:
            return False
    job.meta["progress"] = value
    if message is not None:
        job.meta["progress_message"] = message
    job.meta["progress_updated_at"] = time.time()
    job.save_meta()
    return True


def track(items: Iterable[T], total: int | None = None, min_step: float = 0.01) -> Iterator[T]:
    """Yield `items`, reporting progress after each; Redis is written only when
    progress moved by at least `min_step` (and at the end), so tight loops stay cheap.
    """
    if total is None:
        total = len(items) if isinstance(items, Sized) else None
    reported = -1.0
    count = 0
    for count, item in enumerate(items, start=1):
        yield item
        if total:
            fraction = count / total
            if fraction - reported >= min_step or count == total:
                set_progress(fraction)
                reported = fraction
    if not total and count:
        set_progress(1.0)
