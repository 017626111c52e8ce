"""The process-kubelet: a Node whose pods' containers run as local processes.

`python -m testbed.kubelet --kubeconfig K --state-dir D` (PYTHONPATH=tests), its own
process; the supervisor (testbed.serve) starts it. What it does, as a kubelet would:
- registers a Ready Node, renews its Lease (kube-node-lease) every 5 s and its status;
- binds pending pods that have no node (there is no scheduler) to itself;
- runs each container whose image is in the image map (testbed.config) as a process:
  `command` replaces the image's entrypoint, `args` its arguments; env from values,
  Secrets, ConfigMaps (`optional` honoured), the downward API and `envFrom` (prefix), with
  $(VAR) expansion; a missing reference is CreateContainerConfigError until it appears.
  The process gets a minimal environment (PATH starting with the venv's bin, LANG, HOME =
  the pod folder), HOSTNAME = pod name and TMPDIR = a per-pod folder (the emptyDir
  stand-in). Per container, in `<state>/pods/<namespace>_<pod>/`: `<container>.log`
  (stdout+stderr), `<container>.pid`, and `<container>.exit` (the last exit as Python
  reports it: 0, 3, -15 for SIGTERM, -9 for SIGKILL);
- reports phase, container states, restart counts, exit codes, podIP/hostIP (127.0.0.1)
  and readiness, and restarts per restartPolicy (Always/OnFailure with a back-off);
- on deletion sends SIGTERM, waits the grace period (deletionGracePeriodSeconds), SIGKILLs
  every process the container started, then deletes the pod (grace 0, uid precondition);
- watches pods (no polling) and survives API server restarts: it re-lists, re-watches,
  and ends the processes of pods deleted while it could not watch.

Approximations (stated, not hidden): readiness and liveness are the process being alive
(exec/HTTP probes are not run); volumes other than the implicit TMPDIR are not mounted;
init containers are not run (such a pod is held Pending: InitContainersNotInTestbed);
securityContext and resources are not enforced (the API server's Pod Security admission
still is); all pods share the host's network (podIP 127.0.0.1, no Services). Pods that
admission gave a ServiceAccount token get a kubeconfig for that account (TokenRequest) in
their folder and KUBECONFIG pointing at it: host processes cannot use in-cluster config
(the fixed /var/run/secrets path), and the token keeps the pod's RBAC real.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime as dt
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from testbed.config import NODE_NAME, image_map
from testbed.controlplane import kubeconfig_text

log = logging.getLogger("process-kubelet")

LEASE_SECONDS = 40
PR_SET_CHILD_SUBREAPER = 36
# What an API server restart looks like to the client: try again, do not give up the pod.
TRANSIENT = (urllib3.exceptions.HTTPError, OSError)
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)|\$\$")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_key(image: str) -> str:
    """`ghcr.io/org/taskqueue-worker:1.0@sha256:..` -> `taskqueue-worker` (see config)."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: unknown references stay as written, $$ escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(replace, text)


class UnresolvableEnv(Exception):
    """A referenced Secret, ConfigMap or key is missing (CreateContainerConfigError)."""


