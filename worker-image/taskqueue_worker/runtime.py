"""The rq side of ``taskqueue-worker``: worker classes and the run loop.

Imported only after the environment has been validated (rq reads
``RQ_KEY_PREFIX`` when it is imported).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import mmap
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, SimpleWorker, Worker
from rq.connections import parse_connection
from rq.exceptions import StopRequested
from rq.job import Job
from rq.utils import utcformat
from taskqueue_contract.failures import classify
from taskqueue_contract.redaction import redact_url

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

# Bounded shutdown. rq gives the worker's connection a socket timeout of 415 s (its 405 s
# BLPOP plus 10 s, so that an idle dequeue never times out), longer than a pod's grace
# period (jobTimeout + 30 s): a Redis that stops answering while the worker stops would
# keep the pod until SIGKILL. Once stopping, rq's remaining bookkeeping uses these bounds.
SHUTDOWN_REDIS_TIMEOUT = 2.0
"""Seconds one Redis command may take once the worker is stopping. Shutdown writes are a
few tiny commands that a healthy Redis answers in milliseconds; 2 s still rides out a
hiccup (a fork for BGSAVE), and the handful of them in a row stays far inside the 30 s a
pod has after its job's timeout."""
RQ_DEFAULT_TIMEOUT = Queue.DEFAULT_TIMEOUT
"""What rq's `Queue.enqueue` stores as the timeout of a job enqueued without one (180 s)."""
SCHEDULER_STOP_TIMEOUT = 3.0
"""Seconds rq's scheduler process gets to exit after its SIGTERM before it is killed. It
sees the request after its current 1 s sleep, then releases its locks in milliseconds: 3 s
is three of its intervals. Killed, it leaves its locks to expire (61 s TTL), as a SIGKILL
at the end of the grace period would."""


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
    password or certificate needs a restart to pick up a fixed Secret, an outage does not.
    By the exception's type (and what it was raised from), as the operator classifies."""
    return classify(error).transient


if TYPE_CHECKING:
    from rq.worker.base import BaseWorker as _WorkerBase  # what the mixin extends
else:
    _WorkerBase = object


