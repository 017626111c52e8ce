"""Parquet result storage for jobs that return pandas DataFrames.

A DataFrame returned by a job would otherwise be pickled into Redis (memory the
queue needs, evicted after ``result_ttl``). With storage on, it is written to
``<location>/<job_id>.parquet`` and the job's rq result becomes a small
reference dict::

    {"taskqueue_result": "parquet", "uri": ".../<job_id>.parquet",
     "job_id": "...", "rows": 1234, "columns": ["symbol", ...]}

The reference is also put in ``job.meta["result_uri"]``. Read it back with
:func:`load_result` (from the job id or from the reference).

Opting in - either way:

1. **Per function**, with the decorator (works under any rq worker)::

       from taskqueue_worker.results import parquet_result

       @parquet_result                       # location from TASKQUEUE_RESULT_URI
       def report(day): return build_dataframe(day)

       @parquet_result(uri="s3://bucket/results?endpoint_override=minio:9000&scheme=http")
       def big_report(day): ...

   Called outside a job (tests, notebooks) the function returns its DataFrame as is;
   inside a job with no location configured it fails loudly rather than silently
   filling Redis.

2. **Worker-wide**, by environment: set ``TASKQUEUE_RESULT_URI`` on the worker
   (``spec.worker.env``) and every job run by ``taskqueue-worker`` that returns a
   DataFrame is stored; other return values are untouched.

Retention: files older than ``TASKQUEUE_RESULT_TTL`` seconds (default 7 days, as
the seed playbook keeps results) are removed by :func:`cleanup_results`, a task
meant to be scheduled, e.g. a TaskQueue schedule running
``taskqueue_worker.results.cleanup_results`` daily.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeGuard, TypeVar, overload

if TYPE_CHECKING:
    import pandas as pd
    from rq.job import Job

    from taskqueue_worker import storage


def _storage() -> Any:
    # pyarrow is imported only when a table is actually stored or read: every fork
    # worker's work horse passes through this module once per job.
    from taskqueue_worker import storage

    return storage


log = logging.getLogger("taskqueue.results")

RESULT_URI_ENV = "TASKQUEUE_RESULT_URI"
RESULT_TTL_ENV = "TASKQUEUE_RESULT_TTL"
DEFAULT_RESULT_TTL = timedelta(days=7)
REF_MARKER = "taskqueue_result"
SUFFIX = ".parquet"

# rq's own rule for job ids; also keeps ids from escaping the base directory.
_JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]+")

P = ParamSpec("P")
R = TypeVar("R")


class ResultStoreNotConfigured(RuntimeError):
    """A job asked for Parquet storage but no location is configured."""


def result_ttl(env: Mapping[str, str] | None = None) -> timedelta:
    env = os.environ if env is None else env
    raw = env.get(RESULT_TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_RESULT_TTL
    seconds = float(raw)
    if seconds <= 0:
        raise ValueError(f"{RESULT_TTL_ENV} must be > 0 seconds, got {raw!r}")
    return timedelta(seconds=seconds)


class ResultStore:
    """Parquet files keyed by job id under one location (path or URI)."""

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        self.location: storage.Location = _storage().resolve(uri)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ResultStore | None:
        uri = (os.environ if env is None else env).get(RESULT_URI_ENV, "").strip()
        return cls(uri) if uri else None

    def path_for(self, job_id: str) -> str:
        if not _JOB_ID_RE.fullmatch(job_id):
            raise ValueError(f"invalid job id {job_id!r}")
        return self.location.path(job_id + SUFFIX)

    def save(self, job_id: str, frame: pd.DataFrame) -> dict[str, Any]:
        import pyarrow as pa

        path = self.path_for(job_id)
        table = pa.Table.from_pandas(frame)
        _storage().write_table(self.location, path, table)
        return {
            REF_MARKER: "parquet",
            "uri": self.location.uri_of(path),
            "job_id": job_id,
            "rows": int(table.num_rows),
            "columns": [str(c) for c in frame.columns],
        }

    def load(self, job_id: str) -> pd.DataFrame:
        return _storage().read_table(self.location, self.path_for(job_id)).to_pandas()

    def exists(self, job_id: str) -> bool:
        return _storage().exists(self.location, self.path_for(job_id))

    def delete(self, job_id: str) -> None:
        self.location.fs.delete_file(self.path_for(job_id))

    def cleanup(self, ttl: timedelta = DEFAULT_RESULT_TTL, now: float | None = None) -> list[str]:
        """Delete results (and stray temp files) older than `ttl`; the job ids removed.

        Age is the file's modification time, which object stores report as
        last-modified, so no index is needed. Safe to run from several pods at once.
        """
        import pyarrow.fs as pafs

        cutoff = (time.time() if now is None else now) - ttl.total_seconds()
        selector = pafs.FileSelector(self.location.base, allow_not_found=True, recursive=False)
        removed: list[str] = []
        for info in self.location.fs.get_file_info(selector):
            if info.type != pafs.FileType.File or info.mtime is None:
                continue
            name = info.base_name
            is_result = name.endswith(SUFFIX) and _JOB_ID_RE.fullmatch(name[: -len(SUFFIX)])
            is_temp = name.startswith(".") and name.endswith(".tmp")
            if not (is_result or is_temp) or info.mtime.timestamp() >= cutoff:
                continue
            try:
                self.location.fs.delete_file(info.path)
            except FileNotFoundError:
                continue  # another pod's cleanup got there first
            if is_result:
                removed.append(name[: -len(SUFFIX)])
        return sorted(removed)


def _is_dataframe(value: object) -> TypeGuard[pd.DataFrame]:
    # Without pandas imported, nothing can be a DataFrame: skip the import.
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def store_job_result(job: Job, frame: pd.DataFrame, store: ResultStore) -> dict[str, Any]:
    """Save `frame` for `job` and record the reference in the job's meta."""
    ref = store.save(job.id, frame)
    job.meta["result_uri"] = ref["uri"]
    job.save_meta()
    log.info("stored result", extra={"job_id": job.id, "uri": ref["uri"], "rows": ref["rows"]})
    return ref


