"""Size-capped evidence downloads: truncation is reported, failures become our error types."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.http_fetch import fetch_capped
from rollbackbot.errors import PermanentError, TransientError


def _serving(status: int, body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body))


async def test_small_body_whole() -> None:
    assert await fetch_capped("http://observer/r", 100, transport=_serving(200, b"abc")) == (b"abc", False)


async def test_large_body_truncated_at_the_cap() -> None:
    body, truncated = await fetch_capped("http://observer/r", 10, transport=_serving(200, b"x" * 1000))
    assert (body, truncated) == (b"x" * 10, True)


async def test_error_status_is_permanent() -> None:
    with pytest.raises(PermanentError, match="404"):
        await fetch_capped("http://observer/r", 10, transport=_serving(404, b"no"))


async def test_transport_failure_is_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransientError, match="ConnectError"):
        await fetch_capped("http://observer/r", 10, transport=httpx.MockTransport(refuse))


async def test_the_forensics_token_goes_as_a_bearer_header_and_never_into_errors() -> None:
    seen: list[str | None] = []

    def observer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(404 if request.url.path == "/gone" else 200, content=b"{}")

    token = SecretStr("forensics-token-0123456789")
    transport = httpx.MockTransport(observer)
    assert await fetch_capped("http://observer/forensics/requests", 10, transport=transport, token=token)
    with pytest.raises(PermanentError) as failed:
        await fetch_capped("http://observer/gone", 10, transport=transport, token=token)
    assert "forensics-token" not in str(failed.value)
    await fetch_capped("http://observer/forensics/requests", 10, transport=transport)
    assert seen == ["Bearer forensics-token-0123456789", "Bearer forensics-token-0123456789", None]
