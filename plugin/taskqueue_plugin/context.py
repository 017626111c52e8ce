"""What every command gets: the target, a lazy Redis client, the selected queues, output."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TextIO

import redis

from taskqueue_plugin.resolve import Target, connect, discover_queues, narrow_queues


@dataclass
class Context:
    target: Target
    requested_queues: Sequence[str] = ()
    output: str = "table"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @cached_property
    def client(self) -> redis.Redis:
        """Connected on first use, so `status` can show the TaskQueue while Redis is down."""
        return connect(self.target.redis_url)

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
        if "client" in self.__dict__:
            self.client.close()
