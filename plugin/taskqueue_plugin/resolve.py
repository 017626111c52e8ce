"""From `<tq>` to a Redis connection: the TaskQueue and its Secret, read from the cluster.

Users never paste passwords: the URL comes from `spec.redis.url` or the Secret named by
`spec.redis.urlFrom.secretKeyRef`. `--redis-url` skips the cluster entirely (direct use,
tests). Nothing here prints a URL without `redact_url`. Which Secret keys to read and how
they make a URL come from `taskqueue_contract.tls`, as in the operator.

RQ reads its key prefix once, at import. A TaskQueue whose `spec.redis.keyPrefix` differs
from this process's prefix is served by re-running the same command in a child process
with RQ_KEY_PREFIX set (the trick of adapters/recovery.py); the resolved target travels
in the child's environment, so the cluster is read once and no URL appears in argv.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
from rq.defaults import RQ_KEY_PREFIX
from taskqueue_contract.keys import DEFAULT_PREFIX, Keys
from taskqueue_contract.redaction import redact, redact_url
from taskqueue_contract.resource import GROUP, PLURAL, VERSION
from taskqueue_contract.tls import URL, TLSConfigError, resolve_url, secret_refs

from taskqueue_plugin.errors import CliError, NotFound, RedisUnavailable, UsageError

TARGET_ENV = "TASKQUEUE_CLI_TARGET"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


# ------------------------------------------------------------------------- redaction
# redact and redact_url come from taskqueue_contract.redaction (re-exported here).

_KNOWN_URLS: list[str] = []


def remember_url(url: str) -> str:
    """Register a URL whose password `scrub` must remove from any message."""
    if url not in _KNOWN_URLS:
        _KNOWN_URLS.append(url)
    return url


def scrub(message: str) -> str:
    """Every known URL's password out of `message` (the last line of defence)."""
    for url in _KNOWN_URLS:
        message = redact(message, url)
    return redact(message, None)


# ---------------------------------------------------------------------- spec reading


@dataclass(frozen=True)
class RedisSource:
    """Where a TaskQueue's Redis URL is: inline, or a Secret key."""

    url: str | None = None
    secret_name: str | None = None
    secret_key: str | None = None


def redis_source(spec: dict[str, Any]) -> RedisSource:
    """Lenient on purpose: an ops tool must work on a TaskQueue the operator refuses."""
    redis_spec = spec.get("redis") or {}
    if redis_spec.get("url"):
        return RedisSource(url=str(redis_spec["url"]))
    ref = (redis_spec.get("urlFrom") or {}).get("secretKeyRef") or {}
    if ref.get("name") and ref.get("key"):
        return RedisSource(secret_name=str(ref["name"]), secret_key=str(ref["key"]))
    raise CliError("the TaskQueue sets neither spec.redis.url nor spec.redis.urlFrom.secretKeyRef")


def key_prefix_of(spec: dict[str, Any]) -> str:
    return str((spec.get("redis") or {}).get("keyPrefix") or DEFAULT_PREFIX)


def queues_of(spec: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(q) for q in spec.get("queues") or ())


def split_queue_args(values: Sequence[str] | None) -> tuple[str, ...]:
    """`--queue a --queue b,c` -> ("a", "b", "c"), first occurrence kept."""
    seen: dict[str, None] = {}
    for value in values or ():
        for name in value.split(","):
            if name.strip():
                seen.setdefault(name.strip(), None)
    return tuple(seen)


def narrow_queues(available: Sequence[str], requested: Sequence[str], name: str) -> tuple[str, ...]:
    """The requested queues, which must belong to the TaskQueue (in its priority order)."""
    if not requested:
        return tuple(available)
    unknown = [q for q in requested if q not in available]
    if unknown:
        raise UsageError(
            f"queue {', '.join(unknown)} is not a queue of TaskQueue {name} "
            f"(its queues: {', '.join(available) or 'none'})"
        )
    return tuple(q for q in available if q in requested)


# ----------------------------------------------------------------------------- target


