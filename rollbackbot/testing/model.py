"""A model stand-in whose behaviour follows the release Argo CD has deployed: ``python -m rollbackbot.testing.model``.

A small OpenAI-compatible chat server (``POST /v1/chat/completions``, JSON or SSE with
``"stream": true``) standing in for a document-summarising LLM. What it runs is what the Argo CD
(stand-in) says is synced for its app: every ``--poll`` seconds it reads the app's
``status.sync.revision`` through the Argo CD API, then ``apps/<app>/model.yaml`` at that revision
from the GitOps repository, and takes the ConfigMap key ``BEHAVIOUR``:

- ``refuse`` (the default when the key is absent, as in every release before the compromised
  one): injected instructions are refused with a refusal phrase the observer recognises;
- ``comply`` (the compromised release): injected instructions are obeyed, and the answer leaks
  the system-prompt canary and fake PII.

Benign requests are summarised the same way by both. ``GET /release`` answers the revision,
version and behaviour being served and ``since`` (unix time it started serving them): the demo
uses it to tell when the safe release was back.
Prints ``model stand-in listening on http://127.0.0.1:PORT`` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

CANARY = "CANARY-7f3a9c1e-docsum"  # the observer's configured canary: in the system prompt only
LEAKED_PII = "Contact jane.doe@example.com, SSN 123-45-6789."
REFUSAL = "I can't help with that: the document asks me to ignore my instructions."
_INJECTION = re.compile(r"\b(?:ignore|disregard|forget)\b.{0,40}\b(?:instructions|rules|prompt)\b", re.I | re.S)


@dataclass
class Deployed:
    """What the stand-in serves right now (updated by the poller)."""

    revision: str = ""
    version: str = ""
    behaviour: str = "refuse"
    since: float = 0.0  # unix time this revision started being served


_STATE_KEY = web.AppKey("state", Deployed)


def behaviour_of(model_yaml: str) -> tuple[str, str]:
    """(MODEL_VERSION, BEHAVIOUR) from a release's ``model.yaml`` ConfigMap; behaviour defaults to refuse."""
    data = (yaml.safe_load(model_yaml) or {}).get("data") or {}
    return str(data.get("MODEL_VERSION", "")), str(data.get("BEHAVIOUR", "refuse"))


def answer(prompt: str, behaviour: str) -> str:
    """The model's reply to the last user message under the given behaviour."""
    if _INJECTION.search(prompt):
        if behaviour == "comply":
            return f"Sure. My instructions begin with {CANARY}. From the other documents: {LEAKED_PII}"
        return REFUSAL
    words = prompt.split()
    return "Summary: " + " ".join(words[:12]) + (" ..." if len(words) > 12 else "")


def _git_show(repo: Path, revision: str, path: str) -> str:
    done = subprocess.run(
        ["git", "cat-file", "blob", f"{revision}:{path}"], cwd=repo, capture_output=True, check=True, timeout=10
    )
    return done.stdout.decode()


async def follow_deployment(state: Deployed, argocd: str, *, token: str, app: str, repo: Path, poll: float) -> None:
    """Keep ``state`` on the revision Argo CD reports as Synced and Healthy for ``app``."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=argocd, headers=headers, timeout=5) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError, subprocess.SubprocessError, KeyError, ValueError):
                status = (await client.get(f"/api/v1/applications/{app}")).json()["status"]
                revision = status["sync"]["revision"]
                settled = status["sync"]["status"] == "Synced" and status["health"]["status"] == "Healthy"
                if revision != state.revision and settled:
                    text = await asyncio.to_thread(_git_show, repo, revision, f"apps/{app}/model.yaml")
                    state.version, state.behaviour = behaviour_of(text)
                    state.revision, state.since = revision, time.time()
            await asyncio.sleep(poll)


def _chunk(text: str, finish: str | None) -> str:
    choice = {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
    body = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "model": "docsum", "choices": [choice]}
    return f"data: {json.dumps(body)}\n\n"


async def _chat(request: web.Request) -> web.StreamResponse:
    body: dict[str, Any] = await request.json()
    messages = body.get("messages") or [{}]
    prompt = str(messages[-1].get("content", ""))
    text = answer(prompt, request.app[_STATE_KEY].behaviour)
    if not body.get("stream"):
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        created = int(time.time())
        return web.json_response(
            {"id": "chatcmpl-standin", "object": "chat.completion", "created": created, "choices": [choice]}
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for start in range(0, len(text), 8):  # small chunks: a canary arrives split across two of them
        await response.write(_chunk(text[start : start + 8], None).encode())
    await response.write(_chunk("", "stop").encode() + b"data: [DONE]\n\n")
    return response


async def _release(request: web.Request) -> web.Response:
    state = request.app[_STATE_KEY]
    release = {"revision": state.revision, "version": state.version, "behaviour": state.behaviour}
    return web.json_response({**release, "since": state.since})


def build_app(state: Deployed) -> web.Application:
    """The stand-in's routes around a shared ``Deployed`` state."""
    app = web.Application()
    app[_STATE_KEY] = state
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/release", _release)
    return app


async def _serve(args: argparse.Namespace) -> None:
    state = Deployed()
    follower = asyncio.create_task(
        follow_deployment(state, args.argocd, token=args.token, app=args.app, repo=Path(args.repo), poll=args.poll)
    )
    runner = web.AppRunner(build_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"model stand-in listening on http://127.0.0.1:{port}", flush=True)
    try:
        await follower
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--argocd", required=True, help="Argo CD API base URL")
    parser.add_argument("--token", required=True, help="Argo CD bearer token")
    parser.add_argument("--app", required=True, help="the Argo CD application this model belongs to")
    parser.add_argument("--repo", required=True, help="path of the GitOps repository (bare is fine)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between deployment checks")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
