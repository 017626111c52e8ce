"""Which way this process reaches a TaskQueue's Redis: directly, or through the API server.

A Secret usually names Redis as the pods see it (`redis://redis.default.svc:6379/0`),
which the user's machine cannot resolve. Such an explicit cluster name (`.svc` in it) is
looked up as a Service first, with no DNS query (unless the plugin runs in a pod); any
other host is dialled directly, and when that fails quickly (the name does not resolve,
the connection is refused or not answered), the host is read as a cluster name: `<svc>`,
`<svc>.<ns>`, `<svc>.<ns>.svc[.<cluster domain>]` or a headless
Service's `<pod>.<svc>.<ns>.svc[...]`; an IP is looked up as a ClusterIP or a pod IP of
the TaskQueue's namespace. Its Service's EndpointSlices (or, without them,
its selector) give a ready pod and the port behind the Service port, and the plugin
opens a port-forward to that pod as `kubectl port-forward` does (see `forward.py`).

port-forward reaches only a pod's own ports: a Redis outside the cluster cannot be
reached through a worker pod without exec, so then the error says what to do instead.

Pure but for `probe_direct` (a socket); the cluster is read through the `Cluster`
protocol (`forward.KubeCluster` in the plugin, fakes in the unit tests).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from taskqueue_contract.redaction import redact_url

from taskqueue_plugin.errors import RedisUnavailable

DEFAULT_PORT = 6379
PROBE_TIMEOUT = 2.0
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


# ----------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Direct:
    """Dial the URL's host from this machine."""

    host: str
    port: int

    def describe(self) -> str:
        if not self.port:
            return f"redis: direct to {self.host}"
        return f"redis: direct to {self.host}:{self.port}"


@dataclass(frozen=True)
class Forward:
    """Port-forward to `pod`'s `port` through the API server; `service` is what the URL
    named (None when it named the pod itself)."""

    pod: str
    namespace: str
    port: int
    service: str | None = None
    service_port: int | None = None

    def describe(self) -> str:
        via = f" (service {self.service}:{self.service_port})" if self.service else ""
        return f"redis: via port-forward to pod {self.pod}{via} through the API server"


Path = Direct | Forward


# --------------------------------------------------------------------------- the URL


def redis_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a redis:// or rediss:// URL; None for a unix socket."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        return None
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        return None  # connect() reports the malformed URL
    return parts.hostname, port


@dataclass(frozen=True)
class ClusterName:
    """A host read as a name of the cluster's DNS."""

    service: str
    namespace: str
    hostname: str | None = None
    """A headless Service's pod (`<hostname>.<svc>.<ns>.svc`)."""
    explicit: bool = False
    """Written with `.svc`: only a cluster name (a bare `redis` may be anything)."""


def cluster_name(host: str, namespace: str) -> ClusterName | None:
    """How pods would resolve `host` in `namespace`, if it is a Service name at all."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.rstrip(".").lower().split(".")
    if "svc" in labels:
        at = labels.index("svc")
        if at == 2:
            return ClusterName(labels[0], labels[1], explicit=True)
        if at == 3:
            return ClusterName(labels[1], labels[2], hostname=labels[0], explicit=True)
        return None
    if len(labels) == 1:
        return ClusterName(labels[0], namespace)
    if len(labels) == 2:
        return ClusterName(labels[0], labels[1])
    return None


# ---------------------------------------------------------------------- direct probe


def _speaks_tls(sock: socket.socket, host: str) -> bool:
    """A TLS server answers our ClientHello: a finished handshake, or a TLS alert (no
    client certificate yet); an HTTP proxy's reply is no TLS record at all."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with context.wrap_socket(sock, server_hostname=None if _is_ip(host) else host):
            return True
    except ssl.SSLError as error:
        return "ALERT" in str(error.reason or "").upper()


