"""Redis failures are classified by the exception's type, not by its message."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
import redis.exceptions as rex
from taskqueue_contract.failures import (
    FailureKind,
    SecretMissing,
    SecretUnreadable,
    classify,
    kind_of,
)
from taskqueue_contract.tls import TLSConfigError


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException:
            raise error  # noqa: B904 - as redis-py does: implicit __context__
    except BaseException as raised:
        return raised


class ApiException(Exception):  # the kubernetes client's, by name
    def __init__(self, status: int) -> None:
        super().__init__(f"({status})")
        self.status = status


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (rex.AuthenticationError("invalid username-password pair"), "AuthenticationFailed"),
        (rex.AuthenticationWrongNumberOfArgsError("x"), "AuthenticationFailed"),
        (rex.NoPermissionError("NOPERM this user has no permissions"), "PermissionDenied"),
        (rex.TimeoutError("Timeout reading from socket"), "Timeout"),
        (TimeoutError(), "Timeout"),  # asyncio.wait_for
        (rex.BusyLoadingError("LOADING"), "ServerLoading"),
        (rex.ReadOnlyError("READONLY"), "ReadOnlyReplica"),
        (rex.ConnectionError("Error 111 connecting"), "ConnectionFailed"),
        (ConnectionRefusedError(111, "refused"), "ConnectionFailed"),
        (socket.gaierror(-2, "Name or service not known"), "ConnectionFailed"),
        (rex.ResponseError("ERR unknown command"), "ServerError"),
        (ssl.SSLCertVerificationError("certificate verify failed"), "TLSHandshakeFailed"),
        (
            TLSConfigError("TLS certificates are configured but the URL is redis://"),
            "TLSMisconfigured",
        ),
        (SecretMissing("Secret ns/redis has no key 'url'"), "SecretMissing"),
        (SecretUnreadable("Secret ns/redis: 403 Forbidden"), "SecretUnreadable"),
        (ApiException(404), "SecretMissing"),
        (ApiException(403), "SecretUnreadable"),
        (ValueError("Redis URL must specify one of the following schemes"), "InvalidURL"),
        (RuntimeError("?"), "RedisError"),
    ],
)
def test_kinds(error: BaseException, kind: str) -> None:
    assert kind_of(error) == FailureKind(kind)


def test_a_wrapped_error_is_classified_by_its_cause_not_its_text() -> None:
    handshake = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    wrapped = _raised_from(rex.ConnectionError("Error 1 connecting to redis:6380."), handshake)
    assert kind_of(wrapped) is FailureKind.TLS_HANDSHAKE_FAILED
    # A message that merely mentions a certificate is no TLS failure.
    assert kind_of(rex.ConnectionError("certificate? timeout?")) is FailureKind.CONNECTION_FAILED


def test_the_operators_secret_error_marked_missing() -> None:
    class SecretUnreadable(LookupError):
        def __init__(self, message: str, missing: bool = False) -> None:
            super().__init__(message)
            self.missing = missing

    assert kind_of(SecretUnreadable("gone", missing=True)) is FailureKind.SECRET_MISSING
    assert kind_of(SecretUnreadable("forbidden")) is FailureKind.SECRET_UNREADABLE


def test_failure_carries_a_redacted_one_line_message_and_a_hint() -> None:
    url = "redis://:hunter22@redis:6379/0"
    failure = classify(rex.AuthenticationError(f"for {url}\n WRONGPASS hunter22"), url)
    assert failure.kind is FailureKind.AUTHENTICATION_FAILED
    assert failure.reason == "AuthenticationFailed"
    assert "hunter22" not in failure.message and "\n" not in failure.message
    assert failure.message.startswith("AuthenticationError: ")
    assert failure.describe().endswith(failure.hint) and not failure.transient
    assert classify(TimeoutError()).message == "TimeoutError"
    for kind in FailureKind:
        assert kind.hint and "\n" not in kind.hint


def test_transient_kinds_are_the_outages() -> None:
    assert {k for k in FailureKind if k.transient} == {
        FailureKind.CONNECTION_FAILED,
        FailureKind.TIMEOUT,
        FailureKind.SERVER_LOADING,
    }


@pytest.fixture
def plain_tcp_port() -> Iterator[int]:
    """A server that answers a TLS hello with plain text."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"-ERR not tls\r\n" * 64)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_redis_py_errors_sync(plain_tcp_port: int) -> None:
    client = redis.Redis.from_url(f"rediss://127.0.0.1:{plain_tcp_port}/0", socket_timeout=3)
    with pytest.raises(rex.RedisError) as caught:
        client.ping()
    assert kind_of(caught.value) is FailureKind.TLS_HANDSHAKE_FAILED
    refused = redis.Redis(port=_free_port(), socket_connect_timeout=2)
    with pytest.raises(rex.RedisError) as caught:
        refused.ping()
    assert kind_of(caught.value) is FailureKind.CONNECTION_FAILED


def test_real_redis_py_errors_asyncio(plain_tcp_port: int) -> None:
    async def ping(url: str) -> BaseException:
        client = aioredis.Redis.from_url(url, socket_timeout=3)
        try:
            await client.ping()
        except Exception as error:
            return error
        finally:
            await client.aclose()
        raise AssertionError("ping succeeded")

    error = asyncio.run(ping(f"rediss://127.0.0.1:{plain_tcp_port}/0"))
    assert kind_of(error) is FailureKind.TLS_HANDSHAKE_FAILED
    error = asyncio.run(ping(f"redis://127.0.0.1:{_free_port()}/0"))
    assert kind_of(error) is FailureKind.CONNECTION_FAILED
