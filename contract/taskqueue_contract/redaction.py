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
