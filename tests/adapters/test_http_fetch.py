"""Size-capped evidence downloads: truncation is reported, failures become our error types."""

from __future__ import annotations

import httpx
import pytest

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
