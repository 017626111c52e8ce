"""Every field of the desired worker Deployment."""

from __future__ import annotations

from factories import make_taskqueue
from taskqueue_operator.api.models import TaskQueue
from taskqueue_operator.reconcile.schedules import desired_cronjobs
from taskqueue_operator.reconcile.workers import desired_deployment, termination_grace_seconds


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_metadata_owner_and_selector(taskqueue: TaskQueue) -> None:
    deployment = desired_deployment(taskqueue, replicas=2)
    meta = deployment["metadata"]
    assert meta["name"] == "backtests-workers"
    assert meta["namespace"] == "quant"
    owner = meta["ownerReferences"][0]
    assert owner["kind"] == "TaskQueue" and owner["uid"] == "uid-1" and owner["controller"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    selector = spec["selector"]["matchLabels"]
    assert selector == {"taskqueue.dev/taskqueue": "backtests", "taskqueue.dev/component": "worker"}
    template_labels = spec["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert template_labels["app.kubernetes.io/managed-by"] == "taskqueue-operator"


def test_worker_command_lists_queues_in_priority_order(taskqueue: TaskQueue) -> None:
    container = desired_deployment(taskqueue, 1)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["taskqueue-worker"]
    assert container["args"] == ["--worker-class", "fork", "high", "default"]
    assert container["image"].endswith("taskqueue-worker:0.1.0")


def test_redis_url_comes_from_the_secret_never_from_args(taskqueue: TaskQueue) -> None:
    container = desired_deployment(taskqueue, 1)["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "redis", "key": "url"}
    assert env["RQ_KEY_PREFIX"]["value"] == "rq"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert not any("redis" in arg for arg in container["args"])


def test_plain_url_and_key_prefix() -> None:
    tq = make_taskqueue(redis={"url": "redis://r:6379/1", "keyPrefix": "myapp"})
    env = env_of(desired_deployment(tq, 1)["spec"]["template"]["spec"]["containers"][0])
    assert env["REDIS_URL"] == {"name": "REDIS_URL", "value": "redis://r:6379/1"}
    assert env["RQ_KEY_PREFIX"]["value"] == "myapp"


def test_tls_material_comes_from_secrets_as_env_in_workers_and_schedules() -> None:
    tq = make_taskqueue(
        redis={
            "urlFrom": {"secretKeyRef": {"name": "redis", "key": "url"}},
            "tls": {
                "caFrom": {"secretKeyRef": {"name": "redis-ca", "key": "ca.crt"}},
                "clientCertificateSecretRef": {"name": "redis-client"},
            },
        },
        schedules=[{"name": "nightly", "schedule": "0 3 * * *", "function": "tasks.run"}],
    )
    worker = desired_deployment(tq, 1)["spec"]["template"]["spec"]["containers"][0]
    (cronjob,) = desired_cronjobs(tq).values()
    schedule = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    for container in (worker, schedule):
        env = env_of(container)
        refs = {
            name: env[name]["valueFrom"]["secretKeyRef"]
            for name in ("REDIS_TLS_CA_CERT", "REDIS_TLS_CLIENT_CERT", "REDIS_TLS_CLIENT_KEY")
        }
        assert refs == {
            "REDIS_TLS_CA_CERT": {"name": "redis-ca", "key": "ca.crt"},
            "REDIS_TLS_CLIENT_CERT": {"name": "redis-client", "key": "tls.crt"},
            "REDIS_TLS_CLIENT_KEY": {"name": "redis-client", "key": "tls.key"},
        }


def test_no_tls_no_tls_env(taskqueue: TaskQueue) -> None:
    container = desired_deployment(taskqueue, 1)["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in container["env"] if e["name"].startswith("REDIS_TLS_")]


def test_grace_period_exceeds_job_timeout() -> None:
    tq = make_taskqueue(worker={"jobTimeout": "10m"})
    pod = desired_deployment(tq, 1)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 630 > 600
    assert termination_grace_seconds(0.5) == 31


def test_restricted_security_context(taskqueue: TaskQueue) -> None:
    pod = desired_deployment(taskqueue, 1)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    ctx = pod["containers"][0]["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["runAsNonRoot"] is True
    # A read-only root needs a writable /tmp.
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["automountServiceAccountToken"] is False
    # Not PID 1: a SIGTERM that comes while Python starts must end the worker, not vanish.
    assert pod["shareProcessNamespace"] is True


def test_overrides_and_placement() -> None:
    tq = make_taskqueue(
        worker={
            "image": "registry.example/backtest-worker:1.4",
            "imagePullPolicy": "Always",
            "command": ["python", "-m", "myworker"],
            "args": ["--fast"],
            "env": [{"name": "MODEL", "value": "big"}],
            "envFrom": [{"configMapRef": {"name": "settings"}}],
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}},
            "nodeSelector": {"pool": "batch"},
            "tolerations": [{"key": "batch", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {}},
            "serviceAccountName": "workers",
            "imagePullSecrets": [{"name": "regcred"}],
            "workerClass": "simple",
            "podLabels": {"team": "quant"},
            "podAnnotations": {"prometheus.io/scrape": "false"},
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "results"}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }
    )
    template = desired_deployment(tq, 1)["spec"]["template"]
    pod = template["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/backtest-worker:1.4"
    assert container["imagePullPolicy"] == "Always"
    assert container["command"] == ["python", "-m", "myworker"]
    assert container["args"] == ["--fast"]
    assert container["env"][-1] == {"name": "MODEL", "value": "big"}
    assert env_of(container)["TASKQUEUE_WORKER_CLASS"]["value"] == "simple"
    assert container["envFrom"] == [{"configMapRef": {"name": "settings"}}]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": 2},
    }
    assert pod["nodeSelector"] == {"pool": "batch"}
    assert pod["tolerations"] == [{"key": "batch", "operator": "Exists"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["serviceAccountName"] == "workers"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert template["metadata"]["labels"]["team"] == "quant"
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "false"}
    assert pod["volumes"][1] == {"name": "data", "persistentVolumeClaim": {"claimName": "results"}}
    assert container["volumeMounts"][1] == {"name": "data", "mountPath": "/data"}


def test_rollout_keeps_capacity(taskqueue: TaskQueue) -> None:
    strategy = desired_deployment(taskqueue, 1)["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_probes_need_no_shell_or_port(taskqueue: TaskQueue) -> None:
    container = desired_deployment(taskqueue, 1)["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["exec"]["command"][:2] == ["taskqueue-worker", "--probe"]
    assert container["livenessProbe"]["exec"]["command"][:2] == ["taskqueue-worker", "--probe"]


def test_processes_reach_the_worker_only_when_more_than_one() -> None:
    def env(**worker: object) -> dict[str, dict]:
        tq = make_taskqueue(worker={"image": "w:1", **worker})
        return env_of(
            desired_deployment(tq, replicas=1)["spec"]["template"]["spec"]["containers"][0]
        )

    # One loop: the pod template of before, so an operator upgrade rolls no Deployment.
    assert "TASKQUEUE_PROCESSES" not in env()
    assert "TASKQUEUE_PROCESSES" not in env(processes=1)
    assert env(processes=4)["TASKQUEUE_PROCESSES"] == {"name": "TASKQUEUE_PROCESSES", "value": "4"}
