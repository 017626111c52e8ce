"""`kubectl-taskqueue`: the TaskQueue kubectl plugin (`kubectl taskqueue ...` once on PATH).

Commands:
  status   <tq>                 queues, workers, replicas, conditions, scaling history
  progress <tq>                 running jobs with their meta['progress'], pod and elapsed time
  dlq list <tq>                 dead letters: id, function, exception, failed, retries left
  dlq show <tq> <job-id>        traceback, args/kwargs, meta and timestamps of one job
  dlq requeue <tq> SELECTION    back to their queues (RQ's FailedJobRegistry.requeue)
  dlq purge <tq> SELECTION      delete jobs and results (asks on a TTY unless --yes)
  jobs export <tq> --to F       job history as Parquet (pandas/pyarrow)

SELECTION is --all, job ids, or --older-than DURATION and/or --exception TEXT.
The Redis URL is read from the TaskQueue (spec.redis.url or its Secret). When this
machine cannot reach that host, the plugin port-forwards through the API server to a
ready pod behind the URL's Service (one line on stderr says which way it went).
--redis-url skips the cluster (then --queue names the queues, default: every queue in
Redis).

Exit codes: 0 ok; 1 error; 2 bad arguments; 3 TaskQueue, Secret or job not found;
4 Redis unreachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import redis

from taskqueue_plugin import dlq, jobs, status
from taskqueue_plugin.context import Context
from taskqueue_plugin.errors import EXIT_ERROR, EXIT_REDIS, EXIT_USAGE, CliError, UsageError
from taskqueue_plugin.forward import RedisLink
from taskqueue_plugin.resolve import (
    DEFAULT_PREFIX,
    Target,
    kube_client,
    needs_reexec,
    reexec,
    remember_url,
    resolve_from_cluster,
    scrub,
    split_queue_args,
    target_from_environment,
)
from taskqueue_plugin.selectors import build_selector

PROG = "kubectl taskqueue"
DEBUG_ENV = "TASKQUEUE_CLI_DEBUG"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (`error: ...`), like kubectl, exit code 2.

    Commands (parsers without sub-commands) accept options between positionals:
    `dlq requeue tq --queue high id1 id2` (plain argparse stops at `--queue`).
    """

    _intermixing = False

    # typeshed overloads parse_known_args on `namespace`'s type; this override keeps one
    # signature, as argparse's own implementation has.
    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls us back
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _connection_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """kubectl's flags, accepted before and after the command (kubectl passes both on).

    Sub-commands use SUPPRESS defaults so that an absent flag keeps the top-level value.
    """
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("cluster and Redis")
    group.add_argument("-n", "--namespace", default=default, help="the TaskQueue's namespace")
    group.add_argument("--kubeconfig", default=default, help="path to the kubeconfig file")
    group.add_argument("--context", default=default, help="the kubeconfig context to use")
    group.add_argument(
        "--redis-url",
        default=default,
        help="talk to this Redis directly instead of reading the TaskQueue from the cluster",
    )
    group.add_argument(
        "--key-prefix",
        default=default,
        help=f"RQ key prefix with --redis-url (default {DEFAULT_PREFIX!r})",
    )


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")


