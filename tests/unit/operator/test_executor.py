"""The executor runs each effect on its own: a refusal is an outcome, never a stopped tick."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from kubernetes.client.exceptions import ApiException
from taskqueue_operator.adapters.executor import Executor, effect_error
from taskqueue_operator.reconcile.effects import (
    AnnotatePod,
    ApplyChild,
    PatchStatus,
    PostEvent,
    Scale,
)

FIELD = "spec.template.spec.containers[0].resources.limits[cpu]"


def refusal(status: int = 422) -> ApiException:
    error = ApiException(status=status, reason="Unprocessable Entity")
    error.body = json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "message": f'Deployment.apps "x" is invalid: {FIELD}: Invalid value: "lots"',
            "reason": "Invalid",
            "details": {"causes": [{"reason": "FieldValueInvalid", "field": FIELD}]},
            "code": status,
        }
    )
    return error


class FakeKube:
    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.calls: list[str] = []

    async def apply(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        self.calls.append(f"apply {body['metadata']['name']}")
        if body["metadata"]["name"] in self.refuse:
            raise refusal()
        return body

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.calls.append(f"annotate {name}")
        if name in self.refuse:
            raise ApiException(status=500, reason="Internal Server Error")

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.calls.append(f"scale {replicas}")

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.calls.append("status")


def executor(kube: FakeKube, events: list[tuple[str, str]]) -> Executor:
    remembered: list[dict[str, Any]] = []
    return Executor(
        kube,  # type: ignore[arg-type]
        "ns",
        "tq",
        lambda: {"metadata": {"name": "tq", "namespace": "ns"}},
        lambda _body, kind, reason, _message: events.append((kind, reason)),
        logging.LoggerAdapter(logging.getLogger("test")),
        remember=remembered.append,
        forget_cronjob=lambda _name: None,
        set_replicas=lambda _replicas: None,
    )


def child(name: str) -> dict[str, Any]:
    return {"kind": "CronJob", "metadata": {"name": name}, "spec": {}}


def test_a_refused_child_does_not_stop_the_others_nor_the_status() -> None:
    kube = FakeKube(refuse={"bad"})
    events: list[tuple[str, str]] = []
    effects = [
        ApplyChild(child("bad"), live=False),
        ApplyChild(child("good"), live=False),
        PostEvent("Normal", "Something", "happened"),
        PatchStatus({"pending": 1}),
    ]
    outcomes = asyncio.run(executor(kube, events).run(effects, 0.0))
    assert kube.calls == ["apply bad", "apply good", "status"]
    assert [o.ok for o in outcomes] == [False, True, True, True]
    error = outcomes[0].error
    assert error is not None
    assert (error.code, error.reason, error.fields, error.terminal) == (
        422,
        "Invalid",
        (FIELD,),
        True,
    )
    assert error.message.startswith('Deployment.apps "x" is invalid: spec.template')
    assert events == [("Normal", "Something")]


def test_a_scale_down_waits_for_its_deletion_costs() -> None:
    kube = FakeKube(refuse={"pod-busy"})
    effects = [
        AnnotatePod("pod-busy", (("cost", "10000"),)),
        AnnotatePod("pod-idle", (("cost", "0"),)),
        Scale("tq-workers", 1, 2, "less load", after=frozenset({"annotate/pod-busy"})),
        PatchStatus({}),
    ]
    outcomes = asyncio.run(executor(kube, []).run(effects, 0.0))
    assert kube.calls == ["annotate pod-busy", "annotate pod-idle", "status"]
    assert [(o.ok, o.skipped) for o in outcomes] == [
        (False, False),
        (True, False),
        (False, True),
        (True, False),
    ]


def test_errors_keep_the_servers_message_not_its_headers() -> None:
    error = ApiException(status=503, reason="Service Unavailable")
    error.body = "upstream connect error"  # not JSON: a proxy's text
    converted = effect_error(error)
    assert converted.message == "503 Service Unavailable" and not converted.terminal
    assert effect_error(ConnectionError("redis://:secret@h:6379 refused")).message == (
        "ConnectionError: redis://:***@h:6379 refused"
    )
