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


def test_redact_call_masks_secret_named_arguments_and_url_passwords() -> None:
    from taskqueue_contract.redaction import redact_call

    shown = redact_call(
        "app.tasks.sync",
        ("AAPL", "postgres://app:hunter22@db/x", {"api_key": "k-123", "days": 3}),
        {"auth_token": "s3cr3t", "DB_Password": "pw", "key": "AAPL", "limit": 10},
    )
    for secret in ("hunter22", "k-123", "s3cr3t", "'pw'"):
        assert secret not in shown, shown
    assert shown.startswith("app.tasks.sync('AAPL', 'postgres://app:***@db/x', ")
    assert "{'api_key': ***, 'days': 3}" in shown
    assert "auth_token=***" in shown and "DB_Password=***" in shown
    assert "key='AAPL'" in shown and "limit=10" in shown


def test_redact_call_cuts_long_values_and_calls() -> None:
    from taskqueue_contract.redaction import ARGUMENT_TEXT, CALL_TEXT, redact_call

    shown = redact_call("f", ["x" * 500], {})
    assert len(shown) <= ARGUMENT_TEXT + 4 and shown.endswith("…)")
    many = redact_call("f", list(range(10_000)), {f"k{i}": i for i in range(100)})
    assert len(many) <= CALL_TEXT and many.endswith("…)")
    assert redact_call("f", None, None) == "f()"
    assert redact_call("f", "not a tuple", "nor a dict") == "f(…, …)"