class _TaskqueueWorkerMixin(_WorkerBase):
    """Adds the heartbeat file, early-signal handling and outage survival to an rq worker.

    rq quits its work loop on a connection error anywhere but in its blocking dequeue,
    where it backs off up to 60 s. Exiting makes the container crash-loop for the whole
    outage (with kubelet back-off, minutes after Redis returns); so an idle worker waits
    for Redis instead and takes jobs again within a second of its return. An error
    during a job still ends the process: the operator then requeues that job at once.

    A stopping worker never waits on Redis for long (see `bound_redis_calls`): from the
    stop request on (in a fork worker; a simple worker runs the job in-process, so from
    its job's end) and in the horse once its job's function has returned, rq's
    bookkeeping gets `SHUTDOWN_REDIS_TIMEOUT` per command, its scheduler process
    `SCHEDULER_STOP_TIMEOUT`; what cannot be written is logged and left to the operator's
    recovery. The job's own Redis calls keep rq's timeout: a job is never cut short by us.
    """

    health: Heartbeat | None = None
    job_timeout: int | None = None
    """The TaskQueue's jobTimeout: default and upper bound of every job's timeout."""
    stop_requested_early: bool = False
    max_connection_wait_time = 1.0  # rq's dequeue back-off cap (default 60 s)
    bound_redis_on_stop_request = True  # False where the job runs in this process
    _registration_lock = threading.Lock()
    _stopping: _StopFlag | None = None
    _redis_bounded = False
    _redis_silent: BaseException | None = None  # Redis failed us after the last job's end

    def check_for_suspension(self, burst: bool) -> None:
        self._through_outages(super().check_for_suspension, burst)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        call = super().dequeue_job_and_maintain_ttl
        return self._through_outages(call, timeout, max_idle_time)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except REDIS_DOWN as error:
            log.warning("maintenance skipped, Redis is away: %s", error)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # part of rq's own transaction: not ours to guard
            super().heartbeat(timeout, pipeline)
            return
        try:
            super().heartbeat(timeout)
        except REDIS_DOWN as error:  # the next loop turn waits for Redis
            log.warning("heartbeat skipped, Redis is away: %s", error)

    def register_again_if_forgotten(self, connection: redis.Redis | None = None) -> None:
        """A Redis that came back empty (no persistence) forgot this worker: register
        again so that the operator and `rq info` see it. Called by the heartbeat thread
        too, because rq's blocking dequeue reconnects on its own and then waits minutes;
        that thread passes its own client, whose short timeout keeps the beats (and so
        the liveness probe) going when Redis stops answering."""
        with self._registration_lock:
            if self._stop_requested or self._shutdown_requested_date:
                return  # tearing down: registering now would resurrect a dying worker
            if connection is None:
                connection = self.connection
            if not connection.hexists(self.key, "birth"):
                log.warning("Redis forgot this worker: registering again")
                connection.delete(self.key)
                self.register_birth()

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
        connection: redis.Redis = self.connection
        while not self._stop_requested:
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
        self._stopping = _StopFlag()  # before any work horse is forked
        super().bootstrap(*args, **kwargs)
        if self.health is not None:
            # Registered in Redis from here on: only now may probes pass.
            self.health.start()
        if self.stop_requested_early:
            self._stop_requested = True

    # --- bounded shutdown -------------------------------------------------------------

    def _bound_redis(self) -> None:
        """From now on this process's rq bookkeeping waits at most SHUTDOWN_REDIS_TIMEOUT
        per Redis command (see `bound_redis_calls`)."""
        if not self._redis_bounded:
            self._redis_bounded = True
            bound_redis_calls(self.connection, SHUTDOWN_REDIS_TIMEOUT)

    def _is_stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    def request_stop(self, signum: int, frame: Any) -> None:
        """rq's SIGTERM/SIGINT handler (warm shutdown), after raising the stop flag (a
        work horse checks it when its job ends) and bounding this process's Redis calls."""
        if self._stopping is not None:
            self._stopping.set()
        if self.bound_redis_on_stop_request:
            self._bound_redis()
        super().request_stop(signum, frame)

    def set_shutdown_requested_date(self) -> None:
        """Overrides rq's one-liner, which rq's signal handler calls while a job runs: an
        error would be raised into the job monitor (or, in a simple worker, into the job
        itself), and a Redis that does not answer would stall it for 415 s. A bounded
        client writes the (informational) field instead, best effort."""
        requested = self._shutdown_requested_date  # set by rq's request_stop just before
        if requested is None:
            return
        date = utcformat(requested)
        client = bounded_client(self.connection, SHUTDOWN_REDIS_TIMEOUT)
        try:
            client.hset(self.key, "shutdown_requested_date", date)
        except REDIS_DOWN as error:
            log.warning("could not record the shutdown request in Redis: %s", error)
        finally:
            client.connection_pool.disconnect()

    def handle_execution_ended(self, job: Job, queue: Any, heartbeat_ttl: int) -> None:
        """rq calls this right after the job's function returned or raised, in the process
        that ran it (the horse of a fork worker). When the worker is stopping, what is left
        is recording the outcome, bounded: a Redis that does not answer must not keep the
        pod beyond the job's end. The job's own calls ran with rq's timeout."""
        if self._redis_silent is not None:
            # rq's failure path, after its success path found Redis silent: no second wait.
            raise self._redis_silent
        stopping = self._is_stopping()
        if stopping:
            log.info(
                "job %s ended while the worker is stopping: recording its outcome "
                "(at most %gs per Redis call)",
                job.id,
                SHUTDOWN_REDIS_TIMEOUT,
            )
            self._bound_redis()
        try:
            super().handle_execution_ended(job, queue, heartbeat_ttl)
        except REDIS_DOWN as error:
            if stopping:
                self._redis_silent = error
                log.warning(
                    "%s during shutdown: the outcome of job %s is not recorded; the "
                    "operator's recovery handles the job (%s)",
                    _silence(error),
                    job.id,
                    error,
                )
            raise

    def execute_job(self, job: Job, queue: Any) -> None:
        """rq's, with the job's timeout bounded by the TaskQueue's jobTimeout (see
        `bound_job_timeout`), noting a Redis that failed the bookkeeping after the job
        while stopping: the rest of the shutdown then does not wait for it again."""
        bound_job_timeout(job, self.job_timeout)
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as error:
            if self._is_stopping():
                self._redis_silent = error
            raise

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        """The fork worker's heartbeats while its horse runs. Normally an error ends the
        worker (and the operator requeues the job); while stopping the job is left to
        finish, so a Redis that does not answer only costs the heartbeat."""
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_DOWN as error:
            if not self._is_stopping():
                raise
            log.warning("job heartbeat skipped while stopping, Redis is away: %s", error)

    def stop_scheduler(self) -> None:
        """Overrides rq's, which SIGTERMs the scheduler process and then joins it without a
        timeout: a scheduler blocked on a Redis that does not answer (its connection keeps
        rq's 415 s socket timeout, copied before it forked) held the whole worker until
        SIGKILL. Here it gets SCHEDULER_STOP_TIMEOUT, then it is killed. It is also only
        signalled while alive (rq's would signal a reaped, possibly reused, PID)."""
        scheduler = self.scheduler
        process = scheduler._process if scheduler is not None else None
        if process is None or process.pid is None or not process.is_alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        process.join(SCHEDULER_STOP_TIMEOUT)
        if process.is_alive():
            log.warning(
                "rq's scheduler (PID %d) did not stop within %gs, Redis is not answering: "
                "killing it; its locks expire on their own",
                process.pid,
                SCHEDULER_STOP_TIMEOUT,
            )
            process.kill()
            process.join(SCHEDULER_STOP_TIMEOUT)

    def register_death(self) -> None:
        """rq's unregistration, given up on (with a log line) when Redis does not answer,
        or not tried when it already failed the bookkeeping after the last job."""
        try:
            if self._redis_silent is None:
                super().register_death()
                return
        except REDIS_DOWN as error:
            self._redis_silent = error
        log.warning(
            "%s during shutdown: exiting without unregistering; the operator's recovery "
            "handles the stale worker entry (%s)",
            _silence(self._redis_silent),
            self._redis_silent,
        )

    def unsubscribe(self) -> None:
        """Overrides rq's, which closes the pubsub connection after a 1 s join of its
        thread even when that thread still waits for Redis to confirm the unsubscription:
        the thread then crashed on the closed socket. Here a thread still waiting is left
        alone (a daemon, it ends with the process), and a Redis that is away cannot turn
        the warm shutdown into an error exit."""
        thread = self.pubsub_thread
        pubsub = self.pubsub
        if not thread or pubsub is None:
            return
        log.info("unsubscribing from channel %s", self.pubsub_channel_name)
        if self._redis_silent is None:  # else no confirmation will come: do not wait for it
            try:
                pubsub.unsubscribe()
            except REDIS_DOWN as error:
                log.warning("could not unsubscribe, Redis is away: %s", error)
        thread.stop()
        thread.join(timeout=1 if self._redis_silent is None else 0)
        if not thread.is_alive():
            pubsub.close()

    def teardown(self) -> None:
        if not self.is_horse:
            # Every way out (signal, --burst, --max-jobs, a loop error) ends here.
            self._bound_redis()
            if self.health is not None:
                self.health.stop(remove=True)
        super().teardown()


