"""Environment contract of the worker image, parsed without importing rq.

rq reads ``RQ_KEY_PREFIX`` once, at import time, and raises a bare ``ValueError``
on a bad value; the entrypoints validate it here first so a bad prefix gives a
one-line message instead of a traceback.

Variables (all read from the process environment):

``REDIS_URL``
    Required. ``redis://``, ``rediss://`` or ``unix://`` URL of the queue's Redis.
``REDIS_TLS_CA_CERT``, ``REDIS_TLS_CLIENT_CERT``, ``REDIS_TLS_CLIENT_KEY``
    Optional PEMs for a ``rediss://`` URL (the TaskQueue's ``redis.tls``): the CA to
    trust and a client certificate; written to 0600 files under the temp dir.
``RQ_KEY_PREFIX``
    Optional, default ``rq``. Prefix of every key rq writes (``<prefix>:queue:<q>``...);
    honoured by rq itself, so workers, enqueuers and the operator must agree on it.
``TASKQUEUE_WORKER_CLASS``
    ``fork`` (default) or ``simple``; the ``--worker-class`` flag wins.
``POD_NAME``
    Written as the worker hash's ``hostname``; defaults to the machine's hostname
    (which Kubernetes also sets to the pod name).
``TASKQUEUE_HEALTH_FILE``
    Heartbeat file for the probes; default ``<tempdir>/taskqueue-worker[.<pod>].health``.
``TASKQUEUE_HEALTH_INTERVAL``
    Seconds between heartbeat file updates, default 5.
``TASKQUEUE_LOG_LEVEL``
    Log level of the JSON logs, default ``INFO``.
``TASKQUEUE_PRELOAD``
    Comma-separated modules the worker imports before its first job (e.g. the
    task modules, ``pandas``): fork workers' work horses then inherit them instead
    of importing them again for every job.
``TASKQUEUE_PROCESSES``
    Work loops in this pod (``spec.worker.processes``), default 1; the ``--processes``
    flag wins. More than 1 runs them under a supervisor (:mod:`taskqueue_worker.pool`).
``TASKQUEUE_JOB_TIMEOUT``
    The TaskQueue's ``spec.worker.jobTimeout`` in seconds (the ``--job-timeout`` flag
    wins). It is the default AND the upper bound of every job's timeout: a job enqueued
    without one (rq's default would be 180 s) runs with it, a job with a longer or an
    infinite (-1) timeout is capped to it, a shorter one keeps its own. The pod's grace
    period is this plus 30 s, so a scale-down never kills a running job. Unset: rq's
    own rules (no bound).
"""

from __future__ import annotations

import math
import os
import re
import socket
import tempfile
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from taskqueue_contract import env as names
from taskqueue_contract.keys import DEFAULT_PREFIX, valid_prefix
from taskqueue_contract.tls import TLSConfigError, url_with_tls_from_env

_FILENAME_SAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")

DEFAULT_HEALTH_INTERVAL = 5.0
DEFAULT_PROBE_MAX_AGE = 30.0


class ConfigError(ValueError):
    """A bad or missing setting; its message is one line meant for the user."""


class WorkerClass(StrEnum):
    """Which rq worker runs the jobs.

    ``fork`` (the default) forks a work horse per job: a job that leaks memory,
    segfaults in a C extension or hangs while holding the GIL cannot take the worker
    down, the parent can hard-kill it at its timeout, and the parent keeps the
    heartbeat file fresh however busy the job is. ``simple`` runs jobs in the worker
    process: about twice the throughput on tiny jobs (no fork), at the price of that
    isolation; choose it for high rates of short, trusted jobs.
    """

    FORK = "fork"
    SIMPLE = "simple"


DEFAULT_WORKER_CLASS = WorkerClass.FORK


def redis_url(env: Mapping[str, str]) -> str:
    url = env.get(names.REDIS_URL, "").strip()
    if not url:
        raise ConfigError(
            "REDIS_URL is not set: point it at the queue's Redis, e.g. redis://redis:6379/0"
        )
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}")
    try:
        return url_with_tls_from_env(url, env)
    except TLSConfigError as error:
        raise ConfigError(f"REDIS_TLS_*: {error}") from None


