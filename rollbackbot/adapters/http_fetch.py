"""Plain HTTP GETs of evidence from the model's side (the policy's requestsUrl and snapshotUrl)."""

from __future__ import annotations

import httpx

from rollbackbot.errors import PermanentError, TransientError
from rollbackbot.redact import redact_url

FETCH_TIMEOUT_SECONDS = 10.0


async def fetch_capped(url: str, cap: int, *, transport: httpx.AsyncBaseTransport | None = None) -> tuple[bytes, bool]:
    """GET ``url``, keeping at most ``cap`` bytes; returns (body, truncated)."""
    try:
        async with httpx.AsyncClient(
            timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False, transport=transport
        ) as client:
            async with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise PermanentError(f"GET {redact_url(url)} answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > cap:
                        return bytes(body[:cap]), True
                return bytes(body), False
    except httpx.HTTPError as exc:
        raise TransientError(f"GET {redact_url(url)} failed: {type(exc).__name__}") from None
