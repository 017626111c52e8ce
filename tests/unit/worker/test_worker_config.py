"""The worker's environment contract, parsed without rq."""

from __future__ import annotations

from pathlib import Path

import pytest
from taskqueue_worker import config


def test_redis_url_is_required_with_a_one_line_reason() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.redis_url({})
    assert "REDIS_URL" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(config.ConfigError):
        config.redis_url({"REDIS_URL": "   "})


@pytest.mark.parametrize("url", ["redis://r:6379/0", "rediss://u:p@r:6380/1", "unix:///tmp/r.sock"])
def test_redis_url_accepts_redis_schemes(url: str) -> None:
    assert config.redis_url({"REDIS_URL": url}) == url


def test_redis_url_refuses_other_schemes() -> None:
    with pytest.raises(config.ConfigError, match="must start with"):
        config.redis_url({"REDIS_URL": "http://redis:6379"})


@pytest.mark.parametrize("prefix", ["rq", "tq:team-a", "{rq}", "a.b_c-d"])
def test_key_prefix_accepts_what_rq_accepts(prefix: str) -> None:
    assert config.key_prefix({"RQ_KEY_PREFIX": prefix}) == prefix


@pytest.mark.parametrize("prefix", ["", "a b", "rq/x", "ключ", "a%s"])
def test_key_prefix_refuses_what_rq_refuses(prefix: str) -> None:
    with pytest.raises(config.ConfigError, match="RQ_KEY_PREFIX"):
        config.key_prefix({"RQ_KEY_PREFIX": prefix})


def test_key_prefix_defaults_to_rq() -> None:
    assert config.key_prefix({}) == "rq"


def test_worker_class_flag_wins_over_env_and_default_is_fork() -> None:
    assert config.worker_class(None, {}) is config.WorkerClass.FORK
    assert config.DEFAULT_WORKER_CLASS is config.WorkerClass.FORK
    env = {"TASKQUEUE_WORKER_CLASS": "simple"}
    assert config.worker_class(None, env) is config.WorkerClass.SIMPLE
    assert config.worker_class("fork", env) is config.WorkerClass.FORK
    assert (
        config.worker_class(None, {"TASKQUEUE_WORKER_CLASS": " Simple "})
        is config.WorkerClass.SIMPLE
    )


def test_unknown_worker_class_is_a_config_error() -> None:
    with pytest.raises(config.ConfigError, match="fork, simple"):
        config.worker_class(None, {"TASKQUEUE_WORKER_CLASS": "threads"})


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [(None, {}, 1), (None, {"TASKQUEUE_PROCESSES": "4"}, 4), (8, {"TASKQUEUE_PROCESSES": "4"}, 8)],
)
def test_processes_flag_wins_over_env_default_one(
    flag: int | None, env: dict[str, str], expected: int
) -> None:
    assert config.processes(flag, env) == expected


@pytest.mark.parametrize("raw", ["0", "65", "two", "-1"])
def test_processes_outside_1_to_64_is_a_config_error(raw: str) -> None:
    with pytest.raises(config.ConfigError, match="TASKQUEUE_PROCESSES"):
        config.processes(None, {"TASKQUEUE_PROCESSES": raw})


def test_pod_name_from_env_else_hostname() -> None:
    assert config.pod_name({"POD_NAME": "pod-a"}) == "pod-a"
    assert config.pod_name({}) != ""


def test_health_file_explicit_or_in_tmpdir_per_pod(tmp_path: Path) -> None:
    explicit = tmp_path / "h"
    assert config.health_file({"TASKQUEUE_HEALTH_FILE": str(explicit)}) == explicit
    env = {"TMPDIR": str(tmp_path), "POD_NAME": "w-1"}
    assert config.health_file(env) == tmp_path / "taskqueue-worker.w-1.health"
    assert config.health_file({"TMPDIR": str(tmp_path)}) == tmp_path / "taskqueue-worker.health"
    odd = config.health_file({"TMPDIR": str(tmp_path), "POD_NAME": "../x y"})
    assert odd.parent == tmp_path


def test_positive_float_and_log_level() -> None:
    assert config.positive_float({}, "X", 5.0) == 5.0
    assert config.positive_float({"X": "0.5"}, "X", 5.0) == 0.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(config.ConfigError, match="X"):
            config.positive_float({"X": bad}, "X", 5.0)
    assert config.log_level({"TASKQUEUE_LOG_LEVEL": "debug"}) == "DEBUG"
    with pytest.raises(config.ConfigError):
        config.log_level({"TASKQUEUE_LOG_LEVEL": "loud"})


def test_preload_modules() -> None:
    assert config.preload_modules({}) == []
    assert config.preload_modules({"TASKQUEUE_PRELOAD": "pandas, tasks.ingest,"}) == [
        "pandas",
        "tasks.ingest",
    ]
    with pytest.raises(config.ConfigError):
        config.preload_modules({"TASKQUEUE_PRELOAD": "os; rm -rf"})
