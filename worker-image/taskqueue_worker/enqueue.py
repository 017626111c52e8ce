"""``taskqueue-enqueue``: what the pods of a TaskQueue schedule (CronJob) run.

Usage::

    taskqueue-enqueue --function PKG.MOD.FUNC --queue Q
        [--args JSON_LIST] [--kwargs JSON_OBJECT]
        [--job-timeout SECONDS] [--retry-max N] [--retry-intervals 10,60,...]
        [--result-ttl SECONDS] [--failure-ttl SECONDS]
        [--idempotency-key KEY] [--idempotency-ttl SECONDS]

Durations take plain seconds or a unit suffix (``360s``, ``15m``, ``2h``, ``1d``);
TTLs also accept ``-1`` (rq: keep forever).

Environment: ``REDIS_URL`` (required), ``RQ_KEY_PREFIX``, and
``TASKQUEUE_IDEMPOTENCY_KEY`` (default for ``--idempotency-key``; the operator
sets it to the pod's ``batch.kubernetes.io/job-name``, unique per schedule slot).

Idempotency: with a key, the job id is derived from (key, queue, function), and
an idempotency marker ``<prefix>:taskqueue:enqueued:<digest>`` (TTL
``--idempotency-ttl``, default 7 days) is written in the same MULTI/EXEC as the
job, under WATCH of the marker and the job's hash. A second run for the same
slot - even concurrent - finds one of them and enqueues nothing.

Exit codes (one line on stderr for every error, nothing enqueued):
0 enqueued (job id on stdout) or already enqueued for this key (says so);
2 bad arguments, JSON or settings; 3 function path not importable or not callable;
4 Redis unreachable or failing; 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from taskqueue_contract import durations
from taskqueue_contract import env as names
from taskqueue_contract.keys import Keys

from taskqueue_worker import config

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_FUNCTION = 3
EXIT_REDIS = 4

DEFAULT_IDEMPOTENCY_TTL = 7 * 24 * 3600
MAX_KEY_LENGTH = 512
_SLUG_RE = re.compile(r"[^A-Za-z0-9_-]+")
_IDENTIFIER_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


class EnqueueError(Exception):
    """An error with its exit code; the message is one line for the user."""

    exit_code = EXIT_UNEXPECTED


class UsageError(EnqueueError):
    exit_code = EXIT_USAGE


class FunctionError(EnqueueError):
    exit_code = EXIT_FUNCTION


class RedisUnavailable(EnqueueError):
    exit_code = EXIT_REDIS


@dataclass(frozen=True)
class EnqueueRequest:
    function: str
    queue: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    job_timeout: int | None = None
    retry_max: int | None = None
    retry_intervals: list[int] = field(default_factory=list)
    result_ttl: int | None = None
    failure_ttl: int | None = None
    idempotency_key: str | None = None
    idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL

    @property
    def digest(self) -> str:
        """Identity of the slot: the key plus what it enqueues, so two schedules that
        happen to share a key (or a key reused for another function) never collide."""
        assert self.idempotency_key is not None
        material = "\0".join([self.idempotency_key, self.queue, self.function])
        return hashlib.sha256(material.encode()).hexdigest()

    @property
    def job_id(self) -> str | None:
        """Deterministic job id for keyed runs: readable slug + digest; else None (random)."""
        if self.idempotency_key is None:
            return None
        slug = _SLUG_RE.sub("-", self.idempotency_key).strip("-")[:80]
        digest = self.digest[:16]
        return f"{slug}-{digest}" if slug else digest


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="taskqueue-enqueue", description="Enqueue one RQ job (for CronJobs).")
    parser.add_argument(
        "--function", required=True, help="dotted path, e.g. tasks.ingest.fetch_candles"
    )
    parser.add_argument("--queue", required=True)
    parser.add_argument("--args", default="[]", help="JSON list of positional arguments")
    parser.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    parser.add_argument(
        "--job-timeout", default=None, help="seconds (or 15m, 2h) before rq kills the job"
    )
    parser.add_argument(
        "--retry-max", type=int, default=None, help="retries after the first failure"
    )
    parser.add_argument(
        "--retry-intervals", default=None, help="comma-separated seconds, e.g. 10,60,300"
    )
    parser.add_argument("--result-ttl", default=None, help="seconds to keep a result; -1 forever")
    parser.add_argument(
        "--failure-ttl", default=None, help="seconds to keep a failed job; -1 forever"
    )
    parser.add_argument(
        "--idempotency-key", default=None, help="default: TASKQUEUE_IDEMPOTENCY_KEY"
    )
    parser.add_argument(
        "--idempotency-ttl",
        default=str(DEFAULT_IDEMPOTENCY_TTL),
        help="seconds the key is remembered (default 7 days)",
    )
    return parser


def parse_duration(raw: str, option: str, allow_forever: bool = False) -> int:
    """Whole seconds (rounded up) of `raw`: bare seconds or a duration like 90s, 1h30m, 7d."""
    text = raw.strip()
    sign = -1 if text.startswith("-") else 1
    try:
        value = sign * durations.whole_seconds(durations.parse_seconds(text.removeprefix("-")))
    except ValueError:
        raise UsageError(
            f"{option} must be seconds or a duration like 90s, 15m, 1h30m, got {raw!r}"
        ) from None
    if allow_forever and value == -1:
        return -1
    if value <= 0:
        hint = " (or -1 for forever)" if allow_forever else ""
        raise UsageError(f"{option} must be > 0{hint}, got {raw!r}")
    return value


def _parse_json(raw: str, option: str, kind: type) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        expected = "a JSON list" if kind is list else "a JSON object"
        raise UsageError(f"{option} must be {expected}, got {type(value).__name__}")
    return value


def parse_request(argv: Sequence[str], env: Mapping[str, str]) -> EnqueueRequest:
    """Validate everything that needs neither Redis nor the user's code."""
    ns = build_parser().parse_args(list(argv))
    function = ns.function.strip()
    if not _IDENTIFIER_PATH_RE.fullmatch(function):
        raise UsageError(
            f"--function must be a dotted path like package.module.function, got {function!r}"
        )
    queue = ns.queue.strip()
    if not queue or any(c.isspace() for c in queue):
        raise UsageError(f"--queue must be a non-empty name without spaces, got {ns.queue!r}")
    args = _parse_json(ns.args, "--args", list)
    kwargs = _parse_json(ns.kwargs, "--kwargs", dict)

    retry_intervals: list[int] = []
    if ns.retry_intervals is not None and ns.retry_intervals.strip():
        try:
            retry_intervals = [int(part) for part in ns.retry_intervals.split(",")]
        except ValueError:
            raise UsageError(
                "--retry-intervals must be comma-separated whole seconds, "
                f"got {ns.retry_intervals!r}"
            ) from None
        if any(i < 0 for i in retry_intervals):
            raise UsageError("--retry-intervals must not be negative")
        if ns.retry_max is None:
            raise UsageError("--retry-intervals needs --retry-max")
    if ns.retry_max is not None and ns.retry_max < 1:
        raise UsageError(f"--retry-max must be >= 1, got {ns.retry_max}")

    key = ns.idempotency_key if ns.idempotency_key is not None else env.get(names.IDEMPOTENCY_KEY)
    key = key.strip() if key else None
    if key and len(key) > MAX_KEY_LENGTH:
        raise UsageError(f"idempotency key longer than {MAX_KEY_LENGTH} characters")

    return EnqueueRequest(
        function=function,
        queue=queue,
        args=args,
        kwargs=kwargs,
        job_timeout=parse_duration(ns.job_timeout, "--job-timeout") if ns.job_timeout else None,
        retry_max=ns.retry_max,
        retry_intervals=retry_intervals,
        result_ttl=parse_duration(ns.result_ttl, "--result-ttl", True) if ns.result_ttl else None,
        failure_ttl=parse_duration(ns.failure_ttl, "--failure-ttl", True)
        if ns.failure_ttl
        else None,
        idempotency_key=key or None,
        idempotency_ttl=parse_duration(ns.idempotency_ttl, "--idempotency-ttl"),
    )


