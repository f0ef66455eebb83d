"""Reading an untrusted request body: capped while it streams, and with a deadline.

Both public POST routes (the Alertmanager webhook and Slack's ``/slack/actions``) read through
``read_capped`` before anything parses the body: a declared ``Content-Length`` over the cap is
refused without reading, a chunked body is refused as soon as it passes the cap (never buffered
whole), and a body that trickles in slower than the deadline is refused too.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import Message

BODY_READ_SECONDS = 10.0  # a real webhook or Slack click arrives in milliseconds


class BodyRefused(Exception):
    """The body was not read: too large (413) or too slow (408)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def read_capped(request: Request, limit: int, deadline: float | None = None) -> bytes:
    """The whole body, at most ``limit`` bytes, read within ``deadline`` seconds; else BodyRefused."""
    deadline = BODY_READ_SECONDS if deadline is None else deadline
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyRefused(413, f"body larger than {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyRefused(413, f"body larger than {limit} bytes")
    except TimeoutError:
        raise BodyRefused(408, f"body not received within {deadline:g}s") from None
    return bytes(body)


def with_body(request: Request, body: bytes) -> Request:
    """A fresh request over the same scope that yields ``body`` (for a handler that reads it again)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)
