"""jobTimeout is the default and the upper bound of every job's timeout (issue 13 part 3)."""

from __future__ import annotations

import logging

import pytest
import redis
from rq.job import Job
from taskqueue_worker import config, worker
from taskqueue_worker.runtime import RQ_DEFAULT_TIMEOUT, bound_job_timeout


def job(timeout: int | None) -> Job:
    made = Job(id="j1", connection=redis.Redis())  # never connects: nothing is sent
    made.timeout = timeout
    return made


@pytest.mark.parametrize(
    ("asked", "limit", "expected", "logged"),
    [
        (None, 60, 60, False),  # none of its own
        (RQ_DEFAULT_TIMEOUT, 60, 60, False),  # rq's default written by Queue.enqueue
        (RQ_DEFAULT_TIMEOUT, 360, 360, False),  # ... raised to a longer jobTimeout too
        (10_000, 60, 60, True),  # longer: capped
        (-1, 60, 60, True),  # infinite: capped
        (30, 60, 30, False),  # shorter: kept
        (60, 60, 60, False),
        (10_000, None, 10_000, False),  # no jobTimeout given: rq's rules
        (None, None, None, False),
    ],
)
def test_bound_job_timeout(
    asked: int | None,
    limit: int | None,
    expected: int | None,
    logged: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    made = job(asked)
    with caplog.at_level(logging.INFO, logger="taskqueue.worker"):
        bound_job_timeout(made, limit)
    assert made.timeout == expected
    capped = [r for r in caplog.records if "caps it" in r.getMessage()]
    assert len(capped) == (1 if logged else 0)
    if logged:
        assert capped[0].job_id == "j1" and capped[0].job_timeout == limit  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, {}, None),
        (None, {"TASKQUEUE_JOB_TIMEOUT": "360"}, 360),
        (None, {"TASKQUEUE_JOB_TIMEOUT": "2.5"}, 3),  # rounded up, as the grace period
        (None, {"TASKQUEUE_JOB_TIMEOUT": "90s"}, 90),
        (None, {"TASKQUEUE_JOB_TIMEOUT": " "}, None),
        (10.0, {"TASKQUEUE_JOB_TIMEOUT": "360"}, 10),  # the flag wins
    ],
)
def test_job_timeout_setting(flag: float | None, env: dict[str, str], expected: int | None) -> None:
    assert config.job_timeout(flag, env) == expected


@pytest.mark.parametrize("raw", ["soon", "0", "-5", "inf", "nan"])
def test_bad_job_timeout_is_one_line(raw: str) -> None:
    with pytest.raises(config.ConfigError, match="TASKQUEUE_JOB_TIMEOUT"):
        config.job_timeout(None, {"TASKQUEUE_JOB_TIMEOUT": raw})


def test_bad_job_timeout_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"REDIS_URL": "redis://localhost:6379/0", "TASKQUEUE_JOB_TIMEOUT": "later"}
    assert worker.main(["default"], env=env) == worker.EXIT_USAGE
    assert "TASKQUEUE_JOB_TIMEOUT must be a number of seconds" in capsys.readouterr().err


def test_job_timeout_flag_is_parsed() -> None:
    args = worker.build_parser().parse_args(["--job-timeout", "42", "q"])
    assert args.job_timeout == 42.0