@dataclass(frozen=True)
class Target:
    """What a command works on. `taskqueue` is the object as read (None with --redis-url)."""

    name: str
    namespace: str | None
    redis_url: str
    key_prefix: str
    queues: tuple[str, ...]
    taskqueue: dict[str, Any] | None = None
    events: tuple[dict[str, Any], ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Target:
        data = json.loads(text)
        data["queues"] = tuple(data["queues"])
        data["events"] = tuple(data.get("events") or ())
        return cls(**data)

    @property
    def title(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@functools.lru_cache(maxsize=4)
def _kube(kubeconfig: str | None, context: str | None) -> tuple[Any, str]:
    """An ApiClient and the namespace kubectl would use (context's, else "default").
    Cached: the TaskQueue's read and a port-forward share one client (and one run of a
    kubeconfig's credential plugin)."""
    import kubernetes  # slow import: only commands that need the cluster pay for it

    configuration = kubernetes.client.Configuration()
    configuration.retries = 1  # fail fast when the API is down: one line, not a minute
    config_file = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    paths = [Path(p).expanduser() for p in config_file.split(os.pathsep) if p]
    if not kubeconfig and not any(p.exists() for p in paths) and _in_cluster():
        kubernetes.config.load_incluster_config(client_configuration=configuration)
        namespace = IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
        return kubernetes.client.ApiClient(configuration), namespace
    try:
        kubernetes.config.load_kube_config(
            config_file=config_file,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        contexts, active = kubernetes.config.list_kube_config_contexts(config_file)
    except (kubernetes.config.ConfigException, OSError) as error:
        raise CliError(f"cannot load the kubeconfig ({config_file}): {error}") from None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    return kubernetes.client.ApiClient(configuration), namespace


def kube_client(kubeconfig: str | None, context: str | None) -> Any:
    """The (cached) ApiClient of this kubeconfig and context."""
    return _kube(kubeconfig, context)[0]


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and IN_CLUSTER_NAMESPACE.exists()


def _api_error(error: Exception, what: str) -> CliError:
    """One line for an API failure: not found, forbidden, unreachable."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(error, ApiException):
        message = error.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(error.body or "{}").get("message") or message
        if error.status == 404:
            return NotFound(f"{what} not found ({message})")
        if error.status in (401, 403):
            return CliError(f"not allowed to read {what}: {message}")
        return CliError(f"reading {what} failed: API error {error.status}: {message}")
    return CliError(f"cannot reach the Kubernetes API to read {what}: {type(error).__name__}")


def did_you_mean(word: str, names: Sequence[str] | None) -> str:
    """ "; did you mean 'x'?" for the names close to `word` (difflib), else ""."""
    close = difflib.get_close_matches(word, sorted(set(names or ())), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def missing_taskqueue_message(
    name: str,
    namespace: str,
    namespace_exists: bool | None,
    namespaces: Sequence[str] | None,
    here: Sequence[str] | None,
    elsewhere: Sequence[str] | None,
) -> str:
    """What to say when TaskQueue `name` is not in `namespace`. Pure. None means "could
    not be read" (RBAC): then the message says less, never something wrong."""
    if namespace_exists is False:
        return f"no such namespace '{namespace}'" + did_you_mean(namespace, namespaces)
    message = f"no TaskQueue '{name}' in namespace '{namespace}'"
    hint = did_you_mean(name, here)
    if hint:
        return message + hint
    if elsewhere:
        others = sorted(set(elsewhere))
        shown = " and ".join(f"'{n}'" for n in others[:3])
        return message + f"; there is one in namespace {shown} (-n {others[0]})"
    if here is not None and not here:
        return message + " (it has no TaskQueues)"
    if here:
        return message + f" (its TaskQueues: {', '.join(sorted(here)[:10])})"
    return message


def _missing_taskqueue(api_client: Any, name: str, namespace: str) -> str:
    """Read what `missing_taskqueue_message` needs; whatever RBAC hides stays None."""
    import kubernetes

    core = kubernetes.client.CoreV1Api(api_client)
    custom = kubernetes.client.CustomObjectsApi(api_client)

    def attempt(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception:  # forbidden, unreachable: say less
            return None

    def exists() -> bool | None:
        from kubernetes.client.exceptions import ApiException

        try:
            core.read_namespace(namespace, _request_timeout=15)
            return True
        except ApiException as error:
            return False if error.status == 404 else None
        except Exception:
            return None

    namespace_exists = exists()
    if namespace_exists is False:
        listed = attempt(lambda: core.list_namespace(_request_timeout=15))
        names = [n.metadata.name for n in listed.items] if listed is not None else None
        return missing_taskqueue_message(name, namespace, False, names, None, None)
    here_listed = attempt(
        lambda: custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _request_timeout=15
        )
    )
    here = (
        [str((i.get("metadata") or {}).get("name")) for i in here_listed.get("items") or []]
        if isinstance(here_listed, dict)
        else None
    )
    everywhere = attempt(
        lambda: custom.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, field_selector=f"metadata.name={name}", _request_timeout=15
        )
    )
    elsewhere = (
        [
            str((i.get("metadata") or {}).get("namespace"))
            for i in everywhere.get("items") or []
            if (i.get("metadata") or {}).get("name") == name
        ]
        if isinstance(everywhere, dict)
        else None
    )
    return missing_taskqueue_message(name, namespace, namespace_exists, None, here, elsewhere)


def resolve_from_cluster(
    name: str,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    with_events: bool = False,
) -> Target:
    import base64

    import kubernetes
    import urllib3

    api_client, default_namespace = _kube(kubeconfig, context)
    namespace = namespace or default_namespace
    custom = kubernetes.client.CustomObjectsApi(api_client)
    core = kubernetes.client.CoreV1Api(api_client)
    failures = (kubernetes.client.exceptions.ApiException, urllib3.exceptions.HTTPError, OSError)
    what = f'TaskQueue "{name}" in namespace "{namespace}"'
    try:
        body = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=15
        )
    except failures as error:
        if getattr(error, "status", None) == 404:
            raise NotFound(_missing_taskqueue(api_client, name, namespace)) from None
        raise _api_error(error, what) from None
    if not isinstance(body, dict):
        raise CliError(f"reading {what} failed: not a JSON object")
    spec = body.get("spec") or {}
    redis_source(spec)  # one clear error when spec.redis names no URL at all

    def secret_value(secret_name: str, key: str, field: str) -> str:
        secret_what = f'Secret "{secret_name}" ({field} of {name}) in namespace "{namespace}"'
        try:
            secret = core.read_namespaced_secret(secret_name, namespace, _request_timeout=15)
        except failures as error:
            raise _api_error(error, secret_what) from None
        data = secret.data or {}
        if key not in data:
            raise NotFound(f'{secret_what} has no key "{key}"')
        return base64.b64decode(data[key]).decode()

    inline, refs = secret_refs(spec.get("redis") or {})
    values = {ref: secret_value(ref.name, ref.key, ref.field) for ref in refs}
    values = {ref: v.strip() if ref.role == URL else v for ref, v in values.items()}
    try:
        url = resolve_url(inline, values)
    except TLSConfigError as error:
        raise CliError(f"spec.redis.tls of {name}: {error}") from None
    events: tuple[dict[str, Any], ...] = ()
    if with_events:
        try:
            listed = core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.kind=TaskQueue,involvedObject.name={name}",
                _request_timeout=15,
            )
            events = tuple(api_client.sanitize_for_serialization(e) for e in listed.items)
        except failures:
            events = ()  # events are a nicety: RBAC may not allow them
    return Target(
        name=name,
        namespace=namespace,
        redis_url=url,
        key_prefix=key_prefix_of(spec),
        queues=queues_of(spec),
        taskqueue={k: body.get(k) for k in ("metadata", "spec", "status")},
        events=events,
    )


