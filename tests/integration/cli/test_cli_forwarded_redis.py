"""redis-py over a dialled socket (what a port-forward gives), against a real redis-server.

The URL names a cluster host this machine cannot resolve; every connection's socket
comes from `dial` instead. With TLS, the certificate must match the URL's host, not the
address the socket really goes to: the server name is checked through the tunnel.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import kubernetes.stream
import pytest
import redis
from taskqueue_plugin.errors import RedisUnavailable
from taskqueue_plugin.forward import PROXY_THREAD, Forwarder, RedisLink
from taskqueue_plugin.resolve import connect
from taskqueue_plugin.route import Forward, probe_direct
from taskqueue_plugin.status import observe
from testbed.certs import LOOPBACK_SAN, issue
from testbed.redis_server import RedisServer, RedisTLS

pytestmark = pytest.mark.integration
HOST = "redis.quant.svc"


def dialer(port: int) -> Any:
    def dial() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=3)

    return dial


def test_sync_and_async_clients_dial_the_forward(redis_server: RedisServer) -> None:
    url = f"redis://{HOST}:{redis_server.port}/0"
    with pytest.raises(RedisUnavailable, match=f"cannot reach Redis at {url}"):
        connect(url)  # the host does not resolve here
    client = connect(url, dialer(redis_server.port))
    assert client.set("forwarded", "yes") and client.get("forwarded") == b"yes"
    client.close()
    seen = observe(url, "rq", ["default"], 0.0, dialer(redis_server.port))
    assert [q.name for q in seen.queues] == ["default"]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[RedisServer]:
    """TLS only; the serving certificate names 127.0.0.1 and redis.quant.svc."""
    tls = RedisTLS(tmp_path / "tls")
    issue(tls.directory, "redis", "/CN=redis", f"{LOOPBACK_SAN},DNS:{HOST}")
    server = RedisServer(tls=tls).start()
    try:
        yield server
    finally:
        server.cleanup()


def tls_url(server: RedisServer, host: str) -> str:
    assert server.tls is not None
    return f"rediss://{host}:{server.port}/0?" + urlencode(server.tls.client_kwargs())


def test_tls_checks_the_url_host_through_the_forward(tls_server: RedisServer) -> None:
    dial = dialer(tls_server.port)
    client = connect(tls_url(tls_server, HOST), dial)
    assert client.ping()
    client.close()
    assert observe(tls_url(tls_server, HOST), "rq", ["q"], 0.0, dial).queues

    # The same socket, a URL host the certificate does not name: refused, sync and async.
    other = tls_url(tls_server, "other.quant.svc")
    with pytest.raises(RedisUnavailable, match="certificate verify failed"):
        connect(other, dial)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        observe(other, "rq", ["q"], 0.0, dial)


def test_the_direct_probe_knows_tls(tls_server: RedisServer) -> None:
    """A TLS Redis that wants a client certificate still counts as answering; a server
    that answers a ClientHello with plain text does not."""
    assert probe_direct("127.0.0.1", tls_server.port, tls=True) is None
    assert probe_direct("127.0.0.1", tls_server.port, resp=True) is not None
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]

        def answer() -> None:
            conn, _ = listening.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()

        thread = threading.Thread(target=answer)
        thread.start()
        reason = probe_direct("127.0.0.1", port, tls=True)
        thread.join()
    assert reason == f"what answers at 127.0.0.1:{port} does not speak TLS"


class FakeStream:
    """What `kubernetes.stream.portforward` returns, over a real socket to Redis, with a
    proxy thread named as the library names its own."""

    def __init__(self, port: int, error: str | None = None) -> None:
        self.ours, theirs = socket.socketpair()
        far = socket.create_connection(("127.0.0.1", port))
        self.error_text = error
        self.thread = threading.Thread(target=self._run, args=(theirs, far), name=PROXY_THREAD)
        self.thread.start()

    @staticmethod
    def _run(theirs: socket.socket, far: socket.socket) -> None:
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(theirs, selectors.EVENT_READ, far)
            selector.register(far, selectors.EVENT_READ, theirs)
            while True:
                for key, _ in selector.select():
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        theirs.close()
                        far.close()
                        return
                    key.data.sendall(data)

    def socket(self, port: int) -> socket.socket:
        return self.ours

    def error(self, port: int) -> str | None:
        return self.error_text

    def close(self) -> None:
        self.ours.close()


def test_forwarder_closes_its_streams_and_threads(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[dict[str, Any]] = []

    def portforward(method: Any, pod: str, namespace: str, **kwargs: Any) -> FakeStream:
        opened.append({"pod": pod, "namespace": namespace, **kwargs})
        return FakeStream(redis_server.port)

    monkeypatch.setattr(kubernetes.stream, "portforward", portforward)
    lines: list[str] = []
    link = RedisLink(
        f"redis://{HOST}:6379/0",
        "quant",
        lambda: kubernetes.client.ApiClient(),
        lines.append,
        probe=lambda host, port: "the name does not resolve here",
    )
    forward = Forward("redis-0", "quant", 7000, "redis", 6379)
    link._path = forward  # as choose_path would have found it (see test_cli_route)
    client = connect(link.url, link.dial, link.via, link.problem)
    assert client.ping()
    assert observe(link.url, "rq", ["default"], 0.0, link.dial).queues
    assert opened[0] == {"pod": "redis-0", "namespace": "quant", "ports": "7000"} | {
        "_request_timeout": 15
    }
    assert link.forwarder is not None and link.forwarder.open_threads
    client.close()
    link.close()
    assert link.forwarder.open_threads == []
    assert not [t for t in threading.enumerate() if t.name == PROXY_THREAD and t.is_alive()]


def test_what_the_pod_said_is_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closing:
        port = closing.getsockname()[1]

        def accept_and_close() -> None:
            conn, _ = closing.accept()
            conn.close()

        threading.Thread(target=accept_and_close, daemon=True).start()
        said = "error forwarding port 7000 to pod abc: failed to connect to localhost:7000"
        monkeypatch.setattr(
            kubernetes.stream, "portforward", lambda *a, **k: FakeStream(port, error=said)
        )
        forwarder = Forwarder(kubernetes.client.ApiClient(), Forward("redis-0", "quant", 7000))
        with pytest.raises(RedisUnavailable) as raised:
            connect(
                f"redis://:pw@{HOST}:6379/0",
                forwarder.dial,
                " through the port-forward to pod redis-0",
                forwarder.stream_error,
            )
        forwarder.close()
    message = str(raised.value)
    assert message.startswith(
        f"cannot reach Redis at redis://:***@{HOST}:6379/0 through the port-forward to pod "
        "redis-0: "
    )
    assert f"(the pod redis-0 said: {said})" in message


def test_a_refused_forward_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: Any, **kwargs: Any) -> None:
        raise kubernetes.client.exceptions.ApiException(
            status=0,
            reason="Handshake status 403 Forbidden -+-+- {} -+-+- "
            + repr(b'{"kind":"Status","message":"pods \\"redis-0\\" is forbidden"}'),
        )

    monkeypatch.setattr(kubernetes.stream, "portforward", refused)
    forwarder = Forwarder(kubernetes.client.ApiClient(), Forward("redis-0", "quant", 7000))
    with pytest.raises(RedisUnavailable) as raised:
        connect(f"redis://{HOST}:6379/0", forwarder.dial, "", forwarder.stream_error)
    message = str(raised.value)
    refused = (
        'port-forward to pod redis-0 failed: pods "redis-0" is forbidden (needs the '
        "'create' verb on pods/portforward)"
    )
    assert refused in message and message.count(refused) == 1, message


def test_ctrl_c_closes_the_forward(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command interrupted while its forward is open exits 130 with nothing left open."""
    from taskqueue_plugin import main as cli
    from taskqueue_plugin.resolve import Target

    monkeypatch.setattr(
        kubernetes.stream, "portforward", lambda *a, **k: FakeStream(redis_server.port)
    )
    url = f"redis://{HOST}:6379/0"
    target = Target("tq", "quant", url, "rq", ("default",), taskqueue={"metadata": {}})
    monkeypatch.setattr(cli, "_target", lambda options: target)
    links: list[RedisLink] = []

    def link(options: Any, target: Target) -> RedisLink:
        made = RedisLink(
            url,
            "quant",
            lambda: kubernetes.client.ApiClient(),
            lambda line: print(line, file=sys.stderr),
            probe=lambda host, port: "the name does not resolve here",
        )
        made._path = Forward("redis-0", "quant", 7000, "redis", 6379)
        links.append(made)
        return made

    def interrupted(ctx: Any, options: Any) -> int:
        assert ctx.client.ping()
        assert links[0].forwarder is not None and links[0].forwarder.open_threads
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_link", link)
    monkeypatch.setattr(cli, "_dispatch", interrupted)
    assert cli.main(["status", "tq"]) == 130
    assert links[0].forwarder is not None and links[0].forwarder.open_threads == []
    assert not [t for t in threading.enumerate() if t.name == PROXY_THREAD and t.is_alive()]
