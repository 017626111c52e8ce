"""Passwords out of URLs and of any text that may quote one (errors, logs, status).

String-level on purpose: rebuilding with ``urlunsplit`` rewrites ``unix:///`` URLs.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
# "scheme://user:password@" -> "scheme://user:***@"; a user name alone is no secret.
_USERINFO = re.compile(r"(://[^/@\s:]*:)[^/@\s]+@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#\s]*", re.IGNORECASE)
_SECRET_QUERY_KEYS = {"password"}


def redact_url(url: str) -> str:
    """The URL (or any text) with every userinfo password and ``?password=`` masked."""
    text = _USERINFO.sub(rf"\1{MASK}@", url)
    return _QUERY_PASSWORD.sub(rf"\1{MASK}", text)


def url_password(url: str) -> str | None:
    """The password a URL carries (userinfo or ``?password=``), if any."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return parts.password
    for key, value in parse_qsl(parts.query):
        if key.lower() in _SECRET_QUERY_KEYS and value:
            return value
    return None


def redact(text: str, url: str | None = None) -> str:
    """Any text with passwords removed; with `url`, its password also wherever it appears
    on its own (redis-py and ssl messages quote parts of the URL)."""
    if url:
        text = text.replace(url, redact_url(url))
        password = url_password(url)
        for form in {password, unquote(password)} if password else ():
            if len(form) >= 3:  # shorter ones would garble the message
                text = text.replace(form, MASK)
    return redact_url(text)


# Argument names whose values are secrets whatever they hold (matched case-insensitively,
# anywhere in the name: `db_password`, `apiKey`, `X-Auth-Token`...). A bare `key` is not
# one: `key="AAPL"` names a symbol far more often than a credential.
SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api_?key|access_?key|private_?key|auth|credential"
    r"|signature|cookie|session",
    re.IGNORECASE,
)
ARGUMENT_TEXT = 60
"""Longest shown text of one argument value (then "…")."""
CALL_TEXT = 240
"""Longest shown call as a whole."""


def _shown_value(value: object, depth: int = 0) -> str:
    """One argument for display: URL passwords masked, secret-named keys masked, cut short."""
    if isinstance(value, dict) and depth < 2:
        items = []
        for key, inner in list(value.items())[:10]:
            shown = MASK if SECRET_NAME.search(str(key)) else _shown_value(inner, depth + 1)
            items.append(f"{key!r}: {shown}")
        more = ", …" if len(value) > 10 else ""
        return "{" + ", ".join(items) + more + "}"
    if isinstance(value, list | tuple) and depth < 2:
        inner_items = [_shown_value(item, depth + 1) for item in list(value)[:10]]
        more = ", …" if len(value) > 10 else ""
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        return open_ + ", ".join(inner_items) + more + close
    text = redact_url(repr(value))
    return text if len(text) <= ARGUMENT_TEXT else text[: ARGUMENT_TEXT - 1] + "…"


def redact_call(function: str, args: object, kwargs: object) -> str:
    """``fn('AAPL', 3, api_key=***)`` for a dashboard that anyone with port-forward reads.

    Job arguments can carry credentials: values of secret-named keyword arguments (and
    dict keys) are masked, passwords in URLs are masked, long values are cut.
    Undecodable arguments show as ``…``.
    """
    parts: list[str] = []
    if isinstance(args, list | tuple):
        parts.extend(_shown_value(arg) for arg in args)
    elif args is not None:
        parts.append("…")
    if isinstance(kwargs, dict):
        for name, value in kwargs.items():
            shown = MASK if SECRET_NAME.search(str(name)) else _shown_value(value)
            parts.append(f"{name}={shown}")
    elif kwargs is not None:
        parts.append("…")
    call = f"{function}({', '.join(parts)})"
    return call if len(call) <= CALL_TEXT else call[: CALL_TEXT - 2] + "…)"