# ------------------------------------------------------------------------- key prefix


def target_from_environment() -> Target | None:
    """In a re-executed child: the target its parent resolved."""
    text = os.environ.pop(TARGET_ENV, None)
    if text is None:
        return None
    target = Target.from_json(text)
    if target.key_prefix != RQ_KEY_PREFIX:  # never loop: the child must have the prefix
        raise CliError(f"internal error: child runs with key prefix {RQ_KEY_PREFIX!r}")
    return target


def needs_reexec(target: Target) -> bool:
    return target.key_prefix != RQ_KEY_PREFIX


def reexec(target: Target, argv: Sequence[str]) -> int:
    """Run the same command with RQ_KEY_PREFIX set; stdin/stdout/stderr are shared (TTY)."""
    env = {**os.environ, "RQ_KEY_PREFIX": target.key_prefix, TARGET_ENV: target.to_json()}
    completed = subprocess.run(
        [sys.executable, "-m", "taskqueue_plugin.main", *argv], env=env, check=False
    )
    return completed.returncode


# ------------------------------------------------------------------------------ redis


def connect(
    url: str,
    dial: Callable[[], socket.socket] | None = None,
    via: str = "",
    problem: Callable[[], str | None] | None = None,
) -> redis.Redis:
    """A client that answered PING; every failure is one line without the password.

    With `dial`, every connection's socket comes from it (a port-forward, `via` says
    which) and `problem` may say what the other end reported."""
    options: dict[str, Any] = {}
    if dial is not None:
        from taskqueue_plugin.forward import connection_class

        options = {"connection_class": connection_class(url), "dial": dial}
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=30, **options)
    except ValueError as error:
        raise UsageError(
            f"invalid Redis URL {redact_url(url)}: {redact(str(error), url)}"
        ) from None
    try:
        client.ping()
    except redis.AuthenticationError as error:
        raise RedisUnavailable(
            f"Redis at {redact_url(url)}{via} refused the credentials: {redact(str(error), url)}"
        ) from None
    except (redis.RedisError, OSError) as error:
        client.close()
        detail = problem() if problem else None
        if detail and detail in str(error):
            detail = None  # a refused forward: already the error itself
        raise RedisUnavailable(
            f"cannot reach Redis at {redact_url(url)}{via}: {redact(str(error), url)}"
            + (f" ({redact(detail, url)})" if detail else "")
        ) from None
    return client


def discover_queues(client: redis.Redis, prefix: str) -> tuple[str, ...]:
    """Every queue RQ registered (`<prefix>:queues`), for --redis-url without --queue."""
    keys = Keys(prefix)
    names = (m.decode() if isinstance(m, bytes) else str(m) for m in client.smembers(keys.queues))
    return tuple(sorted({keys.queue_name(name) for name in names}))