def probe_direct(
    host: str, port: int, timeout: float = PROBE_TIMEOUT, resp: bool = False, tls: bool = False
) -> str | None:
    """None if a TCP connection to host:port opens within `timeout` and, with `resp`,
    what answers an inline PING speaks RESP (`+PONG`, or `-NOAUTH` without the password),
    with `tls`, TLS; else why not. A proxy or firewall that accepts any connection is
    not Redis."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return "the name does not resolve here"
    reason = "no address"
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            if tls:
                if _speaks_tls(sock, host):
                    return None
                reason = f"what answers at {host}:{port} does not speak TLS"
                continue
            if not resp:
                return None
            sock.sendall(b"PING\r\n")
            first = sock.recv(1)
            if first in (b"+", b"-"):
                return None
            reason = f"what answers at {host}:{port} is not Redis" if first else "closed"
        except TimeoutError:
            reason = f"no answer within {timeout:g}s"
        except ConnectionRefusedError:
            reason = "connection refused"
        except OSError as error:
            reason = error.strerror or type(error).__name__
        finally:
            sock.close()
    return reason


# ------------------------------------------------------------------ reading the cluster


class Cluster(Protocol):
    """What the path choice reads, as plain JSON dicts (None: not found)."""

    def service(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]: ...

    def pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]: ...

    def services(self, namespace: str) -> list[dict[str, Any]]: ...

    def pods_with_ip(self, namespace: str, ip: str) -> list[dict[str, Any]]: ...


def _ready_endpoint(endpoint: Mapping[str, Any]) -> bool:
    # EndpointConditions.ready: "nil should be interpreted as true".
    return (endpoint.get("conditions") or {}).get("ready") is not False


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )


def _container_port(pod: Mapping[str, Any], name: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == name and port.get("containerPort"):
                return int(port["containerPort"])
    return None


def _service_port(service: Mapping[str, Any], port: int, title: str) -> Mapping[str, Any]:
    ports = (service.get("spec") or {}).get("ports") or []
    for entry in ports:
        if int(entry.get("port") or 0) == port and entry.get("protocol", "TCP") == "TCP":
            return dict(entry)
    listed = ", ".join(str(p.get("port")) for p in ports) or "none"
    raise RedisUnavailable(f"{title} has no port {port} (its ports: {listed})")


def _listed(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def forward_to_service(cluster: Cluster, name: ClusterName, port: int) -> Forward | None:
    """The pod and port behind `name`'s Service port `port`; None if there is no such
    Service (the caller says what that means); raises when it has no ready pod."""
    service = cluster.service(name.namespace, name.service)
    if service is None:
        return None
    title = f"Service '{name.service}' in namespace '{name.namespace}'"
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        raise RedisUnavailable(
            f"{title} is an ExternalName for {spec.get('externalName')}: no pod to "
            "port-forward to; reach that host directly or pass --redis-url"
        )
    service_port = _service_port(service, port, title)

    def found(pod: str, target: int) -> Forward:
        return Forward(pod, name.namespace, target, name.service, port)

    slices = cluster.endpoint_slices(name.namespace, name.service)
    not_ready: list[str] = []
    others: list[str] = []  # pods that are not the headless name's
    addresses: list[str] = []
    candidates: list[tuple[str, int]] = []
    for endpoint_slice in slices:
        target = None
        for slice_port in endpoint_slice.get("ports") or ():
            if (slice_port.get("name") or "") == (service_port.get("name") or ""):
                target = slice_port.get("port")
        for endpoint in endpoint_slice.get("endpoints") or ():
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") != "Pod" or not ref.get("name"):
                addresses += endpoint.get("addresses") or []
                continue
            pod = str(ref["name"])
            if name.hostname and name.hostname not in (endpoint.get("hostname"), pod):
                others.append(pod)
                continue
            if not _ready_endpoint(endpoint) or target is None:
                not_ready.append(pod)
                continue
            candidates.append((pod, int(target)))
    if candidates:
        return found(*sorted(candidates)[0])

    selector = spec.get("selector") or {}
    if not slices and selector:  # no EndpointSlices to read: the pods of the selector
        for candidate in sorted(cluster.pods(name.namespace, selector), key=_pod_name):
            pod_name = _pod_name(candidate)
            if name.hostname and name.hostname not in (
                (candidate.get("spec") or {}).get("hostname"),
                pod_name,
            ):
                others.append(pod_name)
                continue
            target_port = service_port.get("targetPort", port)
            number = (
                _container_port(candidate, target_port)
                if isinstance(target_port, str)
                else int(target_port)
            )
            if _pod_ready(candidate) and number is not None:
                return found(pod_name, number)
            not_ready.append(pod_name)

    which = f" '{name.hostname}'" if name.hostname else ""
    if not_ready:
        detail = f"not ready: {_listed(sorted(set(not_ready)))}"
    elif others:
        detail = f"its pods: {_listed(sorted(set(others)))}"
    elif addresses:
        detail = (
            f"its endpoints are addresses, not pods: {_listed(sorted(set(addresses)))}; "
            "port-forward reaches only pods, so reach those addresses directly or pass "
            "--redis-url"
        )
    elif not selector:
        detail = "it has no selector and no endpoints"
    else:
        shown = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        detail = f"its selector {shown} matches no pod"
    raise RedisUnavailable(f"no ready pod{which} behind {title} ({detail})")


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name") or "")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def by_address(cluster: Cluster, namespace: str, ip: str) -> tuple[ClusterName | None, str | None]:
    """An IP of the TaskQueue's namespace: a Service's ClusterIP (its name), or a ready
    pod's IP (its name)."""
    for service in cluster.services(namespace):
        spec = service.get("spec") or {}
        if ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]):
            return ClusterName(_pod_name(service), namespace, explicit=True), None
    for pod in cluster.pods_with_ip(namespace, ip):
        if _pod_ready(pod):
            return None, _pod_name(pod)
    return None, None


