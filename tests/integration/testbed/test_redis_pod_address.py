"""A test Redis listens where pods reach this machine too (kind's bridge; here 127.0.0.2,
since tests talk to 127.0.0.0/8 only), over TLS as well, with that address in its certificate."""

from __future__ import annotations

from pathlib import Path

import redis
from testbed.redis_server import RedisServer, RedisTLS

POD_HOST = "127.0.0.2"


def test_plain_redis_answers_on_both_addresses() -> None:
    server = RedisServer(pod_host=POD_HOST).start()
    try:
        assert POD_HOST in server.pod_url
        for url in (server.url, server.pod_url):
            with redis.Redis.from_url(url) as client:
                assert client.ping()
    finally:
        server.cleanup()


def test_tls_certificate_names_the_pods_address(tmp_path: Path) -> None:
    tls = RedisTLS(tmp_path, pod_host=POD_HOST)
    server = RedisServer(tls=tls, pod_host=POD_HOST).start()
    try:
        with redis.Redis.from_url(
            server.pod_url, ssl_check_hostname=True, **tls.client_kwargs()
        ) as client:
            assert client.ping()
    finally:
        server.cleanup()
