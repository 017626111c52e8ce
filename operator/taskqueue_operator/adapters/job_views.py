"""What the dashboard shows of single jobs: the running ones and the dead letters.

Read-only, without running application code (`job_data` decodes pickles inertly), in
two pipelined round trips per list. Arguments go through `redact_call` and tracebacks
through `redact`: the page is for whoever can port-forward to the operator, not only for
whoever may read the jobs' data.
"""

from __future__ import annotations

from typing import Any

from taskqueue_contract import registries, timestamps
from taskqueue_contract.job_data import decode_call, decompress, exception_text, loads
from taskqueue_contract.keys import Keys
from taskqueue_contract.redaction import redact, redact_call

from taskqueue_operator.observation import WorkerInfo

RUNNING_SHOWN = 100
DEAD_LETTERS_SHOWN = 50
TRACEBACK_TEXT = 4000
"""Longest traceback shown (its end, where the exception is)."""


def _text(raw: bytes | None) -> str | None:
    return raw.decode(errors="replace") if raw else None


def _call(raw_data: bytes | None) -> tuple[str | None, str]:
    """(function, the call as shown: arguments redacted)."""
    call = decode_call(raw_data)
    function = call.function or "?"
    if call.args is None and call.kwargs is None:
        return call.function, f"{function}(…)"
    return call.function, redact_call(function, call.args, call.kwargs)


def _progress(raw_meta: bytes | None) -> float | None:
    """`job.meta['progress']` (0..1) as our workers' `report_progress` sets it."""
    meta = loads(decompress(raw_meta)).value if raw_meta else None
    value = meta.get("progress") if isinstance(meta, dict) else None
    return float(value) if isinstance(value, int | float) else None


async def running_jobs(
    client: Any, prefix: str, workers: tuple[WorkerInfo, ...], now: float
) -> tuple[list[dict[str, Any]], int]:
    """The jobs the workers are running (the `RUNNING_SHOWN` longest-running), and how many
    run in all."""
    running = [(worker, job_id) for worker in workers for job_id in worker.job_ids]
    if not running:
        return [], 0
    keys = Keys(prefix)
    pipe = client.pipeline(transaction=False)
    for _worker, job_id in running:
        pipe.hmget(keys.job(job_id), "data", "origin", "started_at", "meta")
    jobs: list[dict[str, Any]] = []
    for (worker, job_id), (data, origin, started, meta) in zip(
        running, await pipe.execute(), strict=True
    ):
        function, call = _call(data)
        started_at = timestamps.epoch(started)
        jobs.append(
            {
                "id": job_id,
                "queue": _text(origin),
                "function": function,
                "call": call,
                "worker": worker.name,
                "pod": worker.hostname,
                "startedAt": _text(started),
                "elapsedSeconds": None if started_at is None else round(now - started_at, 1),
                "progress": _progress(meta),
            }
        )
    jobs.sort(key=lambda job: -(job["elapsedSeconds"] or 0))
    return jobs[:RUNNING_SHOWN], len(jobs)


async def dead_letters(
    client: Any, prefix: str, queues: list[str], now: float
) -> tuple[list[dict[str, Any]], int]:
    """The newest live dead letters of all queues (the entries the status's DEAD column
    counts) with their traceback, and their total."""
    keys = Keys(prefix)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        registries.count_live(pipe, keys.failed(queue), now)
        registries.live_entries(
            pipe, keys.failed(queue), now, newest_first=True, limit=DEAD_LETTERS_SHOWN
        )
    replies = await pipe.execute()
    total = sum(int(count) for count in replies[0::2])
    entries = [
        (score, queue, job_id.decode(errors="replace"))
        for queue, found in zip(queues, replies[1::2], strict=True)
        for job_id, score in found
    ]
    # Newest first across queues (a failed registry's score is failure time + TTL).
    entries.sort(reverse=True)
    entries = entries[:DEAD_LETTERS_SHOWN]
    if not entries:
        return [], total
    pipe = client.pipeline(transaction=False)
    for _score, _queue, job_id in entries:
        pipe.hmget(keys.job(job_id), "data", "ended_at", "exc_info")
        pipe.xrevrange(keys.results(job_id), count=1)
    replies = await pipe.execute()
    letters = []
    for index, (_score, queue, job_id) in enumerate(entries):
        data, ended, exc_info = replies[2 * index]
        results = replies[2 * index + 1]
        if results:
            traceback_text = exception_text(results[0][1].get(b"exc_string"))
        else:  # RQ before results streams kept it in the job hash
            traceback_text = _text(decompress(exc_info)) if exc_info else None
        traceback_text = redact((traceback_text or "").strip())
        function, call = _call(data)
        letters.append(
            {
                "id": job_id,
                "queue": queue,
                "function": function,
                "call": call,
                "failedAt": _text(ended),
                "exception": traceback_text.splitlines()[-1] if traceback_text else "",
                "traceback": traceback_text[-TRACEBACK_TEXT:],
            }
        )
    return letters, total