def field_value(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta[path.split(".", 1)[1]])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple = {
        "spec.nodeName": pod["spec"].get("nodeName", NODE_NAME),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    raise UnresolvableEnv(f"unsupported fieldRef {path}")


# Reads a Secret's or ConfigMap's data: (kind, name, optional) -> data; {} when an optional
# object is missing; raises UnresolvableEnv when a required one is.
Reader = Callable[[str, str, bool], dict[str, str]]


def container_argv(spec: dict[str, Any], entrypoint: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' rule: `command` replaces the image's entrypoint, `args` its default args.

    Our images have no default args, so argv = (command or entrypoint) + args, each
    $(VAR)-expanded against the container's environment.
    """
    command = spec.get("command") or entrypoint
    return [expand(part, env) for part in [*command, *(spec.get("args") or [])]]


def resolve_env(
    pod: dict[str, Any], container: dict[str, Any], base: dict[str, str], read: Reader
) -> dict[str, str]:
    """`envFrom` first, then `env` in order (later entries see earlier ones in $(VAR))."""
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            if key in source:
                ref = source[key]
                data = read(kind, ref["name"], bool(ref.get("optional")))
                env.update({prefix + name: value for name, value in data.items()})
    for item in container.get("env") or []:
        name = item["name"]
        source = item.get("valueFrom")
        if not source:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
            continue
        for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            if key in source:
                ref = source[key]
                optional = bool(ref.get("optional"))
                value = read(kind, ref["name"], optional).get(ref["key"])
                if value is not None:
                    env[name] = value
                elif not optional:
                    raise UnresolvableEnv(
                        f"couldn't find key {ref['key']} in {kind} "
                        f"{pod['metadata']['namespace']}/{ref['name']} (env {name})"
                    )
                break
        else:
            raise UnresolvableEnv(f"unsupported valueFrom in env {name}: {sorted(source)}")
    return env


def has_token_volume(spec: dict[str, Any]) -> bool:
    """Did admission add a projected ServiceAccount token (kube-api-access-*) to the pod?"""
    return any(
        "serviceAccountToken" in source
        for volume in spec.get("volumes") or []
        for source in (volume.get("projected") or {}).get("sources") or []
    )


def children_by_parent() -> dict[int, list[int]]:
    """The process tree from /proc: parent pid -> child pids."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name may contain spaces: the ppid follows the last ')'.
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int, tree: dict[int, list[int]]) -> set[int]:
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in tree.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


@dataclass
class Container:
    """One container of a pod and its current process."""

    spec: dict[str, Any]
    argv: list[str] | None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: dt.datetime | None = None
    restarts: int = 0
    last_exit: int | None = None
    finished_at: dt.datetime | None = None
    next_start: float = 0.0
    # Processes that left the container's session (RQ's work horse calls setsid()): a
    # container's death must take them too, as its cgroup would.
    known_pids: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def sigterm_and_wait(containers: list[Container], grace: float) -> None:
    """SIGTERM each running container's process; wait up to `grace` for all to exit."""
    for container in containers:
        if container.running and container.process is not None:
            container.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(c.running for c in containers):
        time.sleep(0.1)


@dataclass
class PodRunner:
    """Runs one pod's containers until the pod is deleted or done."""

    kubelet: ProcessKubelet
    pod: dict[str, Any]
    directory: Path
    containers: list[Container] = field(default_factory=list)
    deleting: threading.Event = field(default_factory=threading.Event)
    changed: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    last_status: dict[str, Any] | None = None
    start_time: dt.datetime = field(default_factory=now)
    next_scan: float = 0.0
    gone: bool = False  # the pod object no longer exists: nothing to delete

    @property
    def key(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"pod:{self.key}", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ setup

    def environment(self, container: dict[str, Any]) -> dict[str, str]:
        # A minimal host environment: a container does not inherit its node's.
        base: dict[str, str] = {
            "PATH": self.kubelet.path,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            # The pod folder, not the user's home: pods must not share ~/.cache & co.
            "HOME": str(self.directory),
            "HOSTNAME": self.pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.kubelet.api_port),
        }
        kubeconfig = self.service_account_kubeconfig()
        if kubeconfig:
            base["KUBECONFIG"] = str(kubeconfig)
        env = resolve_env(self.pod, container, base, self.read)
        env["TMPDIR"] = str(self.directory / "tmp")  # the emptyDir stand-in, always ours
        return env

    def read(self, kind: str, name: str, optional: bool) -> dict[str, str]:
        """A Secret's (decoded) or ConfigMap's data, read fresh at each container start."""
        namespace = self.pod["metadata"]["namespace"]
        try:
            if kind == "Secret":
                secret = self.kubelet.core.read_namespaced_secret(name, namespace)
                # surrogateescape: binary values reach the process as the same bytes
                return {
                    k: base64.b64decode(v).decode(errors="surrogateescape")
                    for k, v in (secret.data or {}).items()
                }
            config_map = self.kubelet.core.read_namespaced_config_map(name, namespace)
            return dict(config_map.data or {})
        except ApiException as error:
            if error.status != 404:
                raise
            if optional:
                return {}
            raise UnresolvableEnv(f'{kind.lower()} "{name}" not found') from error

    def service_account_kubeconfig(self) -> Path | None:
        """A kubeconfig with a TokenRequest token of the pod's ServiceAccount, when the
        API server's ServiceAccount admission gave the pod a token volume (it honours
        automountServiceAccountToken of the pod and of the account). The token lives 24 h
        and is not refreshed. In-cluster config cannot work for a host process (it reads
        /var/run/secrets/...): KUBECONFIG points at this file instead."""
        spec = self.pod["spec"]
        if not has_token_volume(spec):
            return None
        account = spec.get("serviceAccountName") or "default"
        namespace = self.pod["metadata"]["namespace"]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": 3600 * 24,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.pod["metadata"]["name"],
                    "uid": self.pod["metadata"]["uid"],
                },
            },
        }
        reply = self.kubelet.core.create_namespaced_service_account_token(
            account, namespace, request
        )
        path = self.directory / "serviceaccount.kubeconfig"
        path.write_text(
            kubeconfig_text(
                self.kubelet.server, self.kubelet.ca_file, {"token": reply.status.token}
            )
        )
        (self.directory / "namespace").write_text(namespace)
        return path

    def prepare(self) -> None:
        (self.directory / "tmp").mkdir(parents=True, exist_ok=True)
        mapping = self.kubelet.images
        init = [c["name"] for c in self.pod["spec"].get("initContainers") or []]
        for spec in self.pod["spec"]["containers"]:
            entrypoint = mapping.get(image_key(spec.get("image", "")))
            if init:  # held, not run out of order: init containers are not implemented
                container = Container(
                    spec,
                    None,
                    "InitContainersNotInTestbed",
                    f"the process-kubelet does not run init containers ({', '.join(init)})",
                )
            elif entrypoint is None:
                container = Container(
                    spec,
                    None,
                    "ImageNotInTestbed",
                    f"image {spec.get('image')!r} is not one of the test bed's images "
                    f"({', '.join(sorted(mapping))}); set TESTBED_IMAGE_MAP to add it",
                )
            else:
                container = Container(spec, list(entrypoint))
            self.containers.append(container)

    # ------------------------------------------------------------ processes

    def launch(self, container: Container) -> None:
        try:
            env = self.environment(container.spec)
        except (UnresolvableEnv, ApiException) as error:
            container.waiting_reason = "CreateContainerConfigError"
            container.waiting_message = str(getattr(error, "reason", None) or error)
            container.next_start = time.monotonic() + 2
            return
        except TRANSIENT as error:  # the API server is restarting: try again shortly
            log.info("start of %s/%s waits for the API: %s", self.key, container.name, error)
            container.next_start = time.monotonic() + 1
            return
        assert container.argv is not None
        argv = container_argv(container.spec, container.argv, env)
        log_file = open(self.directory / f"{container.name}.log", "ab")  # noqa: SIM115
        try:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=self.directory,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as error:
            log_file.close()
            container.waiting_reason = "RunContainerError"
            container.waiting_message = f"cannot start {argv[0]!r}: {error}"
            container.last_exit = 128
            container.next_start = time.monotonic() + 5
            return
        log_file.close()
        container.process = process
        container.started_at = now()
        container.waiting_reason = container.waiting_message = None
        (self.directory / f"{container.name}.pid").write_text(str(process.pid))

    def reap(self, container: Container) -> bool:
        """True when a process just exited."""
        if container.process is None or container.process.poll() is None:
            return False
        container.last_exit = container.process.returncode
        container.finished_at = now()
        # The last exit survives the pod object: tests tell a graceful exit (0, or -15 for
        # "killed by SIGTERM") from the SIGKILL after the grace period (-9).
        (self.directory / f"{container.name}.exit").write_text(f"{container.last_exit}\n")
        # A container's death takes all its processes (a fork worker's work horse too).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(container.process.pid, signal.SIGKILL)
        self.kill_known(container)
        self.kubelet.kill_orphans(self.pod["metadata"]["name"])
        container.process = None
        return True

    def track(self) -> None:
        """Remember every process each running container started, once a second."""
        if time.monotonic() < self.next_scan:
            return
        self.next_scan = time.monotonic() + 1.0
        tree = children_by_parent()
        for container in self.containers:
            if container.running and container.process is not None:
                container.known_pids |= descendants(container.process.pid, tree)

    @staticmethod
    def kill_known(container: Container) -> None:
        for pid in container.known_pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        container.known_pids.clear()

    def should_restart(self, container: Container) -> bool:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if policy == "Always":
            return True
        return policy == "OnFailure" and (container.last_exit or 0) != 0

    def run(self) -> None:
        try:
            self.prepare()
            while not self.deleting.is_set():
                if self.kubelet.stopping.is_set():
                    return  # the kubelet's stop() ends the processes; pods stay in the API
                for container in self.containers:
                    if container.argv is None:
                        continue
                    if self.reap(container):
                        if self.should_restart(container):
                            container.restarts += 1
                            backoff = min(10.0, 0.5 * 2 ** min(container.restarts, 5))
                            container.next_start = time.monotonic() + backoff
                        else:
                            container.next_start = math.inf  # finished for good
                    if not container.running and time.monotonic() >= container.next_start:
                        self.launch(container)
                self.track()
                self.report()
                self.changed.wait(0.2)
                self.changed.clear()
            self.terminate()
        except Exception:
            log.exception("pod %s failed in the kubelet", self.key)
            self.kill_all()

    # ---------------------------------------------------------------- status

    def phase(self) -> str:
        runnable = [c for c in self.containers if c.argv is not None]
        if len(runnable) < len(self.containers) or not self.containers:
            return "Pending"
        if any(c.running for c in runnable):
            return "Running"
        if all(c.last_exit is not None for c in runnable) and not any(
            self.should_restart(c) for c in runnable
        ):
            return "Succeeded" if all(c.last_exit == 0 for c in runnable) else "Failed"
        if any(c.started_at for c in runnable):
            return "Running"
        return "Pending"

    def container_status(self, container: Container) -> dict[str, Any]:
        state: dict[str, Any]
        if container.running:
            state = {"running": {"startedAt": rfc3339(container.started_at or now())}}
        elif container.last_exit is not None and not (
            container.waiting_reason or self.should_restart(container)
        ):
            state = {"terminated": self._terminated(container)}
        elif container.last_exit is not None:
            state = {
                "waiting": {
                    "reason": container.waiting_reason or "CrashLoopBackOff",
                    "message": container.waiting_message
                    or f"exited with {container.last_exit}; restarting",
                }
            }
        else:
            state = {
                "waiting": {
                    "reason": container.waiting_reason or "ContainerCreating",
                    **({"message": container.waiting_message} if container.waiting_message else {}),
                }
            }
        status: dict[str, Any] = {
            "name": container.name,
            "image": container.spec.get("image", ""),
            "imageID": "",
            "ready": container.running,
            "started": container.running,
            "restartCount": container.restarts,
            "state": state,
        }
        if container.last_exit is not None and container.running:
            status["lastState"] = {"terminated": self._terminated(container)}
        return status

    def _terminated(self, container: Container) -> dict[str, Any]:
        code = container.last_exit or 0
        return {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": rfc3339(container.started_at or now()),
            "finishedAt": rfc3339(container.finished_at or now()),
        }

    def report(self) -> None:
        phase = self.phase()
        statuses = [self.container_status(c) for c in self.containers]
        ready = phase == "Running" and all(s["ready"] for s in statuses)
        started = rfc3339(self.start_time)

        def condition(kind: str, value: bool) -> dict[str, Any]:
            return {
                "type": kind,
                "status": "True" if value else "False",
                "lastTransitionTime": started,
            }

        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": started,
            "conditions": [
                condition("PodScheduled", True),
                condition("Initialized", True),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
            "containerStatuses": statuses,
        }
        if status == self.last_status:
            return
        meta = self.pod["metadata"]
        try:
            self.kubelet.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}
            )
            self.last_status = status
        except ApiException as error:
            if error.status == 404:
                self.gone = True
                self.deleting.set()
            else:
                log.warning("status of %s: %s", self.key, error.reason)
        except TRANSIENT as error:  # the next loop tries again: last_status is unchanged
            log.debug("status of %s: %s", self.key, error)

    # ----------------------------------------------------------- termination

    def terminate(self) -> None:
        """SIGTERM, the grace period, SIGKILL; then the pod object goes away."""
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        sigterm_and_wait(self.containers, float(grace))
        self.kill_all()
        for container in self.containers:
            self.reap(container)
        while not self.gone and not self.kubelet.stopping.is_set():
            try:
                self.kubelet.core.delete_namespaced_pod(
                    meta["name"],
                    meta["namespace"],
                    body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
                )
                break
            except ApiException as error:
                if error.status not in (404, 409):  # 409: a new pod under the same name
                    log.warning("delete %s: %s", self.key, error.reason)
                break
            except TRANSIENT as error:
                log.info("delete %s waits for the API: %s", self.key, error)
                time.sleep(1)
        self.kubelet.forget(self)

    def kill_all(self) -> None:
        self.next_scan = 0.0
        self.track()
        for container in self.containers:
            self.kill_known(container)
        self.kubelet.kill_orphans(self.pod["metadata"]["name"])
        for container in self.containers:
            if container.process is not None and container.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(container.process.pid, signal.SIGKILL)
                container.process.wait()


