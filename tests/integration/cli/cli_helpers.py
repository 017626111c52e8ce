"""Running the plugin in-process against the session's real Redis (no cluster)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from taskqueue_plugin.main import main


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """`kubectl taskqueue <args> --redis-url URL --queue Q...` with captured output."""

    def __init__(self, capsys: pytest.CaptureFixture[str], url: str, queues: list[str]) -> None:
        self.capsys = capsys
        self.url = url
        self.queues = queues

    def __call__(self, *args: str) -> Ran:
        self.capsys.readouterr()
        queue_args = [arg for q in self.queues for arg in ("--queue", q)]
        code = main([*args, "--redis-url", self.url, *queue_args])
        captured = self.capsys.readouterr()
        return Ran(code, captured.out, captured.err)
