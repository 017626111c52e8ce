"""A TaskQueue with its own RQ key prefix: the plugin re-runs itself with RQ_KEY_PREFIX."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis
from taskqueue_plugin.main import main
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration
PREFIX = "tqcli"
FAIL_UNDER_PREFIX = """
import sys, redis
from rq import Queue, SimpleWorker
connection = redis.Redis.from_url(sys.argv[1])
queue = Queue("pq", connection=connection)
for i in range(3):
    queue.enqueue("taskqueue_worker.examples.fail", f"prefixed {i}")
SimpleWorker([queue], connection=connection).work(burst=True)
"""


def test_list_and_requeue_under_another_prefix(
    capfd: pytest.CaptureFixture[str], redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    subprocess.run(
        [sys.executable, "-c", FAIL_UNDER_PREFIX, redis_server.url],
        env={**os.environ, "RQ_KEY_PREFIX": PREFIX},
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert redis_client.zcard(f"{PREFIX}:failed:pq") == 3
    assert not redis_client.exists("rq:failed:pq")
    base = ["--redis-url", redis_server.url, "--key-prefix", PREFIX]
    capfd.readouterr()

    # The child process writes to the same file descriptors: capfd, not capsys.
    assert main(["dlq", "list", "tq", *base, "-o", "json"]) == 0
    listed = json.loads(capfd.readouterr().out)
    assert listed["total"] == 3
    assert sorted(i["exception"] for i in listed["items"]) == [
        f"RuntimeError: prefixed {i}" for i in range(3)
    ]

    assert main(["dlq", "requeue", "tq", "--all", *base]) == 0
    assert capfd.readouterr().out.startswith("requeued 3 failed job(s)")
    assert redis_client.zcard(f"{PREFIX}:failed:pq") == 0
    assert redis_client.llen(f"{PREFIX}:queue:pq") == 3
    assert not redis_client.exists("rq:queue:pq")

    assert main(["dlq", "show", "tq", "not-there", *base]) == 3  # the child's exit code
    assert 'no job "not-there"' in capfd.readouterr().err
