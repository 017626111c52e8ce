"""The operator's settings: one object, parsed once from flags and the environment.

Every field has a flag (``--metrics-port``) and an environment variable
(``TASKQUEUE_METRICS_PORT``); a flag wins over the environment, the environment over the
default. A few variables keep the names the chart and users set before this module
existed (``WATCH_NAMESPACES``, ``LIVENESS_ENDPOINT``, ``METRICS_PORT``, ``POD_NAME``); both
spellings are read, the ``TASKQUEUE_`` one first. `main` parses them once and passes the
object on explicitly (to kopf's startup handler through kopf's ``memo``); nothing is read
from or written back to ``os.environ`` afterwards.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import pydantic
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from taskqueue_operator.controller import LoopSettings

ENV_PREFIX = "TASKQUEUE_"
EXIT_USAGE = 2


def _env(name: str, *legacy: str) -> AliasChoices:
    """The variables read for a field: ``TASKQUEUE_<NAME>``, then older spellings."""
    return AliasChoices(f"{ENV_PREFIX}{name.upper()}", *legacy)


def _seconds(description: str, default: float) -> Any:
    return Field(default, gt=0, description=description)


class OperatorSettings(BaseSettings):
    """Everything the operator process is told at start; see each field's description
    (also the ``--help`` of ``taskqueue-operator``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        validate_default=True,
    )

    # --- what to watch, what to serve ---------------------------------------------------
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("namespaces", "WATCH_NAMESPACES"),
        description="Watch only these namespaces (flag repeatable, variable comma-separated); "
        "empty: all namespaces.",
    )
    liveness_endpoint: str = Field(
        "http://0.0.0.0:8080/healthz",
        validation_alias=_env("liveness_endpoint", "LIVENESS_ENDPOINT"),
        description="kopf's liveness endpoint URL, for the pod's liveness probe; empty: off.",
    )
    metrics_port: int = Field(
        9090,
        ge=0,
        le=65535,
        validation_alias=_env("metrics_port", "METRICS_PORT"),
        description="Port of the Prometheus /metrics endpoint (all addresses); 0: off.",
    )
    dashboard_port: int = Field(
        8081,
        ge=0,
        le=65535,
        description="Port of the read-only web dashboard (on --dashboard-host); 0: off.",
    )
    dashboard_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the dashboard binds to. It has no authentication: the default "
        "serves only `kubectl port-forward` (and processes of the pod); 0.0.0.0 exposes it "
        "to whoever reaches the pod.",
    )
    verbose: bool = Field(False, description="kopf's verbose logging (one line per event).")

    # --- the per-TaskQueue loop (controller.LoopSettings) ---------------------------------
    poll_interval: float = _seconds(
        "Seconds between observations of a TaskQueue without autoscaling "
        "(spec.scaling has its own interval).",
        LoopSettings.fixed_poll_interval,
    )
    counter_patch_interval: float = _seconds(
        "A status change of counters alone (pending, running...) is written at most this "
        "often, in seconds, per TaskQueue.",
        LoopSettings.counter_patch_interval,
    )
    counter_writes_per_second: float = _seconds(
        "Counter-only status writes of all TaskQueues together share this budget per second, "
        "so a thousand busy queues are not a thousand API writes per second.",
        LoopSettings.counter_writes_per_second,
    )
    secret_refresh_interval: float = _seconds(
        "Seconds between reads of a Redis URL Secret (and at once after a Redis error).",
        LoopSettings.secret_refresh_interval,
    )
    redis_timeout: float = _seconds(
        "Seconds one observation of Redis may take before Redis counts as unreachable.",
        LoopSettings.redis_timeout,
    )

    # --- leader election (several replicas) -----------------------------------------------
    leader_election_namespace: str = Field(
        "",
        description="Elect a leader on a Lease in this namespace: only its holder runs the "
        "TaskQueue loops, the others stand by with warm caches. Empty: no election (run one "
        "replica only).",
    )
    leader_election_name: str = Field(
        "taskqueue-operator", min_length=1, description="Name of the Lease."
    )
    leader_election_identity: str = Field(
        "",
        validation_alias=_env("leader_election_identity", "POD_NAME"),
        description="This replica's holderIdentity in the Lease; default: the pod name "
        "(POD_NAME), else <hostname>-<pid>.",
    )
    leader_election_lease_duration: float = _seconds(
        "Seconds a Lease stays valid after its last renewal: how long standbys wait for a "
        "leader that died without releasing it.",
        15.0,
    )
    leader_election_renew_deadline: float = _seconds(
        "Seconds the leader keeps acting while its renewals fail; then it stops its loops "
        "(before its Lease can expire and a standby take over).",
        10.0,
    )
    leader_election_retry_period: float = _seconds(
        "Seconds between attempts to acquire or renew the Lease: a standby takes a released "
        "Lease within this.",
        2.0,
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        parts = value.split(",") if isinstance(value, str) else value
        if isinstance(parts, list):  # a repeated flag may also carry "a,b"
            return [p.strip() for part in parts for p in str(part).split(",") if p.strip()]
        return value

    @model_validator(mode="after")
    def _election_timings(self) -> OperatorSettings:
        if not (
            self.leader_election_retry_period
            < self.leader_election_renew_deadline
            < self.leader_election_lease_duration
        ):
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration, got "
                f"{self.leader_election_retry_period:g} / "
                f"{self.leader_election_renew_deadline:g} / "
                f"{self.leader_election_lease_duration:g} s"
            )
        return self

    @property
    def identity(self) -> str:
        return self.leader_election_identity or f"{socket.gethostname()}-{os.getpid()}"

    def loop_settings(self) -> LoopSettings:
        return LoopSettings(
            fixed_poll_interval=self.poll_interval,
            counter_patch_interval=self.counter_patch_interval,
            counter_writes_per_second=self.counter_writes_per_second,
            secret_refresh_interval=self.secret_refresh_interval,
            redis_timeout=self.redis_timeout,
        )


