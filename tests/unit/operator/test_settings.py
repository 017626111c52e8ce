"""OperatorSettings: flags over environment over defaults, clear errors (issue 13 part 5)."""

from __future__ import annotations

import pytest
from taskqueue_operator import settings
from taskqueue_operator.controller import LoopSettings
from taskqueue_operator.settings import OperatorSettings, SettingsError, parse

VARIABLES = [
    "WATCH_NAMESPACES",
    "LIVENESS_ENDPOINT",
    "METRICS_PORT",
    "POD_NAME",
    "PEERING_NAME",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(settings.ENV_PREFIX) or name in VARIABLES:
            monkeypatch.delenv(name)


def test_defaults() -> None:
    options = parse([])
    assert options.namespaces == []
    assert options.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert options.metrics_port == 9090
    assert options.dashboard_port == 8081  # what the README's port-forward opens
    assert options.dashboard_host == "127.0.0.1"  # no auth: not on every address
    assert options.leader_election_namespace == ""
    assert options.loop_settings() == LoopSettings()  # the controller's own defaults


def test_every_field_has_a_description_flag_and_variable() -> None:
    parser = settings.build_parser()
    flags = {flag for action in parser._actions for flag in action.option_strings}
    for name, field in OperatorSettings.model_fields.items():
        assert field.description, name
        assert settings.flag_names(name)[0] in flags, name
        assert settings.env_names(name)[0] == f"TASKQUEUE_{name.upper()}", name


def test_the_environment_names_the_chart_and_users_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCH_NAMESPACES", "a, b,,c")
    monkeypatch.setenv("LIVENESS_ENDPOINT", "")
    monkeypatch.setenv("METRICS_PORT", "9191")
    monkeypatch.setenv("TASKQUEUE_DASHBOARD_PORT", "8082")
    monkeypatch.setenv("TASKQUEUE_LEADER_ELECTION_NAMESPACE", "tq-system")
    monkeypatch.setenv("POD_NAME", "tq-operator-abc")
    options = parse([])
    assert options.namespaces == ["a", "b", "c"]
    assert options.liveness_endpoint == ""
    assert options.metrics_port == 9191
    assert options.dashboard_port == 8082
    assert options.leader_election_namespace == "tq-system"
    assert options.identity == "tq-operator-abc"


def test_the_prefixed_name_wins_over_the_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PORT", "9191")
    monkeypatch.setenv("TASKQUEUE_METRICS_PORT", "9292")
    assert parse([]).metrics_port == 9292


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCH_NAMESPACES", "from-env")
    monkeypatch.setenv("METRICS_PORT", "9191")
    monkeypatch.setenv("TASKQUEUE_POLL_INTERVAL", "5")
    monkeypatch.setenv("TASKQUEUE_VERBOSE", "false")
    options = parse(
        ["-n", "x", "--namespace", "y,z", "--metrics-port", "0", "--poll-interval", "0.5", "-v"]
    )
    assert options.namespaces == ["x", "y", "z"]
    assert options.metrics_port == 0
    assert options.poll_interval == 0.5
    assert options.verbose is True


def test_loop_settings_are_built_from_the_fields() -> None:
    options = parse(
        [
            "--poll-interval=0.5",
            "--counter-patch-interval=3",
            "--counter-writes-per-second=10",
            "--secret-refresh-interval=30",
            "--redis-timeout=1.5",
        ]
    )
    assert options.loop_settings() == LoopSettings(
        fixed_poll_interval=0.5,
        counter_patch_interval=3,
        counter_writes_per_second=10,
        secret_refresh_interval=30,
        redis_timeout=1.5,
    )


def test_identity_defaults_to_host_and_pid() -> None:
    import os
    import socket

    assert parse([]).identity == f"{socket.gethostname()}-{os.getpid()}"
    assert parse(["--leader-election-identity", "me"]).identity == "me"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--metrics-port", "lots"], {}, "--metrics-port / TASKQUEUE_METRICS_PORT / METRICS_PORT"),
        (["--metrics-port", "70000"], {}, "less than or equal to 65535"),
        ([], {"TASKQUEUE_DASHBOARD_PORT": "x"}, "--dashboard-port / TASKQUEUE_DASHBOARD_PORT"),
        (["--poll-interval", "0"], {}, "greater than 0"),
        (["--redis-timeout", "-1"], {}, "--redis-timeout"),
        ([], {"TASKQUEUE_VERBOSE": "maybe"}, "--verbose / TASKQUEUE_VERBOSE"),
        (
            ["--leader-election-retry-period", "12"],
            {},
            "retry period < renew deadline < lease duration, got 12 / 10 / 15 s",
        ),
    ],
)
def test_bad_values_name_the_flag_and_variable(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        parse(argv)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_value_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        settings.parse_or_exit(["--metrics-port", "lots"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("taskqueue-operator: --metrics-port") and err.count("\n") == 1


def test_peering_is_gone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(["--peering", "x"])
    assert caught.value.code == 2
    assert "--peering" in capsys.readouterr().err


def test_settings_are_frozen() -> None:
    options = parse([])
    with pytest.raises(Exception, match="frozen"):
        options.metrics_port = 1  # type: ignore[misc]