class TaskqueueForkWorker(_TaskqueueWorkerMixin, Worker):
    """Fork-per-job worker (rq.Worker)."""


class TaskqueueSimpleWorker(_TaskqueueWorkerMixin, SimpleWorker):
    """In-process worker (rq.SimpleWorker)."""

    # The job runs in this process: its own Redis calls keep rq's timeout until it ends
    # (then `handle_execution_ended` bounds the rest).
    bound_redis_on_stop_request = False


def bound_job_timeout(job: Job, limit: int | None, rq_default: int = RQ_DEFAULT_TIMEOUT) -> None:
    """Make `limit` (the TaskQueue's jobTimeout) the default and the upper bound of `job`'s
    timeout, for this execution: rq reads `job.timeout` for everything that follows (the
    work horse's death penalty, the parent's hard kill, the heartbeat and started-registry
    TTLs), and the fork copies it into the horse. The job's hash in Redis keeps what its
    producer asked for. The pod's grace period (jobTimeout + 30 s) then always covers a
    running job: a scale-down never SIGKILLs one that would start over.

    No timeout of its own: `limit`. rq's `Queue.enqueue` writes its default (180 s) into
    every job enqueued without one, so exactly that value counts as none (raised or
    lowered to `limit`, silently). Longer or infinite (-1): `limit`, logged once for this
    execution. Shorter: kept."""
    if limit is None:
        return
    asked = job.timeout
    if asked is None or asked == rq_default:
        job.timeout = limit
        return
    if asked == -1 or asked > limit:
        log.warning(
            "job %s asks for a timeout of %s; this worker's jobTimeout caps it to %ds "
            "(the pod's grace period, jobTimeout + 30 s, must cover a running job)",
            job.id,
            "none (-1)" if asked == -1 else f"{asked:g}s",
            limit,
            extra={"job_id": job.id, "job_timeout": limit, "asked_timeout": asked},
        )
        job.timeout = limit


