"""Names the operator writes into pod specs and the worker image reads.

Environment variables of worker pods (``reconcile/workers.py``) and schedule pods
(``reconcile/schedules.py``), set by the operator or the user, read by
``taskqueue_worker``; and the keys of the Secrets the operator reads for them.
"""

from __future__ import annotations

# --- Redis (both pod kinds) ---
REDIS_URL = "REDIS_URL"
"""Required. ``redis://``, ``rediss://`` or ``unix://`` URL (by value or from a Secret)."""
KEY_PREFIX = "RQ_KEY_PREFIX"
"""rq's key prefix, honoured by rq itself at import (``spec.redis.keyPrefix``)."""
TLS_CA_CERT = "REDIS_TLS_CA_CERT"
TLS_CLIENT_CERT = "REDIS_TLS_CLIENT_CERT"
TLS_CLIENT_KEY = "REDIS_TLS_CLIENT_KEY"
"""PEMs of ``spec.redis.tls`` (from Secrets); the worker writes them to 0600 files."""

# --- the pod (downward API) ---
POD_NAME = "POD_NAME"
POD_NAMESPACE = "POD_NAMESPACE"
TMPDIR = "TMPDIR"

# --- worker pods ---
TASKQUEUE_NAME = "TASKQUEUE_NAME"
WORKER_CLASS = "TASKQUEUE_WORKER_CLASS"
HEALTH_FILE = "TASKQUEUE_HEALTH_FILE"
HEALTH_INTERVAL = "TASKQUEUE_HEALTH_INTERVAL"
LOG_LEVEL = "TASKQUEUE_LOG_LEVEL"
PRELOAD = "TASKQUEUE_PRELOAD"
RESULT_URI = "TASKQUEUE_RESULT_URI"
RESULT_TTL = "TASKQUEUE_RESULT_TTL"
PROCESSES = "TASKQUEUE_PROCESSES"
"""spec.worker.processes: the work loops one pod runs; set only when more than 1."""
JOB_TIMEOUT = "TASKQUEUE_JOB_TIMEOUT"
"""spec.worker.jobTimeout in whole seconds: the default and upper bound of a job's timeout."""

# --- schedule pods ---
JOB_NAME = "JOB_NAME"
IDEMPOTENCY_KEY = "TASKQUEUE_IDEMPOTENCY_KEY"

# --- Secrets ---
CLIENT_CERTIFICATE_KEYS = {"ssl_certfile": "tls.crt", "ssl_keyfile": "tls.key"}
"""redis-py argument -> key of the client certificate's ``kubernetes.io/tls`` Secret."""
TLS_ENV = {
    TLS_CA_CERT: "ssl_ca_certs",
    TLS_CLIENT_CERT: "ssl_certfile",
    TLS_CLIENT_KEY: "ssl_keyfile",
}
"""Environment variable -> the redis-py connection argument its PEM's file goes to."""
