"""A fake Slack Web API for tests and ``rollbackbot demo``, plus signed interactivity requests.

In process (no sockets)::

    fake = FakeSlack(token="xoxb-test"); app = create_app(fake)
    client = in_process_client(app, "xoxb-test")     # a real slack-sdk AsyncWebClient
    body, headers = signed_request(SECRET, block_actions("approve_rollback", incident_id, "U012ABC"))

As a process::

    python -m rollbackbot.testing.slack --port 0 [--token xoxb-…] [--usergroup S0SECOPS=U1,U2] [--user U0X="Dana Ops"]
    # stdout: "fake-slack listening on http://127.0.0.1:PORT"; ROLLBACKBOT_SLACK_API_URL=http://127.0.0.1:PORT/api/

Test controls outside ``/api`` (no auth): ``GET|DELETE /_fake/calls``, ``GET /_fake/messages``,
``POST /_fake/rate_limit`` ``{"method", "times", "retry_after"}``, ``POST /_fake/down`` ``{"down": bool}``,
``POST /_fake/usergroups`` ``{"S…": ["U…"]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import IO, Any

import aiohttp
import httpx
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rollbackbot.testing.slack_fake import TEAM_ID, FakeSlack

__all__ = [
    "FakeSlack",
    "block_actions",
    "create_app",
    "get_fake",
    "in_process_client",
    "main",
    "signed_request",
    "start_process",
]

IN_PROCESS_URL = "http://fake-slack/api/"


async def _api(request: Request) -> Response:
    fake = get_fake(request.app)
    args: dict[str, Any] = dict(request.query_params)
    raw = await request.body()
    if raw and request.headers.get("content-type", "").startswith("application/json"):
        try:
            args |= json.loads(raw)
        except ValueError:
            return JSONResponse({"ok": False, "error": "invalid_json"})
    elif raw:
        args |= dict(urllib.parse.parse_qsl(raw.decode()))
        if isinstance(args.get("blocks"), str):  # form-encoded calls send blocks as a JSON string
            args["blocks"] = json.loads(args["blocks"])
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or args.pop("token", None)
    answer = fake.handle(request.path_params["method"], args, token or None)
    return JSONResponse(answer.body, answer.status, answer.headers)


async def _control(request: Request) -> Response:
    fake = get_fake(request.app)
    what, method = request.path_params["what"], request.method
    if what == "calls" and method == "GET":
        return JSONResponse(fake.calls)
    if what == "calls" and method == "DELETE":
        cleared = len(fake.calls)
        fake.calls.clear()
        return JSONResponse({"cleared": cleared})
    if what == "messages" and method == "GET":
        return JSONResponse(list(fake.messages.values()))
    body = await request.json() if method == "POST" else {}
    if what == "rate_limit":
        fake.rate_limit(str(body["method"]), int(body.get("times", 1)), float(body.get("retry_after", 1)))
        return JSONResponse({"rate_limits": fake.rate_limits})
    if what == "down":
        fake.down = bool(body.get("down", True))
        return JSONResponse({"down": fake.down})
    if what == "usergroups":
        fake.usergroups.update({str(k): [str(u) for u in v] for k, v in body.items()})
        return JSONResponse(fake.usergroups)
    return JSONResponse({"error": f"no control {what}"}, 404)


def create_app(fake: FakeSlack | None = None) -> Starlette:
    """The fake's ASGI app: ``/api/<method>`` plus the ``/_fake/*`` controls."""
    app = Starlette(
        routes=[
            Route("/api/{method}", _api, methods=["GET", "POST"]),
            Route("/_fake/{what}", _control, methods=["GET", "POST", "DELETE"]),
        ]
    )
    app.state.slack = fake or FakeSlack()
    return app


def get_fake(app: Starlette) -> FakeSlack:
    """The state behind an app made by ``create_app``."""
    fake: FakeSlack = app.state.slack
    return fake


