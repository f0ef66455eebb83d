"""A faithful fake Argo CD v3.5.1 API server for tests and ``rollbackbot demo`` (docs/argocd-wire.md §8).

In process::

    state = FakeArgoState(config); app = create_app(config, state)
    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://argocd")
    state.advance(0.5)          # move the simulated controller deterministically

As a process (a background task moves time with the wall clock)::

    python -m rollbackbot.testing.argocd --config fake-argocd.json --port 0
    # stdout: "fake-argocd listening on http://127.0.0.1:PORT"

Test controls outside ``/api`` (no auth): ``GET|DELETE /_fake/requests``, ``GET /_fake/apps/{name}``,
``POST /_fake/apps/{name}/faults``, ``POST /_fake/advance`` ``{"seconds": n}``,
``POST /_fake/rbac`` ``{"denied": ["applications/sync/ml-prod/*"]}`` (what ``can-i`` refuses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Sequence

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rollbackbot.testing.argocd.config import AppFaults, FakeAppConfig, FakeArgoConfig, make_token
from rollbackbot.testing.argocd.git import GitError
from rollbackbot.testing.argocd.routes import handle_api, record, text_response
from rollbackbot.testing.argocd.state import FakeArgoState

__all__ = [
    "AppFaults",
    "FakeAppConfig",
    "FakeArgoConfig",
    "FakeArgoState",
    "create_app",
    "get_state",
    "main",
    "make_token",
]

log = logging.getLogger("fake-argocd")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _fake_control(state: FakeArgoState, request: Request) -> Response:
    parts = request.url.path.strip("/").split("/")[1:]
    method = request.method
    if parts == ["requests"] and method == "GET":
        return JSONResponse(state.requests)
    if parts == ["requests"] and method == "DELETE":
        cleared = len(state.requests)
        state.requests.clear()
        return JSONResponse({"cleared": cleared})
    if parts == ["rbac"] and method == "POST":
        denied = (await request.json()).get("denied", [])
        state.config.denied = [str(rule) for rule in denied]
        return JSONResponse({"denied": state.config.denied})
    if parts == ["advance"] and method == "POST":
        state.advance(float((await request.json()).get("seconds", 0)))
        return JSONResponse({"virtualTime": state.now})
    if len(parts) in (2, 3) and parts[0] == "apps":
        if parts[1] not in state.apps:
            return JSONResponse({"error": f"unknown app {parts[1]}"}, status_code=404)
        if len(parts) == 2 and method == "GET":
            return JSONResponse(state.raw(parts[1]))
        if parts[2:] == ["faults"] and method == "POST":
            try:
                faults = state.set_faults(parts[1], await request.json())
            except (ValidationError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=422)
            return JSONResponse(faults.model_dump())
    return text_response(404, "Not Found")


def get_state(app: Starlette) -> FakeArgoState:
    """The state object behind an app made by ``create_app``."""
    state: FakeArgoState = app.state.argocd
    return state


def create_app(config: FakeArgoConfig, state: FakeArgoState | None = None) -> Starlette:
    """The ASGI app; its lifespan runs the controller ticker (httpx.ASGITransport does not, so tests advance)."""
    fake = state or FakeArgoState(config)

    async def endpoint(request: Request) -> Response:
        if request.url.path.startswith("/_fake/"):
            return await _fake_control(fake, request)
        raw = await request.body()
        response = await handle_api(fake, request, raw)
        if request.url.path.startswith("/api/"):
            record(fake, request, raw, response.status_code)
        return response

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        ticker = asyncio.create_task(fake.run_ticker())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=ALL_METHODS)], lifespan=lifespan)
    app.state.argocd = fake
    return app


async def _serve(state: FakeArgoState, host: str, port: int) -> int:
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: without, every keep-alive answer stalls ~40 ms (Nagle vs delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(state.config, state), log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            return 1
        await asyncio.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    print(f"fake-argocd listening on http://{shown}:{bound}", flush=True)
    await task
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: serve the fake on HOST:PORT (0 = a free port), announce the URL on stdout, log to stderr."""
    parser = argparse.ArgumentParser(prog="python -m rollbackbot.testing.argocd", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON file with a FakeArgoConfig")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        state = FakeArgoState(FakeArgoConfig.from_file(args.config))
    except (OSError, ValidationError, GitError) as exc:
        print(f"fake-argocd: cannot start from {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(state, args.host, args.port))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