def resolve_function(path: str) -> Callable[..., Any]:
    """Import `path` the way rq's worker will, with a precise reason on failure.

    Tries the longest importable module prefix (so ``pkg.mod.Class.method`` works);
    an error raised while importing an existing module is reported as such, not
    mistaken for "no such module".
    """
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only "this very module (or a parent) does not exist" means: try shorter.
            if exc.name is not None and module_name.startswith(exc.name):
                continue
            raise FunctionError(f"importing {module_name} failed: {exc}") from None
        except Exception as exc:
            raise FunctionError(
                f"importing {module_name} failed: {type(exc).__name__}: {exc}"
            ) from None
        target: Any = module
        for attr in parts[split:]:
            try:
                target = getattr(target, attr)
            except AttributeError:
                raise FunctionError(
                    f"{path} not found: {module_name} has no {'.'.join(parts[split:])}"
                ) from None
        if not callable(target):
            raise FunctionError(f"{path} is not callable ({type(target).__name__})")
        return target
    raise FunctionError(f"{path} not importable: no module {parts[0]!r}")


@dataclass(frozen=True)
class Outcome:
    job_id: str
    created: bool


def enqueue(request: EnqueueRequest, connection: Any) -> Outcome:
    """Enqueue `request` (once per idempotency key, if it has one)."""
    from redis.exceptions import WatchError
    from rq import Queue, Retry
    from rq.defaults import RQ_KEY_PREFIX

    keys = Keys(RQ_KEY_PREFIX)
    queue = Queue(request.queue, connection=connection)
    retry = (
        Retry(max=request.retry_max, interval=request.retry_intervals or 0)
        if request.retry_max is not None
        else None
    )
    options: dict[str, Any] = {
        "args": request.args,
        "kwargs": request.kwargs,
        "timeout": request.job_timeout,
        "result_ttl": request.result_ttl,
        "failure_ttl": request.failure_ttl,
        "retry": retry,
        "description": f"{request.function} (taskqueue-enqueue)",
    }
    if request.idempotency_key is None:
        job = queue.enqueue_call(request.function, **options)
        return Outcome(job.id, True)

    job_id = request.job_id
    assert job_id is not None
    options["meta"] = {"idempotency_key": request.idempotency_key}
    marker = keys.own("enqueued", request.digest)
    job_key = keys.job(job_id)
    with connection.pipeline() as pipe:
        while True:
            try:
                # Optimistic lock: if another run writes either key before our EXEC,
                # EXEC fails and the loop sees its job.
                pipe.watch(marker, job_key)
                if pipe.exists(marker) or pipe.exists(job_key):
                    pipe.unwatch()
                    return Outcome(job_id, False)
                pipe.multi()
                pipe.set(marker, job_id, ex=request.idempotency_ttl)
                queue.enqueue_call(request.function, job_id=job_id, pipeline=pipe, **options)
                pipe.execute()
                return Outcome(job_id, True)
            except WatchError:
                continue


def run(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """Everything but printing: the line to print on success, or an EnqueueError."""
    request = parse_request(argv, env)
    try:
        redis_url = config.redis_url(env)
        config.key_prefix(env)
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    resolve_function(request.function)

    import redis

    connection = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        connection.ping()
        outcome = enqueue(request, connection)
    except redis.exceptions.RedisError as exc:
        raise RedisUnavailable(f"redis unreachable: {type(exc).__name__}: {exc}") from None
    finally:
        connection.close()
    if outcome.created:
        return outcome.job_id
    return (
        f"already enqueued: job {outcome.job_id} for idempotency key "
        f"{request.idempotency_key!r}; nothing to do"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = config.environ() if env is None else env
    argv = sys.argv[1:] if argv is None else argv
    try:
        print(run(argv, env))
        return EXIT_OK
    except EnqueueError as exc:
        print(f"taskqueue-enqueue: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # last resort: still one line and a distinct code
        print(
            f"taskqueue-enqueue: unexpected {type(exc).__name__}: {_one_line(str(exc))}",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