def key_prefix(env: Mapping[str, str]) -> str:
    prefix = env.get(names.KEY_PREFIX, DEFAULT_PREFIX)
    if not valid_prefix(prefix):
        raise ConfigError(
            f"RQ_KEY_PREFIX {prefix!r} is invalid: "
            "only letters, digits and _ . : - { } are allowed"
        )
    return prefix


def worker_class(flag: str | None, env: Mapping[str, str]) -> WorkerClass:
    """The flag wins over ``TASKQUEUE_WORKER_CLASS``; neither means the default."""
    raw = flag if flag is not None else env.get(names.WORKER_CLASS, "")
    raw = raw.strip().lower()
    if not raw:
        return DEFAULT_WORKER_CLASS
    try:
        return WorkerClass(raw)
    except ValueError:
        choices = ", ".join(c.value for c in WorkerClass)
        raise ConfigError(f"worker class {raw!r} is unknown: choose one of {choices}") from None


def pod_name(env: Mapping[str, str]) -> str:
    return env.get(names.POD_NAME, "").strip() or socket.gethostname()


MAX_PROCESSES = 64  # spec.worker.processes' bound


def processes(flag: int | None, env: Mapping[str, str]) -> int:
    """Work loops in this pod: the flag wins over ``TASKQUEUE_PROCESSES``; default 1."""
    if flag is not None:
        name, raw = "--processes", str(flag)
    else:
        name, raw = names.PROCESSES, env.get(names.PROCESSES, "").strip() or "1"
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not 1 <= value <= MAX_PROCESSES:
        raise ConfigError(f"{name} must be between 1 and {MAX_PROCESSES}, got {value}")
    return value


def health_file(env: Mapping[str, str]) -> Path:
    """``TASKQUEUE_HEALTH_FILE`` or a file in the temp dir (``TMPDIR``: an emptyDir).

    The default carries ``POD_NAME`` so processes sharing a temp dir (the test
    bed runs pods as local processes) never read each other's heartbeat.
    """
    explicit = env.get(names.HEALTH_FILE, "").strip()
    if explicit:
        return Path(explicit)
    pod = _FILENAME_SAFE_RE.sub("_", env.get(names.POD_NAME, "").strip())
    name = f"taskqueue-worker.{pod}.health" if pod else "taskqueue-worker.health"
    # tempfile.gettempdir() caches its answer; read TMPDIR from `env` so callers
    # passing an explicit mapping get a consistent result.
    tmp = env.get("TMPDIR") or tempfile.gettempdir()
    return Path(tmp) / name


def positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {raw!r}")
    return value


def job_timeout(flag: float | None, env: Mapping[str, str]) -> int | None:
    """Whole seconds (rq's death penalty is ``signal.alarm``), rounded up: the pod's grace
        period is ``ceil(jobTimeout) + 30``. The flag wins over ``TASKQUEUE_PROCESSES``
        Work loops in this pod (``spec.worker.processes``), default 1; the ``--processes``
        flag wins. More than 1 runs them under a supervisor (:mod:`taskqueue_worker.pool`).
    ``TASKQUEUE_JOB_TIMEOUT``;
        neither means no bound."""
    if flag is not None:
        name, raw = "--job-timeout", str(flag)
    else:
        name, raw = names.JOB_TIMEOUT, env.get(names.JOB_TIMEOUT, "").strip()
        if not raw:
            return None
    try:
        value = float(raw.removesuffix("s"))
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}")
    return math.ceil(value)


def log_level(env: Mapping[str, str]) -> str:
    level = env.get(names.LOG_LEVEL, "INFO").strip().upper() or "INFO"
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"TASKQUEUE_LOG_LEVEL {level!r} is not a log level")
    return level


def preload_modules(env: Mapping[str, str]) -> list[str]:
    raw = env.get(names.PRELOAD, "")
    modules = [m.strip() for m in raw.split(",") if m.strip()]
    for module in modules:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", module):
            raise ConfigError(f"TASKQUEUE_PRELOAD: {module!r} is not a module name")
    return modules


def environ() -> Mapping[str, str]:
    return os.environ