def maybe_store_result(job: Job, value: Any, env: Mapping[str, str] | None = None) -> Any:
    """The worker-wide opt-in: store DataFrames when ``TASKQUEUE_RESULT_URI`` is set."""
    if not _is_dataframe(value):
        return value
    store = ResultStore.from_env(env)
    if store is None:
        return value
    return store_job_result(job, value, store)


@overload
def parquet_result(func: Callable[P, R], *, uri: str | None = None) -> Callable[P, Any]: ...
@overload
def parquet_result(
    func: None = None, *, uri: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, Any]]: ...


def parquet_result(func: Callable[P, R] | None = None, *, uri: str | None = None) -> Any:
    """Decorator: a DataFrame returned inside an rq job is stored as Parquet.

    `uri` overrides ``TASKQUEUE_RESULT_URI``. Non-DataFrame results and calls
    outside a job pass through unchanged.
    """

    def decorate(inner: Callable[P, R]) -> Callable[P, Any]:
        @functools.wraps(inner)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            value = inner(*args, **kwargs)
            if not _is_dataframe(value):
                return value
            from rq import get_current_job

            job = get_current_job()
            if job is None:
                return value
            store = ResultStore(uri) if uri else ResultStore.from_env()
            if store is None:
                raise ResultStoreNotConfigured(
                    f"{inner.__qualname__} stores its result as Parquet: set {RESULT_URI_ENV} "
                    "or pass uri= to @parquet_result"
                )
            return store_job_result(job, value, store)

        # A marker on the function object (read by the worker); functions take attributes
        # at run time, their type does not declare any.
        wrapper.__taskqueue_parquet_result__ = True  # type: ignore[attr-defined]
        return wrapper

    return decorate(func) if func is not None else decorate


def is_result_ref(value: Any) -> bool:
    return isinstance(value, dict) and value.get(REF_MARKER) == "parquet" and "uri" in value


def load_result(ref_or_job_id: dict[str, Any] | str, uri: str | None = None) -> pd.DataFrame:
    """The stored DataFrame, from a reference dict or from a job id plus location."""
    if is_result_ref(ref_or_job_id):
        assert isinstance(ref_or_job_id, dict)
        storage = _storage()
        location = storage.resolve(ref_or_job_id["uri"])
        return storage.read_table(location, location.base).to_pandas()
    if not isinstance(ref_or_job_id, str):
        raise TypeError("expected a result reference dict or a job id")
    store = ResultStore(uri) if uri else ResultStore.from_env()
    if store is None:
        raise ResultStoreNotConfigured(f"pass uri= or set {RESULT_URI_ENV}")
    return store.load(ref_or_job_id)


def cleanup_results(uri: str | None = None, ttl_seconds: float | None = None) -> dict[str, Any]:
    """Task: delete stored results older than the TTL (default 7 days).

    Schedule it, e.g. ``function: taskqueue_worker.results.cleanup_results``
    daily; location and TTL default to ``TASKQUEUE_RESULT_URI`` and
    ``TASKQUEUE_RESULT_TTL``.
    """
    store = ResultStore(uri) if uri else ResultStore.from_env()
    if store is None:
        raise ResultStoreNotConfigured(f"pass uri= or set {RESULT_URI_ENV}")
    ttl = timedelta(seconds=ttl_seconds) if ttl_seconds is not None else result_ttl()
    removed = store.cleanup(ttl)
    log.info("result cleanup", extra={"removed": len(removed), "ttl_seconds": ttl.total_seconds()})
    return {"removed": removed, "ttl_seconds": ttl.total_seconds(), "uri": store.location.uri}
