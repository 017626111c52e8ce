"""Where the Redis URL comes from, and that its password never shows."""

from __future__ import annotations

import pytest
from taskqueue_plugin.errors import CliError, UsageError
from taskqueue_plugin.resolve import (
    RedisSource,
    Target,
    key_prefix_of,
    narrow_queues,
    queues_of,
    redact,
    redact_url,
    redis_source,
    remember_url,
    scrub,
    split_queue_args,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter22@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://default:hunter22@redis:6379/0", "redis://default:***@redis:6379/0"),
        ("rediss://u:p%40ss@redis.ns.svc:6380/2", "rediss://u:***@redis.ns.svc:6380/2"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis://redis:6379/0?password=hunter22&db=1", "redis://redis:6379/0?password=***&db=1"),
        ("unix:///run/redis.sock?password=hunter22", "unix:///run/redis.sock?password=***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_in_messages() -> None:
    url = "redis://:hunter22@redis:6379/0"
    message = f"Error connecting to {url}: hunter22 refused"
    assert "hunter22" not in redact(message, url)
    assert redact("see redis://x:other-secret@host/0", None) == "see redis://x:***@host/0"
    remember_url("redis://:zebra-77@10.0.0.1/0")
    assert "zebra-77" not in scrub("AUTH zebra-77 failed")


def test_redis_source() -> None:
    assert redis_source({"redis": {"url": "redis://r:6379/0"}}) == RedisSource(
        url="redis://r:6379/0"
    )
    ref = {"redis": {"urlFrom": {"secretKeyRef": {"name": "redis-url", "key": "url"}}}}
    assert redis_source(ref) == RedisSource(secret_name="redis-url", secret_key="url")
    with pytest.raises(CliError, match="neither"):
        redis_source({"redis": {}})
    with pytest.raises(CliError, match="neither"):
        redis_source({})


def test_spec_defaults() -> None:
    assert key_prefix_of({}) == "rq"
    assert key_prefix_of({"redis": {"keyPrefix": "jobs"}}) == "jobs"
    assert queues_of({"queues": ["high", "default"]}) == ("high", "default")


def test_queue_arguments() -> None:
    assert split_queue_args(["a", "b,c", "a", " ,d"]) == ("a", "b", "c", "d")
    assert split_queue_args(None) == ()
    available = ("high", "default", "low")
    assert narrow_queues(available, (), "ns/tq") == available
    assert narrow_queues(available, ("low", "high"), "ns/tq") == ("high", "low")
    with pytest.raises(UsageError, match="nope is not a queue of TaskQueue ns/tq"):
        narrow_queues(available, ("nope",), "ns/tq")


def test_target_round_trips_for_the_child_process() -> None:
    target = Target(
        name="tq",
        namespace="ns",
        redis_url="redis://:pw@r/0",
        key_prefix="jobs",
        queues=("a", "b"),
        taskqueue={"status": {"readyReplicas": 2}},
        events=({"reason": "Scaled"},),
    )
    assert Target.from_json(target.to_json()) == target
    assert target.title == "ns/tq"
