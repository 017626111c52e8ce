"""The rq side of ``taskqueue-worker``: worker classes and the run loop.

Imported only after the environment has been validated (rq reads
``RQ_KEY_PREFIX`` when it is imported).
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq import SimpleWorker, Worker
from rq.job import Job

from taskqueue_worker import config
from taskqueue_worker.health import Heartbeat
from taskqueue_worker.lifecycle import EarlyStop
from taskqueue_worker.results import maybe_store_result  # light: pyarrow loads on use

log = logging.getLogger("taskqueue.worker")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_PRELOAD = 3
EXIT_REDIS_UNREACHABLE = 4


class TaskqueueJob(Job):
    """rq's Job plus the worker-wide Parquet opt-in (``TASKQUEUE_RESULT_URI``).

    With that variable set, a job whose function returns a pandas DataFrame has it
    written as Parquet keyed by the job id, and the job's rq result becomes a small
    reference dict (see :mod:`taskqueue_worker.results`), keeping tables out of Redis.
    """

    def perform(self) -> Any:
        value = super().perform()
        self._result = maybe_store_result(self, value)
        return self._result


class _TaskqueueWorkerMixin:
    """Adds the heartbeat file and early-signal handling to an rq worker class."""

    health: Heartbeat | None = None
    stop_requested_early: bool = False

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)  # type: ignore[misc]
        if self.health is not None:
            # Registered in Redis from here on: only now may probes pass.
            self.health.start()
        if self.stop_requested_early:
            self._stop_requested = True

    def teardown(self) -> None:
        if not self.is_horse and self.health is not None:  # type: ignore[attr-defined]
            self.health.stop(remove=True)
        super().teardown()  # type: ignore[misc]


class TaskqueueForkWorker(_TaskqueueWorkerMixin, Worker):
    """Fork-per-job worker (rq.Worker)."""


class TaskqueueSimpleWorker(_TaskqueueWorkerMixin, SimpleWorker):
    """In-process worker (rq.SimpleWorker)."""


WORKER_CLASSES: dict[config.WorkerClass, type[Worker] | type[SimpleWorker]] = {
    config.WorkerClass.FORK: TaskqueueForkWorker,
    config.WorkerClass.SIMPLE: TaskqueueSimpleWorker,
}


@dataclass(frozen=True)
class WorkerSettings:
    redis_url: str
    queues: list[str]
    worker_class: config.WorkerClass
    pod_name: str
    worker_name: str
    health_file: Path
    health_interval: float
    log_level: str
    burst: bool = False
    max_jobs: int | None = None
    preload: tuple[str, ...] | list[str] = ()


def _status_fn(url: str, worker: Any) -> Any:
    # Own client: the heartbeat thread must never share a connection with the
    # work loop (or a fork could inherit one mid-command).
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def status() -> dict[str, Any]:
        client.ping()
        return {"worker": worker.name, "hostname": worker.hostname, "state": worker._state}

    return status


def run(settings: WorkerSettings, early: EarlyStop | None = None) -> int:
    """Run the worker until a warm shutdown (or, in burst mode, an empty queue)."""
    early = early if early is not None else EarlyStop().install()
    # A restarted container keeps its emptyDir: the previous process's heartbeat
    # must not make this one look alive before it has even registered.
    settings.health_file.unlink(missing_ok=True)

    for module in settings.preload:
        try:
            importlib.import_module(module)
        except Exception as exc:
            log.error(
                "TASKQUEUE_PRELOAD: importing %s failed: %s: %s", module, type(exc).__name__, exc
            )
            return EXIT_PRELOAD

    connection = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        connection.ping()
    except redis.exceptions.RedisError as exc:
        log.error("redis unreachable at %s: %s", _redacted(settings.redis_url), exc)
        return EXIT_REDIS_UNREACHABLE

    if early.requested:
        log.info("stop requested during start-up: exiting before registering")
        return EXIT_OK

    cls = WORKER_CLASSES[settings.worker_class]
    worker = cls(
        settings.queues,
        name=settings.worker_name,
        connection=connection,
        job_class=TaskqueueJob,
    )
    worker.hostname = settings.pod_name  # the operator maps worker hashes to pods by this
    worker.health = Heartbeat(
        settings.health_file, settings.health_interval, _status_fn(settings.redis_url, worker)
    )
    early.attach(worker)

    log.info(
        "starting worker",
        extra={
            "queues": settings.queues,
            "worker_class": settings.worker_class.value,
            "health_file": str(settings.health_file),
        },
    )
    try:
        worker.work(
            burst=settings.burst,
            with_scheduler=True,  # delayed retries sit in the scheduled registry until it runs
            logging_level=settings.log_level,
            max_jobs=settings.max_jobs,
        )
    except SystemExit:
        log.warning("cold shutdown: a second signal ended the running job")
        return EXIT_FAILED
    stopped = early.requested or worker._shutdown_requested_date is not None
    if stopped or settings.burst or settings.max_jobs is not None:
        log.info("worker stopped", extra={"reason": "signal" if stopped else "done"})
        return EXIT_OK
    log.error("worker loop ended without a stop request")
    return EXIT_FAILED


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def main_guarded(settings: WorkerSettings, early: EarlyStop | None = None) -> int:
    try:
        return run(settings, early)
    except redis.exceptions.ConnectionError as exc:
        log.error("lost redis: %s", exc)
        return EXIT_REDIS_UNREACHABLE
    except ValueError as exc:  # rq refuses e.g. an already registered worker name
        log.error("%s", exc)
        return EXIT_FAILED
    finally:
        sys.stdout.flush()
