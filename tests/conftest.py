"""Shared fixtures. Servers are real processes started here and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from testbed.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole session; tests flush what they use."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on a freshly flushed database of the session's Redis."""
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()