def _silence(error: BaseException | None) -> str:
    if isinstance(error, redis.exceptions.TimeoutError):
        return f"Redis did not answer within {SHUTDOWN_REDIS_TIMEOUT:g}s"
    return "Redis is unreachable"


class _StopFlag:
    """One byte shared with the work horses forked later: a fork worker's horse does not
    get the pod's SIGTERM (its parent does) but must know about it when its job ends."""

    def __init__(self) -> None:
        self._byte = mmap.mmap(-1, 1)  # anonymous and MAP_SHARED: survives fork() shared

    def set(self) -> None:
        self._byte[0] = 1

    def is_set(self) -> bool:
        return self._byte[0] == 1


def bounded_client(client: redis.Redis, timeout: float) -> redis.Redis:
    """A new client with `client`'s settings whose commands fail after `timeout` s, tried
    once (redis-py's own retries, when configured, would multiply the bound)."""
    client_class, connection_class, kwargs = parse_connection(client)
    kwargs.update(
        socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    pool = redis.ConnectionPool(connection_class=connection_class, **kwargs)
    return client_class(connection_pool=pool)


def bound_redis_calls(client: redis.Redis, timeout: float) -> None:
    """Make every later command through `client` fail after `timeout` s instead of rq's
    415 s: rq's worker, its queues and the jobs it fetched all share this client object, so
    it gets a new pool with the same settings (rebuilt as rq rebuilds its scheduler's
    connection). A command in flight finishes on the old pool: open sockets keep the
    timeout they were made with, and no pool is reset under an interrupted command."""
    client.connection_pool = bounded_client(client, timeout).connection_pool


WORKER_CLASSES: dict[
    config.WorkerClass, type[TaskqueueForkWorker] | type[TaskqueueSimpleWorker]
] = {
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
    job_timeout: int | None = None
    """Default and upper bound of every job's timeout (jobTimeout); None: rq's rules."""
    with_scheduler: bool = True
    """Run rq's scheduler (delayed retries). One loop of a pod's pool is enough: rq's
    scheduler takes a lock per queue, so the others' would only idle in a process each."""


def _status_fn(url: str, worker: Any) -> Any:
    # Own client: the heartbeat thread must never share a connection with the
    # work loop (or a fork could inherit one mid-command).
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def status() -> dict[str, Any]:
        client.ping()
        if not worker.is_horse:
            worker.register_again_if_forgotten(client)
        return {"worker": worker.name, "hostname": worker.hostname, "state": worker._state}

    return status


def preload(modules: tuple[str, ...] | list[str]) -> int | None:
    """Import the TASKQUEUE_PRELOAD modules; EXIT_PRELOAD if one fails, else None. A pool
    imports them once, before it forks its loops (then this is a no-op in each)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            log.error(
                "TASKQUEUE_PRELOAD: importing %s failed: %s: %s", module, type(exc).__name__, exc
            )
            return EXIT_PRELOAD
    return None


def run(settings: WorkerSettings, early: EarlyStop | None = None) -> int:
    """Run the worker until a warm shutdown (or, in burst mode, an empty queue)."""
    early = early if early is not None else EarlyStop().install()
    # A restarted container keeps its emptyDir: the previous process's heartbeat
    # must not make this one look alive before it has even registered.
    settings.health_file.unlink(missing_ok=True)

    failed = preload(settings.preload)
    if failed is not None:
        return failed

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
    worker.job_timeout = settings.job_timeout
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
            "job_timeout": settings.job_timeout,
        },
    )
    try:
        worker.work(
            burst=settings.burst,
            # Delayed retries sit in the scheduled registry until a scheduler runs.
            with_scheduler=settings.with_scheduler,
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
    where = redact_url(settings.redis_url)
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
