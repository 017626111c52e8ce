"""One redactor: no password reaches a status, an Event, a log line or the terminal."""

from __future__ import annotations

import pytest
from taskqueue_contract.redaction import redact, redact_url, url_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter22@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://user:p%40ss@redis:6380", "rediss://user:***@redis:6380"),
        ("redis://redis:6379/0?password=hunter22&db=1", "redis://redis:6379/0?password=***&db=1"),
        ("redis://alice@redis:6379", "redis://alice@redis:6379"),
        ("unix:///run/redis.sock?password=x1", "unix:///run/redis.sock?password=***"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_removes_the_password_wherever_it_is_quoted() -> None:
    url = "redis://:hunter22@redis:6379/0"
    message = f"Error connecting to {url}: AUTH hunter22 refused"
    assert "hunter22" not in redact(message, url)
    assert url_password("redis://r?password=abc") == "abc"
    assert url_password("redis://:p%40ss@r") == "p%40ss"
    assert "p@ss" not in redact("AUTH p@ss", "redis://:p%40ss@r")
    assert redact("see redis://x:other-secret@host/0") == "see redis://x:***@host/0"
