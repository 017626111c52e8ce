"""TLS material for rediss:// URLs: now `taskqueue_contract.tls` (and `.env` for names).

Kept only for `taskqueue_worker.config`, which still imports from here; once it imports
`taskqueue_contract.tls`, delete this module.
"""

from __future__ import annotations

from taskqueue_contract.env import CLIENT_CERTIFICATE_KEYS, TLS_ENV
from taskqueue_contract.env import TLS_CA_CERT as CA_ENV
from taskqueue_contract.env import TLS_CLIENT_CERT as CLIENT_CERT_ENV
from taskqueue_contract.env import TLS_CLIENT_KEY as CLIENT_KEY_ENV
from taskqueue_contract.tls import (
    TLSConfigError,
    tls_directory,
    url_with_tls,
    url_with_tls_files,
    url_with_tls_from_env,
    write_private,
)

__all__ = [
    "CA_ENV",
    "CLIENT_CERTIFICATE_KEYS",
    "CLIENT_CERT_ENV",
    "CLIENT_KEY_ENV",
    "TLS_ENV",
    "TLSConfigError",
    "tls_directory",
    "url_with_tls",
    "url_with_tls_files",
    "url_with_tls_from_env",
    "write_private",
]
