"""``taskqueue-worker``: the container entrypoint of worker pods.

Usage::

    taskqueue-worker [--worker-class fork|simple] [--job-timeout SECONDS] [--processes N]
                     [--burst] [--max-jobs N] QUEUE [QUEUE ...]
    taskqueue-worker --probe [--max-age SECONDS] [--ready]

Queues are listened to in the order given (priority order). Environment: see
:mod:`taskqueue_worker.config` (``REDIS_URL`` required, ``RQ_KEY_PREFIX``,
``TASKQUEUE_WORKER_CLASS``, ``TASKQUEUE_JOB_TIMEOUT``, ``TASKQUEUE_PROCESSES``, ``POD_NAME``,
``TASKQUEUE_HEALTH_FILE``...).

Exit codes: 0 after a warm shutdown (first SIGTERM/SIGINT: the running job
finishes first) or a finished ``--burst``; 1 when the loop ends otherwise or on a
cold shutdown (a second signal more than 1 s after the first); 2 for a bad
setting or argument; 3 when a ``TASKQUEUE_PRELOAD`` module fails to import;
4 when Redis is unreachable at start-up. With ``--processes`` N > 1 a supervisor runs N
loops (:mod:`taskqueue_worker.pool`) and exits with the code of the loop that made it
stop. ``--probe`` exits 0 when the heartbeat
file is fresh, 1 otherwise, printing one line.

This module imports neither rq nor pandas, so probes start fast and a bad
``RQ_KEY_PREFIX`` is reported in one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from taskqueue_contract import worker_names as names

from taskqueue_worker import config

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: it ends up in pod events.
        self.exit(EXIT_USAGE, f"taskqueue-worker: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="taskqueue-worker", description="Run an RQ worker for a TaskQueue.")
    parser.add_argument("queues", nargs="*", metavar="QUEUE", help="queues, highest priority first")
    parser.add_argument(
        "--worker-class",
        choices=[c.value for c in config.WorkerClass],
        default=None,
        help="fork: a process per job (default, isolates jobs); simple: jobs run in-process "
        "(faster for tiny jobs). Default from TASKQUEUE_WORKER_CLASS.",
    )
    parser.add_argument(
        "--job-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="default and upper bound of every job's timeout (the TaskQueue's "
        "spec.worker.jobTimeout). Default from TASKQUEUE_JOB_TIMEOUT; neither: rq's rules.",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="work loops in this pod, under one supervisor (spec.worker.processes). "
        "Default from TASKQUEUE_PROCESSES, else 1.",
    )
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    parser.add_argument("--max-jobs", type=int, default=None, help="exit after N jobs")
    parser.add_argument("--probe", action="store_true", help="check the heartbeat file and exit")
    parser.add_argument(
        "--max-age",
        type=float,
        default=config.DEFAULT_PROBE_MAX_AGE,
        help="--probe: oldest acceptable heartbeat in seconds "
        f"(default {config.DEFAULT_PROBE_MAX_AGE:g})",
    )
    parser.add_argument(
        "--ready", action="store_true", help="--probe: also require a Redis connection"
    )
    return parser


def probe_main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from taskqueue_worker.health import probe

    ok, message = probe(config.health_file(env), args.max_age, require_ready=args.ready)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = config.environ() if env is None else env
    args = build_parser().parse_args(argv)
    if args.probe:
        return probe_main(args, env)
    try:
        if not args.queues:
            raise config.ConfigError("give at least one QUEUE to listen on")
        if args.max_jobs is not None and args.max_jobs < 1:
            raise config.ConfigError("--max-jobs must be >= 1")
        config.key_prefix(env)  # before rq is imported: it would raise a bare ValueError
        pod = config.pod_name(env)
        processes = config.processes(args.processes, env)
        worker_name = names.worker_name(pod, slot=0)
        from taskqueue_worker.logs import setup_json_logging

        level = config.log_level(env)
        settings_kwargs = {
            "redis_url": config.redis_url(env),
            "queues": list(args.queues),
            "worker_class": config.worker_class(args.worker_class, env),
            "pod_name": pod,
            "worker_name": worker_name,
            "health_file": config.health_file(env),
            "health_interval": config.positive_float(
                env, "TASKQUEUE_HEALTH_INTERVAL", config.DEFAULT_HEALTH_INTERVAL
            ),
            "log_level": level,
            "preload": config.preload_modules(env),
            "job_timeout": config.job_timeout(args.job_timeout, env),
            "burst": args.burst,
            "max_jobs": args.max_jobs,
        }
    except config.ConfigError as exc:
        print(f"taskqueue-worker: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from taskqueue_worker.lifecycle import EarlyStop

    early = EarlyStop().install()  # before the slow imports (rq, the preloads)
    if processes > 1:
        setup_json_logging(level, static={"worker": f"{pod}-pool", "pod": pod})
        from taskqueue_worker import pool, runtime

        return pool.main(runtime.WorkerSettings(**settings_kwargs), processes, early)
    setup_json_logging(level, static={"worker": worker_name, "pod": pod})
    from taskqueue_worker import runtime

    return runtime.main_guarded(runtime.WorkerSettings(**settings_kwargs), early)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
