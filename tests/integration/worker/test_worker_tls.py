"""Workers and the enqueue entrypoint over rediss:// to a real Redis that serves TLS only
and requires a client certificate, with the PEMs in the environment as the operator sets."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rq.job import Job
from testbed.redis_server import RedisServer, RedisTLS
from worker_processes import WorkerProcess, wait_for

pytestmark = pytest.mark.integration

Enqueue = Callable[..., subprocess.CompletedProcess[str]]
NOOP = ("--function", "taskqueue_worker.examples.noop", "--queue", "secure")


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tls=RedisTLS(tmp_path_factory.mktemp("redis-tls"))).start()
    try:
        yield server
    finally:
        server.cleanup()


def tls_env(server: RedisServer, **overrides: str) -> dict[str, str]:
    assert server.tls is not None
    env = {
        "REDIS_URL": server.url,
        "REDIS_TLS_CA_CERT": server.tls.pem("ca.crt"),
        "REDIS_TLS_CLIENT_CERT": server.tls.pem("client.crt"),
        "REDIS_TLS_CLIENT_KEY": server.tls.pem("client.key"),
    }
    return env | overrides


def test_a_job_enqueued_and_run_over_tls_with_a_client_certificate(
    tls_redis: RedisServer,
    start_worker: Callable[..., WorkerProcess],
    enqueue: Enqueue,
    tmp_path: Path,
) -> None:
    env = tls_env(tls_redis)
    worker = start_worker("secure", **env)
    worker.wait_ready()
    done = enqueue(*NOOP, **env)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    client = tls_redis.client()
    wait_for(lambda: Job.fetch(job_id, connection=client).get_status() == "finished", 30, "job")
    # The client key was written for redis-py as a private file, never world-readable.
    written = list(tmp_path.glob("taskqueue-redis-tls-*/*.pem"))
    assert len(written) == 3, written
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)


def test_an_untrusted_server_certificate_is_a_one_line_error(
    tls_redis: RedisServer,
    start_worker: Callable[..., WorkerProcess],
    enqueue: Enqueue,
    tmp_path: Path,
) -> None:
    other_ca = RedisTLS(tmp_path / "other-ca")  # a CA that did not sign Redis's certificate
    env = tls_env(tls_redis, REDIS_TLS_CA_CERT=other_ca.pem("ca.crt"))
    worker = start_worker("secure", **env)
    assert worker.wait(timeout=30) != 0
    assert "CERTIFICATE_VERIFY_FAILED" in worker.output()
    assert "Traceback" not in worker.output()
    refused = enqueue(*NOOP, **env)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_certificates_for_a_plain_redis_url_are_refused(
    enqueue: Enqueue, tls_redis: RedisServer
) -> None:
    env = tls_env(tls_redis, REDIS_URL=tls_redis.url.replace("rediss://", "redis://"))
    refused = enqueue(*NOOP, **env)
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        "taskqueue-enqueue: REDIS_TLS_*: TLS certificates are configured but the URL is redis://"
    ), refused.stderr