# ------------------------------------------------------------------------ the choice


def choose_path(
    url: str,
    namespace: str,
    cluster: Callable[[], Cluster] | None,
    probe: Callable[[str, int], str | None] | None = None,
    cluster_dns: bool = False,
) -> Path:
    """Direct when the URL's host answers from here; else a port-forward to the pod
    behind its Service; else an error that says what to do. `cluster` is called only
    when the direct dial failed, or first for a `.svc` name unless `cluster_dns` (this
    process runs in a pod, where the cluster's DNS resolves it) (None: no cluster, e.g.
    --redis-url)."""
    address = redis_address(url)
    if address is None:
        return Direct(redact_url(url), 0)  # a unix socket: only ever local
    host, port = address
    name = cluster_name(host, namespace)
    if cluster is not None and name is not None and name.explicit and not cluster_dns:
        # Only a cluster's DNS knows `<svc>.<ns>.svc` names: the Service is asked for
        # instead, so no lookup of such a name goes to this machine's resolver (and on to
        # whatever DNS it forwards to).
        forward = forward_to_service(cluster(), name, port)
        if forward is not None:
            return forward
        raise RedisUnavailable(
            f"cannot reach Redis at {redact_url(url)}: {host} is a name of the cluster's DNS, "
            f"and there is no Service '{name.service}' in namespace '{name.namespace}' to "
            "port-forward through: check the host of the TaskQueue's Redis URL"
        )
    if probe is None:  # redis:// answers a PING before any AUTH, rediss:// a ClientHello
        tls = url.startswith("rediss://")
        reason = probe_direct(host, port, resp=not tls, tls=tls)
    else:
        reason = probe(host, port)
    if reason is None:
        return Direct(host, port)
    shown = redact_url(url)
    if cluster is not None and name is None and _is_ip(host):
        reader = cluster()
        name, pod = by_address(reader, namespace, host)
        if pod is not None:
            return Forward(pod, namespace, port)
        if name is not None:
            forward = forward_to_service(reader, name, port)
            if forward is not None:
                return forward
    if cluster is None or name is None:
        raise RedisUnavailable(
            f"cannot reach Redis at {shown} from this machine ({reason}), and {host} is not "
            "a Service of the cluster, so there is no pod to port-forward to (port-forward "
            "reaches only a pod's own ports; a worker pod cannot relay without exec): run "
            f"the plugin where {host} is reachable, or open a tunnel yourself and pass "
            "--redis-url"
        )
    forward = forward_to_service(cluster(), name, port)
    if forward is not None:
        return forward
    if name.explicit:
        raise RedisUnavailable(
            f"cannot reach Redis at {shown} from this machine ({reason}), and there is no "
            f"Service '{name.service}' in namespace '{name.namespace}' to port-forward "
            "through: check the host of the TaskQueue's Redis URL"
        )
    raise RedisUnavailable(
        f"cannot reach Redis at {shown} from this machine ({reason}), and there is no "
        f"Service '{name.service}' in namespace '{name.namespace}' to port-forward through"
    )
