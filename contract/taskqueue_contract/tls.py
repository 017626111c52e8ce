"""A Redis URL from a TaskQueue's ``spec.redis``: the URL (inline or a Secret) plus TLS.

The operator hands the PEMs to pods as environment variables (from the TaskQueue's
Secrets), which work the same on every kubelet. Python's `ssl` loads a client
certificate only from files, so the PEMs are written to private files and named in the
URL's query: redis-py passes `ssl_ca_certs`, `ssl_certfile` and `ssl_keyfile` from the
query to its SSL connection, so every client built from the URL (RQ's work horse, the
health probe, the operator's recovery subprocess, the plugin) gets the same TLS settings.

`secret_refs(spec_redis)` says which Secret keys to read (pure); the caller reads them
its own way (the operator asynchronously, the plugin synchronously) and gives the
values to `resolve_url`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from taskqueue_contract.env import CLIENT_CERTIFICATE_KEYS, TLS_ENV
from taskqueue_contract.failures import TLSConfigError as TLSConfigError

URL = "url"
"""`SecretRef.role` of the Redis URL itself; the other roles are redis-py arguments."""


@dataclass(frozen=True)
class SecretRef:
    """One Secret key to read: `role` is `URL` or the redis-py argument its PEM is for."""

    field: str
    """The spec field that names it, for messages: ``spec.redis.tls.caFrom``."""
    name: str
    key: str
    role: str


def secret_refs(spec_redis: Mapping[str, Any]) -> tuple[str | None, tuple[SecretRef, ...]]:
    """(the inline URL or None, the Secret keys to read) of a ``spec.redis`` mapping
    (camelCase, as in the manifest; lenient: the plugin must work on any TaskQueue)."""
    refs: list[SecretRef] = []
    url = spec_redis.get("url") or None
    if url is None:
        ref = (spec_redis.get("urlFrom") or {}).get("secretKeyRef") or {}
        if ref.get("name") and ref.get("key"):
            refs.append(SecretRef("spec.redis.urlFrom", str(ref["name"]), str(ref["key"]), URL))
    tls = spec_redis.get("tls") or {}
    ca = (tls.get("caFrom") or {}).get("secretKeyRef") or {}
    if ca.get("name") and ca.get("key"):
        refs.append(
            SecretRef("spec.redis.tls.caFrom", str(ca["name"]), str(ca["key"]), "ssl_ca_certs")
        )
    client = (tls.get("clientCertificateSecretRef") or {}).get("name")
    if client:
        field = "spec.redis.tls.clientCertificateSecretRef"
        refs += [
            SecretRef(field, str(client), key, argument)
            for argument, key in CLIENT_CERTIFICATE_KEYS.items()
        ]
    return (str(url) if url is not None else None), tuple(refs)


def resolve_url(
    url: str | None, values: Mapping[SecretRef, str], directory: Path | None = None
) -> str:
    """The URL (inline, or the value of the `URL` ref) with the TLS PEMs' files added."""
    pems = {ref.role: value for ref, value in values.items() if ref.role != URL}
    if url is None:
        found = [value.strip() for ref, value in values.items() if ref.role == URL]
        if not found:
            raise ValueError("spec.redis sets neither url nor urlFrom.secretKeyRef")
        url = found[0]
    return url_with_tls(url, pems, directory)


def url_with_tls_files(url: str, files: Mapping[str, Path]) -> str:
    """`url` with the files (keyed by redis-py argument) added to its query."""
    if not files:
        return url
    if not url.startswith("rediss://"):
        scheme = url.split("://", 1)[0]
        raise TLSConfigError(f"TLS certificates are configured but the URL is {scheme}://")
    separator = "&" if "?" in url else "?"
    return url + separator + urlencode({key: str(path) for key, path in sorted(files.items())})


def write_private(pem: str, directory: Path) -> Path:
    """The PEM in a 0600 file named by its content: rewrites are no-ops, rotations new files."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{hashlib.sha256(pem.encode()).hexdigest()[:24]}.pem"
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")  # created 0600
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        os.replace(temporary, path)
    return path


def tls_directory() -> Path:
    """Under TMPDIR (the pod's /tmp emptyDir: the root filesystem is read-only)."""
    return Path(tempfile.gettempdir()) / f"taskqueue-redis-tls-{os.getuid()}"


def url_with_tls(url: str, pems: Mapping[str, str], directory: Path | None = None) -> str:
    """`url` using the PEMs (keyed by redis-py argument, empty ones ignored)."""
    place = directory or tls_directory()
    files = {key: write_private(pem, place) for key, pem in pems.items() if pem.strip()}
    return url_with_tls_files(url, files)


def url_with_tls_from_env(url: str, env: Mapping[str, str]) -> str:
    """`url` using the PEMs the operator put in the pod's environment."""
    return url_with_tls(url, {arg: env.get(name, "") for name, arg in TLS_ENV.items()})
