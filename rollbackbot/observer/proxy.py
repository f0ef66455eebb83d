"""The request path: forward every request at once, copy the exchange into a bounded queue.

No scoring happens here. Bytes pass through unchanged in both directions (only hop-by-hop headers
are dropped, as any HTTP proxy must); response chunks, SSE included, are written to the client as
they arrive, so the time to first byte does not change. After the response is complete, a copy of
the exchange goes into the queue with ``put_nowait``: when the queue is full the copy is dropped and
counted (``model_observer_queue_dropped_total``), never waited for. Upstream error responses pass
through unchanged; an unreachable upstream answers 502 and a timeout before the response 504.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from typing import Any

import aiohttp
from aiohttp import web

from rollbackbot.observer.config import EndpointConfig, ObserverSettings
from rollbackbot.observer.exporter import ProxyCounters
from rollbackbot.observer.traffic import Exchange, route_kind

log = logging.getLogger("rollbackbot.observer.proxy")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
MAX_REQUEST_BYTES = 64 << 20
CONNECT_TIMEOUT = 10.0


def _forwardable(headers: Any) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers.items() if name.lower() not in HOP_BY_HOP]


class Proxy:
    """The reverse proxy of one endpoint; ``copies`` is the (swappable) queue to the scoring worker."""

    def __init__(
        self, settings: ObserverSettings, config: EndpointConfig, counters: ProxyCounters, copies: Any
    ) -> None:
        self.settings = settings
        self.config = config
        self.counters = counters
        self.copies = copies
        self.upstream = settings.upstream.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the upstream connection pool (keep-alive)."""
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=self.settings.upstream_timeout
        )
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        """Close the upstream connection pool."""
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        """The aiohttp application carrying only model traffic."""
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward one request and stream the answer back; queue a copy when it is scorable."""
        body = await request.read()
        kind = route_kind(request.path, self.config.json_models) if request.method == "POST" else None
        started = time.perf_counter()
        assert self._session is not None
        try:
            upstream = await self._session.request(
                request.method,
                self.upstream + request.raw_path,
                headers=_forwardable(request.headers),
                data=body if body else None,
                allow_redirects=False,
            )
        except TimeoutError:
            return self._local_error(kind, 504, "upstream timed out")
        except aiohttp.ClientError:
            return self._local_error(kind, 502, "upstream unreachable")
        try:
            response, copied, complete = await self._relay(request, upstream, copy=kind is not None)
        finally:
            upstream.release()
        if kind is None:
            self.counters.unscanned("unsupported")
            return response
        self.counters.request(upstream.status)
        if complete:
            self._queue_copy(request, body, upstream, copied, time.perf_counter() - started)
        return response

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, *, copy: bool
    ) -> tuple[web.StreamResponse, bytearray | None, bool]:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in _forwardable(upstream.headers):
            response.headers.add(name, value)
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        copied: bytearray | None = bytearray() if copy else None
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                if copied is not None:
                    if len(copied) + len(chunk) <= self.settings.max_copy_bytes:
                        copied += chunk
                    else:
                        copied = None
                        self.counters.unscanned("too_large")
            await response.write_eof()
        except (TimeoutError, aiohttp.ClientError, ConnectionResetError):
            return response, None, False  # the client sees the cut stream; nothing complete to score
        return response, copied, True

    def _queue_copy(
        self,
        request: web.Request,
        body: bytes,
        upstream: aiohttp.ClientResponse,
        copied: bytearray | None,
        seconds: float,
    ) -> None:
        if copied is None:
            return
        if (
            len(body) > self.settings.max_copy_bytes
            or upstream.headers.get("Content-Encoding", "identity") != "identity"
        ):
            self.counters.unscanned("too_large" if len(body) > self.settings.max_copy_bytes else "unsupported")
            return
        streamed = upstream.headers.get("Content-Type", "").startswith("text/event-stream")
        exchange = Exchange(
            path=request.path,
            status=upstream.status,
            request_body=body,
            response_body=bytes(copied),
            streamed=streamed,
            timestamp=time.time(),
            upstream_seconds=seconds,
        )
        try:
            self.copies.put_nowait(exchange)
        except (queue.Full, ValueError):  # full, or closed while a dead worker is being replaced
            self.counters.dropped()

    def _local_error(self, kind: str | None, status: int, message: str) -> web.Response:
        if kind is None:
            self.counters.unscanned("unsupported")
        else:
            self.counters.request(status)
        return web.json_response({"error": message}, status=status)


async def wait_forever(stop: asyncio.Event) -> None:
    """Block until ``stop`` is set (SIGTERM/SIGINT)."""
    await stop.wait()
