"""TLS material for rediss:// URLs, shared by workers, schedules, the operator and the plugin.

The operator hands the PEMs to pods as environment variables (from the TaskQueue's
Secrets), which work the same on every kubelet. Python's `ssl` loads a client
certificate only from files, so the PEMs are written to private files and named in the
URL's query: redis-py passes `ssl_ca_certs`, `ssl_certfile` and `ssl_keyfile` from the
query to its SSL connection, so every client built from the URL (RQ's work horse, the
health probe, the operator's recovery subprocess) gets the same TLS settings.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

CA_ENV = "REDIS_TLS_CA_CERT"
CLIENT_CERT_ENV = "REDIS_TLS_CLIENT_CERT"
CLIENT_KEY_ENV = "REDIS_TLS_CLIENT_KEY"
# environment variable -> redis-py connection argument
TLS_ENV = {CA_ENV: "ssl_ca_certs", CLIENT_CERT_ENV: "ssl_certfile", CLIENT_KEY_ENV: "ssl_keyfile"}
# redis-py connection argument -> key of the client certificate's kubernetes.io/tls Secret
CLIENT_CERTIFICATE_KEYS = {"ssl_certfile": "tls.crt", "ssl_keyfile": "tls.key"}


class TLSConfigError(ValueError):
    """TLS material given for a URL that cannot use it."""


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