class ProcessKubelet:
    """The node agent. `run()` blocks; `stop()` ends it and every pod process."""

    def __init__(self, kubeconfig: Path, state_dir: Path, node_name: str = NODE_NAME) -> None:
        self.api = kubernetes.config.new_client_from_config(str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.coordination = kubernetes.client.CoordinationV1Api(self.api)
        self.server = self.api.configuration.host
        self.api_port = int(self.server.rsplit(":", 1)[1])
        self.ca_file = Path(self.api.configuration.ssl_ca_cert)
        self.state_dir = state_dir
        self.node_name = node_name
        self.images = image_map()
        self.path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        self.pods: dict[str, PodRunner] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        # Orphans of dead containers (RQ's work horse calls setsid()) re-parent to us, not
        # to init: we can find them and end them with their container, as a cgroup would.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    # --------------------------------------------------------------- node

    def register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node-role.kubernetes.io/testbed": "",
                },
            },
        }
        try:
            self.core.create_node(node)
        except ApiException as error:
            if error.status != 409:
                raise
        self.update_node_status()

    def update_node_status(self) -> None:
        stamp = rfc3339(now())
        capacity = {"cpu": "16", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "process-kubelet is posting ready status",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                },
                *(
                    {
                        "type": kind,
                        "status": "False",
                        "reason": f"KubeletHasNo{kind}",
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp,
                    }
                    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
                ),
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.34.4-process",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "process://1",
                "osImage": "local processes",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }
        self.core.patch_node_status(self.node_name, {"status": status})

    def renew_lease(self) -> None:
        stamp = now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": stamp,
            },
        }
        try:
            self.coordination.patch_namespaced_lease(
                self.node_name, "kube-node-lease", {"spec": lease["spec"]}
            )
        except ApiException as error:
            if error.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", lease)

    def heartbeat(self) -> None:
        ticks = 0
        while not self.stopping.wait(5 if ticks else 0):
            try:
                self.renew_lease()
                if ticks % 4 == 0:
                    self.update_node_status()
            except ApiException as error:
                if error.status == 404:  # someone deleted our Node: register again
                    self.register()
                else:
                    log.warning("heartbeat: %s", error.reason)
            except Exception as error:  # the API server may be restarting: try again
                log.warning("heartbeat: %s", error)
            ticks += 1

    # --------------------------------------------------------------- pods

    def bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.core.create_namespaced_binding(meta["namespace"], binding, _preload_content=False)
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("bind %s/%s: %s", meta["namespace"], meta["name"], error.reason)

    def pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        node = pod["spec"].get("nodeName")
        if kind == "DELETED":
            with self.lock:
                runner = self.pods.get(key)
            if runner is not None and runner.pod["metadata"]["uid"] == meta["uid"]:
                runner.pod = pod
                runner.gone = True
                runner.deleting.set()
                runner.changed.set()
            return
        if not node:
            if not meta.get("deletionTimestamp"):
                self.bind(pod)
            return
        if node != self.node_name:
            return
        with self.lock:
            runner = self.pods.get(key)
            if runner is not None and runner.pod["metadata"]["uid"] != meta["uid"]:
                runner = None  # a new pod under an old name: the old runner finishes alone
            if runner is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    if meta.get("deletionTimestamp"):
                        self.finish_deleted(pod)
                    return
                directory = self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}"
                directory.mkdir(parents=True, exist_ok=True)
                runner = PodRunner(self, pod, directory)
                if meta.get("deletionTimestamp"):
                    runner.deleting.set()
                self.pods[key] = runner
                runner.start()
        runner.pod = pod
        if meta.get("deletionTimestamp"):
            runner.deleting.set()
        runner.changed.set()

    def finish_deleted(self, pod: dict[str, Any]) -> None:
        """A finished pod being deleted has no processes: remove the object at once."""
        meta = pod["metadata"]
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )

    def kill_orphans(self, pod: str) -> None:
        """SIGKILL (and reap) processes re-parented to us that ran in `pod`."""
        marker = f"HOSTNAME={pod}".encode()
        with self.lock:
            mains = {
                c.process.pid
                for runner in self.pods.values()
                for c in runner.containers
                if c.process is not None
            }
        for pid in children_by_parent().get(os.getpid(), []):
            if pid in mains:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as environ:
                    if marker not in environ.read().split(b"\0"):
                        continue
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (OSError, ChildProcessError):
                continue

    def forget_vanished(self, uids: set[str]) -> None:
        """Pods deleted while the watch was down (API server restart): end their processes."""
        with self.lock:
            vanished = [r for r in self.pods.values() if r.pod["metadata"]["uid"] not in uids]
        for runner in vanished:
            log.info("%s vanished while the watch was down", runner.key)
            runner.gone = True
            runner.deleting.set()
            runner.changed.set()

    def forget(self, runner: PodRunner) -> None:
        with self.lock:
            if self.pods.get(runner.key) is runner:
                del self.pods[runner.key]

    def watch_pods(self) -> None:
        while not self.stopping.is_set():
            try:
                listing = self.core.list_pod_for_all_namespaces(_preload_content=False)
                body = json.loads(listing.data)
                for pod in body["items"]:
                    self.pod_event("ADDED", pod)
                self.forget_vanished({p["metadata"]["uid"] for p in body["items"]})
                version = body["metadata"]["resourceVersion"]
                watcher = kubernetes.watch.Watch()
                for event in watcher.stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=version,
                    timeout_seconds=120,
                    allow_watch_bookmarks=False,
                    _preload_content=False,
                ):
                    if self.stopping.is_set():
                        watcher.stop()
                        break
                    if event["type"] == "ERROR":
                        break  # 410 Gone and friends: list again
                    pod = event["raw_object"]
                    self.pod_event(event["type"], pod)
            except Exception as error:
                if self.stopping.is_set():
                    return
                log.warning("pod watch: %s; relisting", error)
                time.sleep(1)

    def run(self) -> None:
        while True:
            try:
                self.register()
                break
            except TRANSIENT as error:  # started before the API server answers
                log.info("register: %s", error)
                if self.stopping.wait(1):
                    return
        threads = [
            threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True),
            threading.Thread(target=self.watch_pods, name="pods", daemon=True),
        ]
        for thread in threads:
            thread.start()
        self.stopping.wait()

    def stop(self, grace: float = 5.0) -> None:
        """Stop every pod process (SIGTERM, then SIGKILL after `grace`)."""
        self.stopping.set()
        with self.lock:
            runners = list(self.pods.values())
        # Let each runner finish its loop first, so none restarts a container after this.
        deadline = time.monotonic() + grace
        for runner in runners:
            if runner.thread is not None:
                runner.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        sigterm_and_wait([c for runner in runners for c in runner.containers], grace)
        for runner in runners:
            runner.kill_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run pods of our images as local processes.")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--node-name", default=NODE_NAME)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    kubelet = ProcessKubelet(options.kubeconfig, options.state_dir, options.node_name)
    signal.signal(signal.SIGTERM, lambda *_: kubelet.stopping.set())
    try:
        kubelet.run()
    finally:
        kubelet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