class _InProcessClient(AsyncWebClient):
    """slack-sdk's client with its transport swapped for the ASGI app; everything else is the real code."""

    def __init__(self, app: Starlette, token: str) -> None:
        super().__init__(token=token, base_url=IN_PROCESS_URL, retry_handlers=[])
        self._app = app

    async def _request(self, *, http_verb: str, api_url: str, req_args: dict[str, Any]) -> dict[str, Any]:
        if get_fake(self._app).unreachable:
            raise aiohttp.ClientConnectionError("fake Slack is unreachable")
        transport = httpx.ASGITransport(app=self._app)
        async with httpx.AsyncClient(transport=transport) as http:
            answer = await http.request(
                http_verb,
                api_url,
                headers=req_args.get("headers"),
                params=req_args.get("params"),
                json=req_args.get("json"),
                data=req_args.get("data"),
            )
        return {"data": answer.json(), "headers": answer.headers, "status_code": answer.status_code}


def in_process_client(app: Starlette, token: str) -> AsyncWebClient:
    """A real ``AsyncWebClient`` whose requests reach ``app`` in process."""
    return _InProcessClient(app, token)


def block_actions(
    action_id: str,
    value: str,
    user_id: str,
    *,
    user_name: str = "someone",
    channel: str = "C0ML0NCALL",
    message_ts: str = "1764072000.000100",
) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack sends it when a button is clicked."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "rollbackbot-fake"},
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": TEAM_ID},
        "api_app_id": "A0ROLLBOT1",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": "1234567890.1234567890.abcdef",
        "channel": {"id": channel, "name": "ml-oncall"},
        "message": {"type": "message", "ts": message_ts, "text": "", "blocks": []},
        "response_url": f"https://hooks.slack.com/actions/{TEAM_ID}/1/fake",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "decision",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def signed_request(secret: str, payload: dict[str, Any], timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an interactivity request signed the way Slack signs it (v0, HMAC-SHA256)."""
    body = "payload=" + urllib.parse.quote(json.dumps(payload, separators=(",", ":")))
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }
    return body.encode(), headers


def start_process(
    log: IO[bytes],
    *,
    token: str | None = None,
    usergroups: Mapping[str, Sequence[str]] | None = None,
    users: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Run the fake as its own process; return it and its base URL (the Web API is under ``/api/``)."""
    args = [sys.executable, "-m", "rollbackbot.testing.slack", "--port", "0"]
    args += ["--token", token] if token else []
    args += [arg for group, ids in (usergroups or {}).items() for arg in ("--usergroup", f"{group}={','.join(ids)}")]
    args += [arg for user, name in (users or {}).items() for arg in ("--user", f"{user}={name}")]
    from rollbackbot.procs import start_announced

    return start_announced(args, log, "fake Slack")


async def _serve(fake: FakeSlack, host: str, port: int) -> int:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(create_app(fake), log_config=None, lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            return 1
        await asyncio.sleep(0.01)
    print(f"fake-slack listening on http://{host}:{sock.getsockname()[1]}", flush=True)
    await task
    return 0


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    pairs = dict(item.split("=", 1) for item in items if "=" in item)
    if len(pairs) != len(items):
        raise SystemExit(f"fake-slack: {flag} takes ID=VALUE")
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: serve the fake on HOST:PORT (0 = a free port) and announce the URL on stdout."""
    parser = argparse.ArgumentParser(prog="python -m rollbackbot.testing.slack", description="fake Slack Web API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None, help="the only bot token accepted (default: any xoxb- token)")
    parser.add_argument("--usergroup", action="append", default=[], help="S…=U1,U2 (repeatable)")
    parser.add_argument("--user", action="append", default=[], help='U…="Real Name" (repeatable)')
    args = parser.parse_args(argv)
    groups = {k: [u for u in v.split(",") if u] for k, v in _pairs(args.usergroup, "--usergroup").items()}
    fake = FakeSlack(token=args.token, usergroups=groups, users=_pairs(args.user, "--user"))
    try:
        return asyncio.run(_serve(fake, args.host, args.port))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