def _queue(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue",
        action="append",
        metavar="Q",
        help="only this queue of the TaskQueue (repeat or comma-separate for several)",
    )


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="these failed jobs")
    parser.add_argument("--all", action="store_true", help="every failed job")
    parser.add_argument(
        "--older-than", metavar="DURATION", help="failed more than DURATION ago (30m, 12h, 7d)"
    )
    parser.add_argument(
        "--exception", metavar="TEXT", help="whose traceback contains TEXT (case-sensitive)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be done")
    _queue(parser)
    _output(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def leaf(
        group: argparse._SubParsersAction, name: str, help_text: str
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help_text, description=help_text)
        _connection_options(sub, top=False)
        sub.add_argument("taskqueue", metavar="TASKQUEUE", help="the TaskQueue's name")
        return sub

    sub = leaf(commands, "status", "queues, workers, replicas, conditions and scaling history")
    _queue(sub)
    _output(sub)

    sub = leaf(commands, "progress", "running jobs and their progress (meta['progress'])")
    _queue(sub)
    _output(sub)

    dlq_parser = commands.add_parser("dlq", help="dead-letter queue: the failed-job registries")
    dlq_commands = dlq_parser.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    sub = leaf(dlq_commands, "list", "failed jobs, newest first")
    sub.add_argument("--limit", type=int, default=100, help="at most N jobs (0: all)")
    _queue(sub)
    _output(sub)
    sub = leaf(dlq_commands, "show", "one job: traceback, arguments, meta, timestamps")
    sub.add_argument("job_id", metavar="JOB_ID")
    _queue(sub)
    _output(sub)
    sub = leaf(dlq_commands, "requeue", "put failed jobs back on their queues (RQ's requeue)")
    _selection(sub)
    sub = leaf(dlq_commands, "purge", "delete failed jobs and their results")
    _selection(sub)
    sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    jobs_parser = commands.add_parser("jobs", help="job history")
    jobs_commands = jobs_parser.add_subparsers(
        dest="jobs_command", required=True, metavar="COMMAND"
    )
    sub = leaf(jobs_commands, "export", "write the job history to a Parquet file")
    sub.add_argument("--to", required=True, metavar="FILE.parquet", help="the file to write")
    sub.add_argument(
        "--status",
        action="append",
        metavar="S",
        help=f"only jobs with these statuses ({', '.join(jobs.STATUSES)}); repeatable",
    )
    _queue(sub)
    return parser


def _target(options: argparse.Namespace) -> Target:
    inherited = target_from_environment()
    if inherited is not None:
        remember_url(inherited.redis_url)
        return inherited
    if options.redis_url:
        if options.namespace or options.context or options.kubeconfig:
            raise UsageError("--redis-url talks to Redis directly: drop -n/--context/--kubeconfig")
        return Target(
            name=options.taskqueue,
            namespace=None,
            redis_url=remember_url(options.redis_url),
            key_prefix=options.key_prefix or DEFAULT_PREFIX,
            queues=(),
        )
    if options.key_prefix:
        raise UsageError("--key-prefix goes with --redis-url (a TaskQueue names its own prefix)")
    target = resolve_from_cluster(
        options.taskqueue,
        options.namespace,
        options.kubeconfig,
        options.context,
        with_events=options.command == "status",
    )
    remember_url(target.redis_url)
    return target


def _link(options: argparse.Namespace, target: Target) -> RedisLink | None:
    """A TaskQueue's Redis is reached directly or, failing that, through the API server;
    --redis-url is always dialled as given."""
    if target.namespace is None:
        return None
    return RedisLink(
        target.redis_url,
        target.namespace,
        lambda: kube_client(options.kubeconfig, options.context),
        announce=lambda line: print(line, file=sys.stderr, flush=True),
    )


def run(options: argparse.Namespace, argv: Sequence[str]) -> int:
    target = _target(options)
    if needs_reexec(target):
        return reexec(target, argv)  # the child chooses (and announces) the Redis path
    ctx = Context(
        target=target,
        requested_queues=split_queue_args(getattr(options, "queue", None)),
        output=getattr(options, "output", "table"),
        link=_link(options, target),
    )
    try:
        return _dispatch(ctx, options)
    finally:
        ctx.close()


def _dispatch(ctx: Context, options: argparse.Namespace) -> int:
    if options.command == "status":
        return status.cmd_status(ctx)
    if options.command == "progress":
        return status.cmd_progress(ctx)
    if options.command == "jobs":
        return jobs.cmd_export(ctx, options.to, jobs.parse_statuses(options.status))
    sub = options.dlq_command
    if sub == "list":
        return dlq.cmd_list(ctx, max(0, options.limit))
    if sub == "show":
        return dlq.cmd_show(ctx, options.job_id)
    selector = build_selector(options.all, options.job_ids, options.older_than, options.exception)
    if sub == "requeue":
        return dlq.cmd_requeue(ctx, selector, options.dry_run)
    return dlq.cmd_purge(
        ctx, selector, options.dry_run, options.yes, interactive=ctx.stdin.isatty()
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        options = build_parser().parse_args(arguments)
        return run(options, arguments)
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USAGE
    except CliError as error:
        _fail(str(error))
        return error.code
    except redis.RedisError as error:
        _fail(f"Redis failed: {type(error).__name__}: {error}")
        return EXIT_REDIS
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(f"unexpected {type(error).__name__}: {error} (set {DEBUG_ENV}=1 for the traceback)")
        return EXIT_ERROR


def _fail(message: str) -> None:
    first = scrub(message).strip().splitlines()
    print(f"error: {first[0] if first else 'failed'}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
