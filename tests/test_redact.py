"""One URL redaction everywhere a URL is shown: no userinfo, no query string."""

from __future__ import annotations

import json
import logging
import sys

import httpx
import pytest

from rollbackbot.adapters.git.plumbing import redact
from rollbackbot.adapters.http_fetch import fetch_capped
from rollbackbot.errors import PermanentError, TransientError
from rollbackbot.logs import JsonFormatter
from rollbackbot.redact import redact_url, redact_urls

SECRET_URL = "https://bot:hunter2@observer:9100/forensics/requests?limit=1000&token=s3cr3t#frag"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://observer:9100/forensics/requests", "http://observer:9100/forensics/requests"),
        (SECRET_URL, "https://***@observer:9100/forensics/requests?***"),
        ("https://user:p@ss@host/x", "https://***@host/x"),
        ("s3://bucket/prefix/", "s3://bucket/prefix/"),
        ("git://127.0.0.1:9418/gitops.git?private_token=abc", "git://127.0.0.1:9418/gitops.git?***"),
        ("https://token@host", "https://***@host"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_urls_inside_text_are_redacted_and_the_rest_kept() -> None:
    text = f"GET {SECRET_URL} failed; retrying http://a/b?x=1 and ssh://git@host/repo"
    assert redact_urls(text) == (
        "GET https://***@observer:9100/forensics/requests?*** failed; retrying http://a/b?*** and ssh://***@host/repo"
    )


def test_git_errors_lose_the_query_string_too() -> None:
    assert "s3cr3t" not in redact(f"fatal: unable to access '{SECRET_URL}'")


@pytest.mark.parametrize("status", [404, 500])
async def test_an_evidence_url_with_a_token_never_reaches_the_error(status: int) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=b"no"))
    with pytest.raises(PermanentError) as raised:
        await fetch_capped(SECRET_URL, 10, transport=transport)
    assert "s3cr3t" not in str(raised.value) and "hunter2" not in str(raised.value)
    assert "observer:9100/forensics/requests" in str(raised.value)


async def test_a_failing_evidence_url_with_a_token_never_reaches_the_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransientError) as raised:
        await fetch_capped(SECRET_URL, 10, transport=httpx.MockTransport(refuse))
    assert "s3cr3t" not in str(raised.value) and "hunter2" not in str(raised.value)


def test_log_lines_never_carry_url_credentials() -> None:
    record = logging.LogRecord("rollbackbot.x", logging.WARNING, __file__, 1, "fetch %s failed", (SECRET_URL,), None)
    record.url = SECRET_URL
    try:
        raise RuntimeError(f"cannot reach {SECRET_URL}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "s3cr3t" not in line and "hunter2" not in line
    assert json.loads(line)["url"] == "https://***@observer:9100/forensics/requests?***"
