"""A loopback model server for tests, the bench and demos: ``python -m rollbackbot.observer.fake_model``.

It echoes: the answer to a chat request is the last message's content, to a completion request the
prompt, so the caller chooses what the "model" says. Behaves like an OpenAI-compatible server:

- ``POST /v1/chat/completions`` and ``/v1/completions``, JSON or SSE (``"stream": true``; the answer
  is sent in chunks of ``X-Fake-Chunk`` characters, default 8). With ``X-Fake-Hold: 1`` the stream
  stops after its first chunk until ``POST /release`` (to observe that chunks pass through as they
  arrive). ``logprobs`` are returned only when asked for.
- ``POST /predict``: a classifier; answers ``{"prediction": {"label": L, "score": S}}`` with L and S
  taken from the request's ``want_label`` / ``want_score`` (defaults ``grant`` / 0.97).
- ``GET /status/{code}``: answers that status with a recognisable body (error pass-through).
- anything else: 404 with a JSON body.

Prints ``fake model listening on http://127.0.0.1:PORT`` once bound (``--port 0`` picks a free one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiohttp import web

_HOLD_KEY = web.AppKey("hold", asyncio.Event)


def _answer(body: dict[str, Any], chat: bool) -> str:
    if chat:
        messages = body.get("messages") or [{}]
        content = messages[-1].get("content", "")
        return content if isinstance(content, str) else json.dumps(content)
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


def _choice(text: str, chat: bool, *, streamed: bool, finish: str | None, logprobs: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta" if streamed else "message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    if logprobs and text:
        tokens = [{"token": word, "logprob": -0.05} for word in text.split()] or [{"token": text, "logprob": -0.05}]
        choice["logprobs"] = {"content": tokens} if chat else {"token_logprobs": [t["logprob"] for t in tokens]}
    return choice


async def _completion(request: web.Request) -> web.StreamResponse:
    chat = request.path.endswith("/chat/completions")
    body = await request.json()
    answer = _answer(body, chat)
    logprobs = bool(body.get("logprobs"))
    base = {"id": "cmpl-fake", "object": "chat.completion" if chat else "text_completion", "created": int(time.time())}
    if not body.get("stream"):
        choice = _choice(answer, chat, streamed=False, finish="stop", logprobs=logprobs)
        return web.json_response({**base, "model": "fake", "choices": [choice]})
    size = max(1, int(request.headers.get("X-Fake-Chunk", "8")))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for index in range(0, len(answer), size):
        chunk = _choice(answer[index : index + size], chat, streamed=True, finish=None, logprobs=logprobs)
        await response.write(f"data: {json.dumps({**base, 'choices': [chunk]})}\n\n".encode())
        if index == 0 and request.headers.get("X-Fake-Hold") == "1":
            await request.app[_HOLD_KEY].wait()
    last = _choice("", chat, streamed=True, finish="stop", logprobs=False)
    await response.write(f"data: {json.dumps({**base, 'choices': [last]})}\n\ndata: [DONE]\n\n".encode())
    await response.write_eof()
    return response


async def _release(request: web.Request) -> web.Response:
    request.app[_HOLD_KEY].set()
    return web.json_response({"released": True})


async def _predict(request: web.Request) -> web.Response:
    body = await request.json()
    label = body.get("want_label", "grant")
    score = body.get("want_score", 0.97)
    return web.json_response({"prediction": {"label": label, "score": score}})


async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=f"upstream says {code}\n", headers={"X-Upstream": "fake"})


def build_app() -> web.Application:
    """The fake model's routes."""
    app = web.Application(client_max_size=64 << 20)
    app[_HOLD_KEY] = asyncio.Event()
    app.router.add_post("/v1/chat/completions", _completion)
    app.router.add_post("/v1/completions", _completion)
    app.router.add_post("/release", _release)
    app.router.add_post("/predict", _predict)
    app.router.add_get("/status/{code:\\d{3}}", _status)
    return app


async def _main(host: str, port: int) -> None:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    print(f"fake model listening on http://{host}:{bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    """Run until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
