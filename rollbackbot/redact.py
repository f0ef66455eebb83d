"""The one URL redaction used wherever a URL is shown: errors, events, logs, chat, API answers.

A URL may carry a credential in its userinfo (``https://user:token@host``) or its query string
(``?token=…``, a policy's ``forensics.requestsUrl``); both are replaced by ``***``, the scheme,
host and path stay so a reader still knows which endpoint failed.
"""

from __future__ import annotations

import re

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_USERINFO = re.compile(r"^([^:/?#]+://)[^/?#]*@")
HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` without credentials: userinfo and the query string become ``***``, the fragment goes."""
    shown = _USERINFO.sub(rf"\1{HIDDEN}@", url, count=1)
    shown = shown.split("#", 1)[0]
    base, has_query, _query = shown.partition("?")
    return f"{base}?{HIDDEN}" if has_query else base


def redact_urls(text: str) -> str:
    """``text`` with every URL in it passed through ``redact_url`` (for error messages and log lines)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)