# Flags that keep their historical spelling or have a short form; others are
# --<field-with-dashes>.
FLAGS: dict[str, tuple[str, ...]] = {
    "namespaces": ("--namespace", "-n"),
    "liveness_endpoint": ("--liveness",),
    "verbose": ("--verbose", "-v"),
}


def env_names(field: str) -> list[str]:
    """The variables read for `field`, first match wins."""
    alias = OperatorSettings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"{ENV_PREFIX}{field.upper()}"]


def flag_names(field: str) -> tuple[str, ...]:
    return FLAGS.get(field, (f"--{field.replace('_', '-')}",))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"taskqueue-operator: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """One flag per field, its help the field's description. Values stay strings here:
    pydantic validates flags and variables alike (one message format for both)."""
    parser = _Parser(
        prog="taskqueue-operator",
        description="Reconcile TaskQueue resources into RQ worker Deployments and CronJobs. "
        "Every flag has an environment variable (shown in brackets); the flag wins.",
    )
    for name, field in OperatorSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description} [{', '.join(env_names(name))}]"
        if field.annotation is bool:
            parser.add_argument(
                *flag_names(name), dest=name, action="store_const", const="true", help=help_text
            )
            continue
        if name == "namespaces":
            parser.add_argument(
                *flag_names(name), dest=name, action="append", metavar="NAMESPACE", help=help_text
            )
            continue
        shown = f" (default: {default!r})" if default not in ("", None) else ""
        parser.add_argument(*flag_names(name), dest=name, metavar="VALUE", help=help_text + shown)
    return parser


class SettingsError(ValueError):
    """Bad flags or variables; the message names each offending flag/variable."""


def parse(argv: Sequence[str] | None = None) -> OperatorSettings:
    """Flags over environment over defaults. Raises `SettingsError` with one line per
    bad value (naming the flag and its variable) and `SystemExit(2)` on unknown flags."""
    given = vars(build_parser().parse_args(argv))
    flags = {name: value for name, value in given.items() if value is not None}
    try:
        return OperatorSettings(**flags)
    except pydantic.ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _describe(error: pydantic.ValidationError) -> str:
    lines = []
    for problem in error.errors(include_url=False):
        where = str(problem["loc"][0]) if problem["loc"] else ""
        field = next(
            (
                name
                for name in OperatorSettings.model_fields
                if where == name or where.upper() in env_names(name)
            ),
            None,
        )
        if field is None:
            lines.append(problem["msg"].removeprefix("Value error, "))
            continue
        source = f"{flag_names(field)[0]} / {' / '.join(env_names(field))}"
        value = problem.get("input")
        lines.append(f"{source}: {problem['msg']} (got {value!r})")
    return "; ".join(lines)


def parse_or_exit(argv: Sequence[str] | None = None) -> OperatorSettings:
    try:
        return parse(argv)
    except SettingsError as error:
        print(f"taskqueue-operator: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
