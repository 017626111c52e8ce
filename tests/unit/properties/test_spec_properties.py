"""Property tests over the spec: whatever the models accept, the pure core handles.

Whatever validates builds a Deployment, CronJobs and a status without raising, with the
invariants the pods rely on; whatever does not validate fails with a ValidationError
(a clear message), never another exception.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskqueue_contract.durations import parse_duration
from taskqueue_operator.api.models import TaskQueue
from taskqueue_operator.observation import DeploymentObservation, Observation
from taskqueue_operator.reconcile.schedules import desired_cronjobs
from taskqueue_operator.reconcile.status import ScaleInfo, build_status, status_dict
from taskqueue_operator.reconcile.workers import desired_deployment

names = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=20)
queue_names = st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=30)
durations = st.one_of(
    st.integers(0, 100000).map(lambda n: f"{n}s"),
    st.integers(0, 600).map(lambda n: f"{n}m"),
    st.text(max_size=6),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
crons = st.one_of(
    st.sampled_from(
        [
            "* * * * *",
            "0 9 * * *",
            "*/5 0-6 * * MON-FRI",
            "@daily",
            "@every 90s",
            "61 * * * *",
            "30-10 * * * *",
            "0 9 * * 7",
        ]
    ),
    st.text(max_size=20),
)
# Env names as Kubernetes 1.34 takes them (printable ASCII but '=') and a few it refuses.
env_names = st.text(st.characters(min_codepoint=0x1F, max_codepoint=0x7F), min_size=0, max_size=8)
quantities = st.one_of(
    st.integers(-2, 4096),
    st.sampled_from(["500m", "1", "1.5", "2Gi", "1e3", "lots", "-1", "1GB", ""]),
)
time_zones = st.sampled_from(["UTC", "Europe/Berlin", "Mars/Olympus", "Local", ""])


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    queues = draw(st.lists(queue_names, min_size=0, max_size=4))
    spec: dict[str, Any] = {
        "redis": draw(
            st.one_of(
                st.just({"url": "redis://redis:6379/0"}),
                st.just({"urlFrom": {"secretKeyRef": {"name": "r", "key": "url"}}}),
                st.fixed_dictionaries({"url": st.text(max_size=30)}),
            )
        ),
        "queues": queues,
        "worker": draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "jobTimeout": durations,
                    "workerClass": st.sampled_from(["fork", "simple", "thread"]),
                    "env": st.lists(
                        st.fixed_dictionaries({"name": env_names, "value": st.text(max_size=5)}),
                        max_size=2,
                    ),
                    "resources": st.fixed_dictionaries(
                        {},
                        optional={
                            "limits": st.dictionaries(
                                st.sampled_from(["cpu", "memory", "example.com/gpu", "gpu"]),
                                quantities,
                                max_size=3,
                            ),
                            "requests": st.dictionaries(
                                st.sampled_from(["cpu", "memory", "example.com/gpu"]),
                                quantities,
                                max_size=3,
                            ),
                        },
                    ),
                },
            )
        ),
    }
    if draw(st.booleans()):
        spec["scaling"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "minReplicas": st.integers(-2, 20),
                    "maxReplicas": st.integers(-1, 20),
                    "targetBacklogPerWorker": st.integers(-1, 100),
                    "scaleDownDelay": durations,
                },
            )
        )
    else:
        spec["replicas"] = draw(st.integers(-1, 50))
    spec["schedules"] = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": names,
                    "schedule": crons,
                    "function": st.sampled_from(["m.f", "a.b.c", "bad"]),
                },
                optional={
                    "queue": st.sampled_from([*queues, "other"]) if queues else st.just("other"),
                    "args": st.lists(json_values, max_size=3),
                    "timeZone": time_zones,
                    "kwargs": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
                },
            ),
            max_size=3,
        )
    )
    return spec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), names)
def test_accepted_specs_build_valid_children(spec: dict[str, Any], name: str) -> None:
    body = {
        "metadata": {"name": name, "namespace": "ns", "uid": "u", "generation": 1},
        "spec": spec,
    }
    try:
        taskqueue = TaskQueue.model_validate(body)
    except pydantic.ValidationError as error:
        assert error.errors()  # refused with a reason, nothing else
        return
    deployment = desired_deployment(taskqueue, 1)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] > parse_duration(taskqueue.spec.worker.job_timeout)
    assert container["args"][-len(taskqueue.spec.queues) :] == list(taskqueue.spec.queues)
    cronjobs = desired_cronjobs(taskqueue)
    assert len(cronjobs) == len(taskqueue.spec.schedules)
    for cronjob_name in cronjobs:
        assert len(cronjob_name) <= 52
    observation = Observation(0.0, None, "down", DeploymentObservation())
    status = status_dict(build_status(taskqueue, observation, ScaleInfo(0), None))
    json.dumps([deployment, cronjobs, status])  # everything is serialisable for the API
