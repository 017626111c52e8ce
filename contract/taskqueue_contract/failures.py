"""Why Redis could not be used, as a kind with a hint, classified from the exception TYPE.

``classify(error)`` looks at the classes of the error and of the errors it was raised
from (``__cause__`` / ``__context__``: redis-py wraps an ``ssl.SSLError`` or a refused
socket in its own ``ConnectionError``), never at message text. Classes are matched by
their qualified names along the MRO, so this module imports neither redis nor
kubernetes: the contract stays stdlib-only, and redis.asyncio (same exception classes)
and sync redis-py are classified alike.

A missing Secret or key (`SecretMissing`) is not an unreachable Redis, nor is a Secret
the operator may not read (`SecretUnreadable`): both are raised by whoever reads the
Secrets (the operator's Kubernetes adapter, the plugin) and classified here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from taskqueue_contract.redaction import redact


class TLSConfigError(ValueError):
    """TLS material given for a URL that cannot use it. Raised by `taskqueue_contract.tls`
    (which re-exports it); defined here so that classifying a failure, which the pure core
    does, never imports the module that writes certificate files."""


class SecretUnreadable(LookupError):
    """A Secret the spec names exists (or may exist) but cannot be read: RBAC, API down."""


class SecretMissing(SecretUnreadable):
    """The Secret or its key does not exist. A subclass of `SecretUnreadable` so that
    handlers written for that keep catching it; `classify` tells the two apart."""


class FailureKind(StrEnum):
    """The condition reason (``RedisReachable=False``) and Event reason of each failure."""

    CONNECTION_FAILED = "ConnectionFailed"
    TIMEOUT = "Timeout"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    PERMISSION_DENIED = "PermissionDenied"
    TLS_HANDSHAKE_FAILED = "TLSHandshakeFailed"
    TLS_MISCONFIGURED = "TLSMisconfigured"
    INVALID_URL = "InvalidURL"
    SECRET_MISSING = "SecretMissing"
    SECRET_UNREADABLE = "SecretUnreadable"
    SERVER_LOADING = "ServerLoading"
    READ_ONLY = "ReadOnlyReplica"
    SERVER_ERROR = "ServerError"
    UNKNOWN = "RedisError"

    @property
    def hint(self) -> str:
        """One line: what to fix first."""
        return _HINTS[self]

    @property
    def transient(self) -> bool:
        """Redis is away and may come back by itself (wait, retry); the other kinds need
        a change (URL, password, certificate, Secret, RBAC) before a retry can succeed."""
        return self in _TRANSIENT


_HINTS = {
    FailureKind.CONNECTION_FAILED: (
        "check the host and port of spec.redis, that Redis runs, and NetworkPolicies"
    ),
    FailureKind.TIMEOUT: "Redis did not answer in time: check it is not overloaded or blocked",
    FailureKind.AUTHENTICATION_FAILED: "check the user and password in the Redis URL",
    FailureKind.PERMISSION_DENIED: (
        "the Redis user lacks commands or keys: grant it RQ's keys (ACL ~<prefix>:*)"
    ),
    FailureKind.TLS_HANDSHAKE_FAILED: (
        "check spec.redis.tls: the CA must sign the server's certificate and the names match"
    ),
    FailureKind.TLS_MISCONFIGURED: "spec.redis.tls is set but the URL is not rediss://",
    FailureKind.INVALID_URL: (
        "spec.redis.url must be redis://, rediss:// or unix:// with a valid port and db"
    ),
    FailureKind.SECRET_MISSING: "create the Secret and key that spec.redis names",
    FailureKind.SECRET_UNREADABLE: "let the operator's ServiceAccount get that Secret (RBAC)",
    FailureKind.SERVER_LOADING: "Redis is loading its dataset: it answers once it is loaded",
    FailureKind.READ_ONLY: "the URL points at a read-only replica: use the primary",
    FailureKind.SERVER_ERROR: "Redis refused a command: see the message",
    FailureKind.UNKNOWN: "see the message",
}
_TRANSIENT = frozenset(
    {FailureKind.CONNECTION_FAILED, FailureKind.TIMEOUT, FailureKind.SERVER_LOADING}
)


@dataclass(frozen=True)
class RedisFailure:
    """A classified failure; `message` is one line, password-free, type-prefixed."""

    kind: FailureKind
    message: str

    @property
    def reason(self) -> str:
        return self.kind.value

    @property
    def hint(self) -> str:
        return self.kind.hint

    @property
    def transient(self) -> bool:
        return self.kind.transient

    def describe(self, limit: int = 280) -> str:
        """``message: hint``, for a condition message or a log line; a long message (an
        SSL error can run to lines) is shortened so that the hint always shows."""
        room = max(40, limit - len(self.hint) - 2)
        message = self.message if len(self.message) <= room else self.message[: room - 1] + "…"
        return f"{message}: {self.hint}"


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _names(error: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(error).__mro__}


_R = "redis.exceptions."
# (kind, qualified class names), first match over the whole chain wins.
_BY_CLASS: tuple[tuple[FailureKind, frozenset[str]], ...] = (
    (FailureKind.TLS_HANDSHAKE_FAILED, frozenset({"ssl.SSLError", "ssl.CertificateError"})),
    (
        FailureKind.AUTHENTICATION_FAILED,
        frozenset(
            {
                _R + "AuthenticationError",
                _R + "AuthenticationWrongNumberOfArgsError",
                _R + "ExternalAuthProviderError",
            }
        ),
    ),
    (
        FailureKind.PERMISSION_DENIED,
        frozenset({_R + "NoPermissionError", _R + "AuthorizationError"}),
    ),
    (FailureKind.SERVER_LOADING, frozenset({_R + "BusyLoadingError"})),
    (FailureKind.READ_ONLY, frozenset({_R + "ReadOnlyError"})),
    (
        FailureKind.TIMEOUT,
        frozenset(
            {_R + "TimeoutError", "builtins.TimeoutError", "asyncio.exceptions.TimeoutError"}
        ),
    ),
    (FailureKind.CONNECTION_FAILED, frozenset({_R + "ConnectionError", "builtins.OSError"})),
    (FailureKind.SERVER_ERROR, frozenset({_R + "ResponseError"})),
)
_API_EXCEPTION = "ApiException"  # kubernetes.client.exceptions / kubernetes_asyncio


def kind_of(error: BaseException) -> FailureKind:
    """The kind of `error` (see the module's docstring for the rules)."""
    chain = list(_chain(error))
    for link in chain:  # our own types first: they say what we were doing
        if isinstance(link, SecretMissing):
            return FailureKind.SECRET_MISSING
        if isinstance(link, SecretUnreadable) or type(link).__name__ == "SecretUnreadable":
            # the operator's adapter marks a Secret or key that does not exist `missing`
            missing = getattr(link, "missing", False) is True
            return FailureKind.SECRET_MISSING if missing else FailureKind.SECRET_UNREADABLE
        if isinstance(link, TLSConfigError):
            return FailureKind.TLS_MISCONFIGURED
        if type(link).__name__ == _API_EXCEPTION and hasattr(link, "status"):
            return (
                FailureKind.SECRET_MISSING if link.status == 404 else FailureKind.SECRET_UNREADABLE
            )
    names = [_names(link) for link in chain]
    for kind, classes in _BY_CLASS:
        if any(classes & found for found in names):
            return kind
    if isinstance(error, ValueError):  # redis-py's from_url: scheme, port, db
        return FailureKind.INVALID_URL
    return FailureKind.UNKNOWN


def message_of(error: BaseException, url: str | None = None) -> str:
    """``Type: text`` on one line, the URL's password removed."""
    text = " ".join(str(error).split())
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return redact(line, url)


def classify(error: BaseException, url: str | None = None) -> RedisFailure:
    """The kind and a one-line message of a failure to resolve, reach or use Redis."""
    return RedisFailure(kind_of(error), message_of(error, url))
