"""Serve a fake forge over HTTP on 127.0.0.1, and deliver its webhooks for real.

    fake = FakeGitHub("acme/gitops", sandbox.remote_path, users={"t0k": "rollbackbot[bot]"})
    async with serve_forge(fake) as url:   # e.g. http://127.0.0.1:PORT
        ...

Webhooks queued by an answer are POSTed after the answer went out, in order, like GitHub's hookshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rollbackbot.testing.forge.github import Answer, Hook


class FakeForge(Protocol):
    outbox: list[tuple[Hook, dict[str, str], bytes]]

    def handle(self, method: str, path: str, query: dict[str, str], body: Any, token: str | None) -> Answer: ...


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    for scheme in ("Bearer ", "token ", "bearer "):
        if header.startswith(scheme):
            return header.removeprefix(scheme).strip()
    return request.headers.get("private-token")  # GitLab


async def deliver(forge: FakeForge) -> None:
    """POST every queued webhook; a receiver that is down loses it (as with a real forge's retries exhausted)."""
    async with httpx.AsyncClient(timeout=5) as client:
        while forge.outbox:
            hook, headers, raw = forge.outbox.pop(0)
            with contextlib.suppress(httpx.HTTPError):
                await client.post(hook.url, content=raw, headers=headers)


def create_app(forge: FakeForge, prefix: str = "") -> Starlette:
    """The fake's ASGI app; the REST API lives under ``prefix`` (GitLab: ``/api/v4``)."""

    async def api(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return JSONResponse({"message": "Problems parsing JSON"}, 400)
        path = request.url.path.removeprefix(prefix)
        answer = forge.handle(request.method, path, dict(request.query_params), body, _token(request))
        task = BackgroundTask(deliver, forge) if forge.outbox else None
        if answer.status == 204:
            return Response(status_code=204, headers=answer.headers, background=task)
        return JSONResponse(answer.body, answer.status, answer.headers, background=task)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route(prefix + "/{path:path}", api, methods=methods)])


@contextlib.asynccontextmanager
async def serve_forge(forge: FakeForge, prefix: str = "") -> AsyncIterator[str]:
    """Run the fake on a free loopback port for the duration; yields its base URL (with ``prefix``)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app = create_app(forge, prefix)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                raise RuntimeError("fake forge did not start")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{prefix}"
    finally:
        server.should_exit = True
        await task
        sock.close()
