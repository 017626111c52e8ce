"""Every field of the desired CronJobs."""

from __future__ import annotations

import json

from factories import make_taskqueue
from taskqueue_operator.reconcile.schedules import desired_cronjob, desired_cronjobs


def schedule(**overrides: object) -> dict:
    base = {"name": "daily-ingest", "schedule": "0 9 * * *", "function": "tasks.ingest.run"}
    base.update(overrides)
    return base


def arg_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_cronjob_runs_enqueue_with_function_queue_and_arguments() -> None:
    tq = make_taskqueue(
        schedules=[
            schedule(
                args=[1, "x"],
                kwargs={"symbol": "KRW-BTC", "days": 1},
                queue="default",
                jobTimeout="15m",
                retry={"max": 3, "intervals": [10, 60]},
                resultTtl="1h",
                failureTtl="7h",
                timeZone="Asia/Seoul",
            )
        ]
    )
    cronjob = desired_cronjob(tq, tq.spec.schedules[0])
    assert cronjob["metadata"]["name"] == "backtests-daily-ingest"
    assert cronjob["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 9 * * *"
    assert spec["timeZone"] == "Asia/Seoul"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["command"] == ["taskqueue-enqueue"]
    args = container["args"]
    assert arg_value(args, "--function") == "tasks.ingest.run"
    assert arg_value(args, "--queue") == "default"
    assert json.loads(arg_value(args, "--args")) == [1, "x"]
    assert json.loads(arg_value(args, "--kwargs")) == {"symbol": "KRW-BTC", "days": 1}
    assert arg_value(args, "--job-timeout") == "900"
    assert arg_value(args, "--retry-max") == "3"
    assert arg_value(args, "--retry-intervals") == "10,60"
    assert arg_value(args, "--result-ttl") == "3600"
    assert arg_value(args, "--failure-ttl") == "25200"


def test_defaults_first_queue_and_worker_timeout() -> None:
    tq = make_taskqueue(schedules=[schedule()])
    args = desired_cronjob(tq, tq.spec.schedules[0])["spec"]["jobTemplate"]["spec"]["template"][
        "spec"
    ]["containers"][0]["args"]
    assert arg_value(args, "--queue") == "high"
    assert arg_value(args, "--job-timeout") == "360"
    assert "--retry-max" not in args


def test_idempotency_key_is_namespace_and_job_name() -> None:
    tq = make_taskqueue(schedules=[schedule()])
    container = desired_cronjob(tq, tq.spec.schedules[0])["spec"]["jobTemplate"]["spec"][
        "template"
    ]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['batch.kubernetes.io/job-name']"
    )
    assert env["TASKQUEUE_IDEMPOTENCY_KEY"]["value"] == "$(POD_NAMESPACE)/$(JOB_NAME)"
    names = [e["name"] for e in container["env"]]
    # $(VAR) references only resolve to variables defined earlier in the list.
    assert names.index("POD_NAMESPACE") < names.index("TASKQUEUE_IDEMPOTENCY_KEY")
    assert names.index("JOB_NAME") < names.index("TASKQUEUE_IDEMPOTENCY_KEY")
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "redis"


def test_suspend_and_security() -> None:
    tq = make_taskqueue(schedules=[schedule(suspend=True)])
    cronjob = desired_cronjob(tq, tq.spec.schedules[0])
    assert cronjob["spec"]["suspend"] is True
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["shareProcessNamespace"] is True  # the entrypoint is not PID 1


def test_one_cronjob_per_schedule() -> None:
    tq = make_taskqueue(schedules=[schedule(name="a"), schedule(name="b", schedule="@hourly")])
    assert sorted(desired_cronjobs(tq)) == ["backtests-a", "backtests-b"]
