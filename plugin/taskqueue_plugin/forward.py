"""Redis through the API server: `kubectl port-forward`, with the kubernetes client.

Each Redis connection is one port-forward stream, opened by the library's
`kubernetes.stream.portforward` (its websocket, its channel framing, its proxy thread);
we hand redis-py the socket it returns through a connection class whose `_connect`
dials the forward instead of the host. `self.host` stays the URL's host, so
`rediss://` verifies the server name of the original host (redis-py's
`ssl_check_hostname`, `server_hostname`) with the TLS material of the Secret as before.

Why a connection class, not a local listener on 127.0.0.1: no port that any local
process could use, no relay threads of our own, and no rewriting of the URL (the
server name comes for free). A re-executed child (another key prefix) chooses and
opens its own (it has the same kubeconfig flags).

`Forwarder.close()` closes every stream's socket and joins the library's proxy threads
(they end when their socket closes): on exit, on errors and on Ctrl-C.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
import redis.asyncio
from taskqueue_contract.redaction import redact_url

from taskqueue_plugin.errors import RedisUnavailable
from taskqueue_plugin.route import (
    SERVICE_NAME_LABEL,
    Direct,
    Forward,
    Path,
    choose_path,
)

PROXY_THREAD = "Kubernetes port forward proxy"
REQUEST_TIMEOUT = 15
JOIN_TIMEOUT = 5.0

Dial = Callable[[], socket.socket]


class ForwardError(OSError):
    """A port-forward that could not be opened (redis-py turns it into a ConnectionError)."""


def _api_message(error: Exception) -> str:
    """The API server's Status message out of the library's handshake error
    (``Handshake status 403 Forbidden -+-+- {headers} -+-+- b'{"kind":"Status",...}'``)."""
    text = str(getattr(error, "reason", "") or error)
    parts = text.split("-+-+-")
    if len(parts) >= 3:
        with contextlib.suppress(ValueError, SyntaxError, AttributeError):
            body = ast.literal_eval(parts[-1].strip())
            status = json.loads(body.decode() if isinstance(body, bytes) else str(body))
            if isinstance(status, dict) and status.get("message"):
                return str(status["message"])
    handshake = re.search(r"Handshake status (\d+[A-Za-z ]*)", text)
    return handshake.group(1).strip() if handshake else text.strip() or type(error).__name__


def _quiet_proxy_resets() -> None:
    """The library's proxy thread dies of ECONNRESET when our end closes with unread
    data (a refused TLS handshake): that is the end of a stream, not a traceback for
    the user. Other threads' exceptions go to the hook as before."""
    previous = threading.excepthook
    if getattr(previous, "_taskqueue_quiet", False):
        return

    def hook(arguments: threading.ExceptHookArgs) -> None:
        thread = arguments.thread
        if (
            thread is not None
            and thread.name.startswith(PROXY_THREAD)
            and issubclass(arguments.exc_type, OSError)
        ):
            return
        previous(arguments)

    hook._taskqueue_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class Forwarder:
    """Opens port-forward streams to one pod port; remembers them to close them all."""

    def __init__(self, api_client: Any, forward: Forward) -> None:
        self.api_client = api_client
        self.forward = forward
        self._lock = threading.Lock()
        self._streams: list[Any] = []
        self._threads: list[threading.Thread] = []
        self.last_error: str | None = None

    def dial(self) -> socket.socket:
        """A connected socket to the pod's port (one new stream per call)."""
        import kubernetes
        from kubernetes.stream import portforward

        core = kubernetes.client.CoreV1Api(self.api_client)
        target = self.forward
        _quiet_proxy_resets()
        with self._lock:
            before = set(threading.enumerate())
            try:
                stream = portforward(
                    core.connect_get_namespaced_pod_portforward,
                    target.pod,
                    target.namespace,
                    ports=str(target.port),
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except Exception as error:  # ApiException(status=0) wraps the handshake's
                message = _api_message(error)
                if "forbidden" in message.lower():
                    message += " (needs the 'create' verb on pods/portforward)"
                self.last_error = f"port-forward to pod {target.pod} failed: {message}"
                raise ForwardError(self.last_error) from None
            self._streams.append(stream)
            self._threads += [
                t
                for t in threading.enumerate()
                if t not in before and t.name.startswith(PROXY_THREAD)
            ]
        sock: socket.socket = stream.socket(target.port)
        return sock

    def stream_error(self) -> str | None:
        """What the kubelet said on a stream's error channel (e.g. nothing listens)."""
        for stream in reversed(self._streams):
            with contextlib.suppress(Exception):
                error = stream.error(self.forward.port)
                if error:
                    return f"the pod {self.forward.pod} said: {str(error).strip()}"
        return self.last_error

    def close(self) -> None:
        with self._lock:
            streams, self._streams = self._streams, []
            threads, self._threads = self._threads, []
        for stream in streams:
            with contextlib.suppress(Exception):
                stream.close()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for stream in streams:  # a proxy thread that died of a reset leaves it open
            websocket = getattr(stream, "websocket", None)
            if websocket is not None and getattr(websocket, "connected", False):
                with contextlib.suppress(Exception):
                    websocket.close(timeout=1)

    @property
    def open_threads(self) -> list[threading.Thread]:
        return [t for t in self._threads if t.is_alive()]


# -------------------------------------------------------------- redis-py connections


class ForwardedConnection(redis.Connection):
    """A redis-py connection whose socket comes from `dial` (a port-forward)."""

    def __init__(self, *, dial: Dial, **kwargs: Any) -> None:
        self._dial = dial
        kwargs["socket_keepalive"] = False  # the stream is a local socket pair
        super().__init__(**kwargs)

    def _connect(self) -> socket.socket:
        sock = self._dial()
        sock.settimeout(self.socket_timeout)
        return sock


class ForwardedSSLConnection(redis.SSLConnection, ForwardedConnection):
    """TLS over the forward: SSLConnection wraps ForwardedConnection's socket and checks
    the URL's host (`server_hostname=self.host`)."""


class AsyncForwardedConnection(redis.asyncio.Connection):
    """The asyncio twin (the status reader is the operator's async one)."""

    def __init__(self, *, dial: Dial, **kwargs: Any) -> None:
        self._dial = dial
        kwargs["socket_keepalive"] = False
        super().__init__(**kwargs)

    def _tls(self) -> dict[str, Any]:
        return {}

    async def _connect(self) -> None:
        sock = await asyncio.to_thread(self._dial)
        try:
            async with asyncio.timeout(self.socket_connect_timeout):
                reader, writer = await asyncio.open_connection(sock=sock, **self._tls())
        except BaseException:
            sock.close()
            raise
        self._reader = reader
        self._writer = writer


class AsyncForwardedSSLConnection(redis.asyncio.SSLConnection, AsyncForwardedConnection):
    def _tls(self) -> dict[str, Any]:
        return {"ssl": self.ssl_context.get(), "server_hostname": self.host}


def connection_class(url: str, asynchronous: bool = False) -> type[Any]:
    tls = url.startswith("rediss://")
    if asynchronous:
        return AsyncForwardedSSLConnection if tls else AsyncForwardedConnection
    return ForwardedSSLConnection if tls else ForwardedConnection


# ---------------------------------------------------------------- the cluster reader


class KubeCluster:
    """`route.Cluster` over the kubernetes client: JSON dicts, None when not found."""

    def __init__(self, api_client: Any) -> None:
        import kubernetes

        self.api_client = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.discovery = kubernetes.client.DiscoveryV1Api(api_client)

    def _plain(self, value: Any) -> Any:
        return self.api_client.sanitize_for_serialization(value)

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.core.read_namespaced_service(
                name, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        plain: dict[str, Any] = self._plain(found)
        return plain

    def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            listed = self.discovery.list_namespaced_endpoint_slice(
                namespace,
                label_selector=f"{SERVICE_NAME_LABEL}={service}",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status in (403, 404):
                return []  # not allowed or no discovery API: the selector's pods instead
            raise
        return [self._plain(item) for item in listed.items]

    def pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        listed = self.core.list_namespaced_pod(
            namespace,
            label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            _request_timeout=REQUEST_TIMEOUT,
        )
        return [self._plain(item) for item in listed.items]

    def services(self, namespace: str) -> list[dict[str, Any]]:
        """Empty when not allowed: an IP is then simply not known to be the cluster's."""
        from kubernetes.client.exceptions import ApiException

        try:
            listed = self.core.list_namespaced_service(namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status in (401, 403):
                return []
            raise
        return [self._plain(item) for item in listed.items]

    def pods_with_ip(self, namespace: str, ip: str) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            listed = self.core.list_namespaced_pod(
                namespace, field_selector=f"status.podIP={ip}", _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status in (401, 403):
                return []
            raise
        return [self._plain(item) for item in listed.items]


# -------------------------------------------------------------------------- the link


class RedisLink:
    """How this process reaches a TaskQueue's Redis: chosen on first use (a direct probe,
    then the cluster), announced in one line, and closed with every forward it opened."""

    def __init__(
        self,
        url: str,
        namespace: str,
        api_client: Callable[[], Any],
        announce: Callable[[str], None],
        probe: Callable[[str, int], str | None] | None = None,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._api_client = api_client
        self._announce = announce
        self._probe = probe
        self._path: Path | None = None
        self.forwarder: Forwarder | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = self._choose()
            self._announce(self._path.describe())
        return self._path

    def _choose(self) -> Path:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return choose_path(
                self.url,
                self.namespace,
                lambda: KubeCluster(self._api_client()),
                self._probe,
                # In a pod (a toolbox, a CI job) the cluster's DNS answers `.svc` names.
                cluster_dns="KUBERNETES_SERVICE_HOST" in os.environ,
            )
        except (ApiException, HTTPError) as error:
            message = _api_message(error) if isinstance(error, ApiException) else str(error)
            raise RedisUnavailable(
                f"cannot reach Redis at {redact_url(self.url)} from this machine, and reading "
                f"its Service to port-forward failed: {message}"
            ) from None

    @property
    def dial(self) -> Dial | None:
        """The forward's dial, or None to dial the URL's host directly."""
        path = self.path
        if isinstance(path, Direct):
            return None
        if self.forwarder is None:
            self.forwarder = Forwarder(self._api_client(), path)
        return self.forwarder.dial

    @property
    def via(self) -> str:
        path = self.path
        if isinstance(path, Forward):
            return f" through the port-forward to pod {path.pod}"
        return ""

    def problem(self) -> str | None:
        return self.forwarder.stream_error() if self.forwarder else None

    def close(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()


def async_client(url: str, dial: Dial, max_connections: int = 2) -> redis.asyncio.Redis:
    """The operator reader's client settings, over the forward (slower than a LAN)."""
    # redis.asyncio's from_url lets the URL's scheme pick the class (the sync one honours
    # connection_class): the URL's options, then our class.
    from redis.asyncio.connection import parse_url

    options: dict[str, Any] = {
        **parse_url(url),
        "connection_class": connection_class(url, asynchronous=True),
        "socket_connect_timeout": 10.0,
        "socket_timeout": 10.0,
        "dial": dial,
    }
    pool = redis.asyncio.BlockingConnectionPool(
        max_connections=max_connections, timeout=10.0, **options
    )
    return redis.asyncio.Redis(connection_pool=pool)
