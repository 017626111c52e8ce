"""What every command gets: the target, a lazy Redis client, the selected queues, output."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TextIO

import redis

from taskqueue_plugin.forward import RedisLink
from taskqueue_plugin.resolve import Target, connect, discover_queues, narrow_queues


@dataclass
class Context:
    target: Target
    requested_queues: Sequence[str] = ()
    output: str = "table"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    link: RedisLink | None = None
    """How to reach the TaskQueue's Redis (direct or port-forward); None: --redis-url."""

    @cached_property
    def client(self) -> redis.Redis:
        """Connected on first use, so `status` can show the TaskQueue while Redis is down."""
        if self.link is None:
            return connect(self.target.redis_url)
        return connect(self.target.redis_url, self.link.dial, self.link.via, self.link.problem)

    @property
    def dial(self) -> Callable[[], socket.socket] | None:
        """The port-forward's dial for another client (None: dial the URL's host)."""
        return self.link.dial if self.link is not None else None

    @cached_property
    def queues(self) -> tuple[str, ...]:
        """The TaskQueue's queues (or, with --redis-url, RQ's), narrowed by --queue."""
        available = self.target.queues
        if not available:
            if self.target.taskqueue is None and self.requested_queues:
                return tuple(self.requested_queues)  # --redis-url --queue: take them as given
            available = discover_queues(self.client, self.target.key_prefix)
        return narrow_queues(available, self.requested_queues, self.target.title)

    @property
    def prefix(self) -> str:
        return self.target.key_prefix

    @property
    def json(self) -> bool:
        return self.output == "json"

    def emit(self, text: str = "") -> None:
        print(text, file=self.out)

    def close(self) -> None:
        """The client's connections, then every port-forward stream and its thread."""
        try:
            if "client" in self.__dict__:
                self.client.close()
        finally:
            if self.link is not None:
                self.link.close()
