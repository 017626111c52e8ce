"""The rq side of ``taskqueue-worker``: worker classes and the run loop.

Imported only after the environment has been validated (rq reads
``RQ_KEY_PREFIX`` when it is imported).
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
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
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
REDIS_RETRY_SECONDS = 0.5


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


def is_outage(error: BaseException) -> bool:
    """Redis is away (refused, reset, timed out), as opposed to refusing us: a wrong
    password or certificate needs a restart to pick up a fixed Secret, an outage does not."""
    if isinstance(error, redis.exceptions.AuthenticationError):
        return False
    if isinstance(error, redis.exceptions.TimeoutError):
        return True
    text = str(error).lower()
    tls_refusal = "certificate" in text or "[ssl" in text or "_ssl.c" in text
    return isinstance(error, redis.exceptions.ConnectionError) and not tls_refusal


class _TaskqueueWorkerMixin:
    """Adds the heartbeat file, early-signal handling and outage survival to an rq worker.

    rq quits its work loop on a connection error anywhere but in its blocking dequeue,
    where it backs off up to 60 s. Exiting makes the container crash-loop for the whole
    outage (with kubelet back-off, minutes after Redis returns); so an idle worker waits
    for Redis instead and takes jobs again within a second of its return. An error
    during a job still ends the process: the operator then requeues that job at once.
    """

    health: Heartbeat | None = None
    stop_requested_early: bool = False
    max_connection_wait_time = 1.0  # rq's dequeue back-off cap (default 60 s)
    _registration_lock = threading.Lock()

    def check_for_suspension(self, burst: bool) -> None:
        self._through_outages(super().check_for_suspension, burst)  # type: ignore[misc]

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        call = super().dequeue_job_and_maintain_ttl  # type: ignore[misc]
        return self._through_outages(call, timeout, max_idle_time)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()  # type: ignore[misc]
        except REDIS_DOWN as error:
            log.warning("maintenance skipped, Redis is away: %s", error)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # part of rq's own transaction: not ours to guard
            super().heartbeat(timeout, pipeline)  # type: ignore[misc]
            return
        try:
            super().heartbeat(timeout)  # type: ignore[misc]
        except REDIS_DOWN as error:  # the next loop turn waits for Redis
            log.warning("heartbeat skipped, Redis is away: %s", error)

    def register_again_if_forgotten(self) -> None:
        """A Redis that came back empty (no persistence) forgot this worker: register
        again so that the operator and `rq info` see it. Called by the heartbeat thread
        too, because rq's blocking dequeue reconnects on its own and then waits minutes."""
        with self._registration_lock:
            if self._stop_requested or self._shutdown_requested_date:  # type: ignore[attr-defined]
                return  # tearing down: registering now would resurrect a dying worker
            connection: redis.Redis = self.connection  # type: ignore[attr-defined]
            if not connection.hexists(self.key, "birth"):  # type: ignore[attr-defined]
                log.warning("Redis forgot this worker: registering again")
                connection.delete(self.key)  # type: ignore[attr-defined]
                self.register_birth()  # type: ignore[attr-defined]

    def _through_outages(self, call: Callable[..., Any], *args: Any) -> Any:
        while True:
            try:
                return call(*args)
            except REDIS_DOWN as error:
                if not is_outage(error):
                    raise
                self._wait_for_redis(error)

    def _wait_for_redis(self, error: BaseException) -> None:
        log.warning("lost Redis, waiting for it: %s", error)
        connection: redis.Redis = self.connection  # type: ignore[attr-defined]
        while not self._stop_requested:  # type: ignore[attr-defined]
            time.sleep(REDIS_RETRY_SECONDS)
            try:
                connection.ping()
                self.register_again_if_forgotten()
            except REDIS_DOWN:
                continue
            log.info("Redis is back")
            return
        raise StopRequested()

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
        if not worker.is_horse:
            worker.register_again_if_forgotten()
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
    reachable = _await_redis_at_start(connection, settings, early)
    if reachable is not None:
        return reachable

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


def _await_redis_at_start(
    connection: redis.Redis, settings: WorkerSettings, early: EarlyStop
) -> int | None:
    """None once Redis answers, or the exit code. During an outage the container waits,
    unready, instead of crash-looping; a refusal (password, certificate) exits."""
    waiting: Heartbeat | None = None
    status = {"ready": False, "state": "waiting for redis", "error": ""}
    where = _redacted(settings.redis_url)
    last_log = 0.0
    try:
        while True:
            try:
                connection.ping()
                return None
            except redis.exceptions.RedisError as exc:
                if not is_outage(exc):
                    log.error("redis refused us at %s: %s", where, exc)
                    return EXIT_REDIS_UNREACHABLE
                status["error"] = f"{type(exc).__name__}: {exc}"
                if time.monotonic() - last_log > 30:
                    last_log = time.monotonic()
                    log.error("redis unreachable at %s, waiting: %s", where, exc)
                if waiting is None:  # alive for the liveness probe, not ready
                    waiting = Heartbeat(
                        settings.health_file, settings.health_interval, lambda: dict(status)
                    )
                    waiting.start()
            if early.requested:
                return EXIT_OK
            time.sleep(REDIS_RETRY_SECONDS)
    finally:
        if waiting is not None:
            waiting.stop(remove=True)


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
