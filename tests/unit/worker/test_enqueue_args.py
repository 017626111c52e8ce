"""taskqueue-enqueue: argument validation, function resolution, exit codes without Redis."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rq.job import validate_job_id
from taskqueue_worker import enqueue
from taskqueue_worker.enqueue import EnqueueRequest, FunctionError, UsageError, parse_request

BASE = ["--function", "taskqueue_worker.examples.noop", "--queue", "default"]


def test_minimal_request_has_rq_defaults() -> None:
    request = parse_request(BASE, {})
    assert request == EnqueueRequest(function="taskqueue_worker.examples.noop", queue="default")
    assert request.job_id is None


def test_full_request() -> None:
    request = parse_request(
        [
            *BASE,
            "--args", '["KRW-BTC", 1]',
            "--kwargs", '{"days": 2}',
            "--job-timeout", "15m",
            "--retry-max", "3",
            "--retry-intervals", "10,60,300",
            "--result-ttl", "-1",
            "--failure-ttl", "7d",
            "--idempotency-key", "quant/daily-29345120",
            "--idempotency-ttl", "3600",
        ],
        {},
    )  # fmt: skip
    assert request.args == ["KRW-BTC", 1] and request.kwargs == {"days": 2}
    assert request.job_timeout == 900
    assert (request.retry_max, request.retry_intervals) == (3, [10, 60, 300])
    assert (request.result_ttl, request.failure_ttl) == (-1, 7 * 86400)
    assert request.idempotency_key == "quant/daily-29345120"
    assert request.idempotency_ttl == 3600


def test_idempotency_key_defaults_to_env_and_flag_wins() -> None:
    env = {"TASKQUEUE_IDEMPOTENCY_KEY": "ns/job-1"}
    assert parse_request(BASE, env).idempotency_key == "ns/job-1"
    assert parse_request([*BASE, "--idempotency-key", "k2"], env).idempotency_key == "k2"
    assert parse_request(BASE, {"TASKQUEUE_IDEMPOTENCY_KEY": "  "}).idempotency_key is None


def test_job_ids_are_deterministic_valid_and_distinct_per_slot() -> None:
    def job_id(key: str, queue: str = "default", function: str = "a.b") -> str:
        request = EnqueueRequest(function=function, queue=queue, idempotency_key=key)
        assert request.job_id is not None
        return request.job_id

    first = job_id("quant/daily-ingest-29345120")
    assert first == job_id("quant/daily-ingest-29345120")
    assert first.startswith("quant-daily-ingest-29345120-")
    validate_job_id(first)  # rq accepts it as a custom id
    assert first != job_id("quant/daily-ingest-29345121")
    assert first != job_id("quant/daily-ingest-29345120", queue="other")
    assert first != job_id("quant/daily-ingest-29345120", function="a.c")
    odd = job_id("☃ / ☃")
    validate_job_id(odd)
    validate_job_id(job_id("x" * 500))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--args", "[1,"], "--args is not valid JSON"),
        (["--args", '{"a": 1}'], "--args must be a JSON list"),
        (["--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["--job-timeout", "soon"], "--job-timeout"),
        (["--job-timeout", "0"], "--job-timeout must be > 0"),
        (["--job-timeout", "-1"], "--job-timeout must be > 0"),
        (["--retry-max", "0"], "--retry-max must be >= 1"),
        (["--retry-max", "x"], "--retry-max"),
        (["--retry-intervals", "1,2"], "needs --retry-max"),
        (["--retry-max", "2", "--retry-intervals", "1,a"], "--retry-intervals"),
        (["--retry-max", "2", "--retry-intervals", "1,-2"], "must not be negative"),
        (["--result-ttl", "-2"], "--result-ttl"),
        (["--idempotency-key", "k" * 600], "longer than"),
    ],
)
def test_bad_arguments_are_usage_errors(extra: list[str], needle: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_request([*BASE, *extra], {})
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["--queue", "q"],
        ["--function", "a.b"],
        ["--function", "nodots", "--queue", "q"],
        ["--function", "a.b;rm", "--queue", "q"],
        ["--function", "a.b", "--queue", "has space"],
        ["--function", "a.b", "--queue", "q", "--bogus"],
    ],
)
def test_missing_or_malformed_required_arguments(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_request(argv, {})


def test_resolve_function_variants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tq_broken_mod.py").write_text("import tq_missing_dependency\n")
    (tmp_path / "tq_raising_mod.py").write_text("raise RuntimeError('config missing')\n")
    (tmp_path / "tq_ok_mod.py").write_text(
        "class Tasks:\n    @staticmethod\n    def run():\n        return 1\nVALUE = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert enqueue.resolve_function("taskqueue_worker.examples.noop").__name__ == "noop"
    assert enqueue.resolve_function("tq_ok_mod.Tasks.run")() == 1
    cases = {
        "tq_no_such_pkg.mod.fn": "no module 'tq_no_such_pkg'",
        "tq_ok_mod.nothing": "tq_ok_mod has no nothing",
        "tq_ok_mod.VALUE": "not callable",
        "tq_broken_mod.fn": "No module named 'tq_missing_dependency'",
        "tq_raising_mod.fn": "RuntimeError: config missing",
    }
    for path, needle in cases.items():
        with pytest.raises(FunctionError) as err:
            enqueue.resolve_function(path)
        assert needle in str(err.value), path
    for name in ("tq_broken_mod", "tq_raising_mod", "tq_ok_mod"):
        sys.modules.pop(name, None)


def _run(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    code = enqueue.main(argv, env)
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed as success
    assert captured.err.count("\n") == 1 and captured.err.startswith("taskqueue-enqueue: ")
    return code, captured.err


def test_exit_codes_before_redis(capsys: pytest.CaptureFixture[str]) -> None:
    url = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    assert _run([*BASE, "--args", "{"], url, capsys)[0] == 2
    assert _run(BASE, {}, capsys)[0] == 2  # REDIS_URL missing
    assert _run(BASE, {**url, "RQ_KEY_PREFIX": "bad prefix"}, capsys)[0] == 2
    assert _run(["--function", "tq_nope.fn", "--queue", "q"], url, capsys)[0] == 3


def test_unreachable_redis_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.ports import free_port

    code, err = _run(BASE, {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, capsys)
    assert code == 4 and "redis unreachable" in err


def test_parse_duration() -> None:
    assert enqueue.parse_duration("90", "--x") == 90
    assert enqueue.parse_duration("90s", "--x") == 90
    assert enqueue.parse_duration("2h", "--x") == 7200
    assert enqueue.parse_duration("-1", "--x", allow_forever=True) == -1
    assert enqueue.parse_duration("1.5h", "--x") == 5400  # the contract's one parser
    assert enqueue.parse_duration("1h30m", "--x") == 5400
    assert enqueue.parse_duration("1500ms", "--x") == 2  # rounded up, never to 0
    assert enqueue.parse_duration("7d", "--x") == 7 * 86400
    with pytest.raises(UsageError):
        enqueue.parse_duration("1.5x", "--x")
