"""The command line: kubectl-style flags, one-line errors, exit codes. No cluster, no Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from taskqueue_plugin.errors import EXIT_ERROR, EXIT_REDIS, EXIT_USAGE
from taskqueue_plugin.main import build_parser, main
from testbed.ports import free_port


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_flags_work_before_and_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["-n", "quant", "--context", "c", "dlq", "list", "tq"])
    after = parser.parse_args(["dlq", "list", "tq", "-n", "quant", "--context", "c"])
    for options in (before, after):
        assert (options.namespace, options.context, options.taskqueue) == ("quant", "c", "tq")
    assert parser.parse_args(["status", "tq"]).namespace is None
    mixed = parser.parse_args(["dlq", "requeue", "tq", "--queue", "high", "id1", "-n", "x", "id2"])
    assert (mixed.job_ids, mixed.queue, mixed.namespace) == (["id1", "id2"], ["high"], "x")


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "dlq requeue" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["frobnicate", "tq"], "invalid choice"),
        (["dlq", "purge", "tq", "--redis-url", "redis://127.0.0.1:1/0"], "say which failed jobs"),
        (["dlq", "requeue", "tq", "--all", "abc", "--redis-url", "redis://x/0"], "one of --all"),
        (
            ["dlq", "requeue", "tq", "--older-than", "7 days", "--redis-url", "redis://x/0"],
            "invalid duration '7 days'",
        ),
        (["status", "tq", "--redis-url", "redis://x/0", "-n", "ns"], "drop -n"),
        (["status", "tq", "--key-prefix", "jobs"], "--key-prefix goes with --redis-url"),
        (["jobs", "export", "tq", "--redis-url", "redis://x/0"], "--to"),
    ],
)
def test_usage_errors(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert fragment in error_line(capsys)


def test_missing_kubeconfig(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "tq", "--kubeconfig", str(tmp_path / "nope")]) == EXIT_ERROR
    assert "cannot load the kubeconfig" in error_line(capsys)


def test_unreachable_redis_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    assert main(["dlq", "list", "tq", "--redis-url", url]) == EXIT_REDIS
    line = error_line(capsys)
    assert "cannot reach Redis at redis://:***@127.0.0.1" in line
    assert "hunter2-secret" not in line
