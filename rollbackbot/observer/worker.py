"""The scoring worker process: consumes the queue, scores, and serves the admin port.

One process (not a thread: the proxy keeps its core for forwarding). A scoring thread takes copies
off the queue and runs ``Scorer.score``; the process's event loop serves the admin routes:

- ``GET /metrics``: the ``model_observer_*`` series (Prometheus text format).
- ``GET /healthz``: ``{"status": "ok", "ruleset_version": ..., "pid": ...}`` while the scoring thread
  runs (503 otherwise).
- ``GET /forensics/requests?limit=N``: the newest N (default and max: the buffer size) redacted
  entries as JSON lines, oldest first. Needs ``Authorization: Bearer <ROLLBACKBOT_OBSERVER_FORENSICS_TOKEN>``;
  without that setting the route answers 404. This is the ``forensics.requestsUrl`` of a policy.
- ``POST /feedback``: ``{"kind": "false_negative"|"false_positive", "confidence": 0.97}`` records a
  confirmed error in ``model_observer_feedback_errors_total{kind, confidence="high"|"low"}``
  (high from ``ROLLBACKBOT_OBSERVER_HIGH_CONFIDENCE``). Same bearer token when one is set.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import queue
import secrets
import threading
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rollbackbot import __version__
from rollbackbot.observer.config import ObserverSettings, load_endpoint_config
from rollbackbot.observer.drift import DriftTracker
from rollbackbot.observer.exporter import ObserverMetrics, ProxyCounters
from rollbackbot.observer.rules import RULESET_VERSION
from rollbackbot.observer.scoring import ForensicBuffer, Scorer

log = logging.getLogger("rollbackbot.observer.worker")
STOP = None  # sentinel put on the queue to end the scoring thread
FEEDBACK_MAX_BYTES = 4096
ORPHAN_CHECK_SECONDS = 1.0


def build_scorer(settings: ObserverSettings, counters: ProxyCounters) -> Scorer:
    """The scorer of this endpoint, with its metrics, buffer, redaction key and drift tracker."""
    config = load_endpoint_config(settings.config)
    metrics = ObserverMetrics(settings.endpoint, settings.model_version, __version__)
    key = settings.redaction_key.get_secret_value().encode() if settings.redaction_key else secrets.token_bytes(32)
    drift = None
    if config.baseline:

        def publish(feature: str, score: float, samples: int) -> None:
            metrics.drift_psi.labels(**metrics.labels, feature=feature).set(score)
            metrics.drift_samples.labels(**metrics.labels, feature=feature).set(samples)

        drift = DriftTracker(config.baseline, publish)
    return Scorer(
        config=config,
        metrics=metrics,
        counters=counters,
        buffer=ForensicBuffer(settings.buffer_size),
        redaction_key=key,
        text_limit=settings.entry_text_chars,
        drift=drift,
    )


def _score_forever(scorer: Scorer, copies: Any) -> None:
    parent = os.getppid()
    while True:
        try:
            exchange = copies.get(timeout=ORPHAN_CHECK_SECONDS)
        except queue.Empty:
            if os.getppid() != parent:  # the proxy died without stopping us: do not linger as an orphan
                return
            continue
        except (EOFError, OSError):
            return
        if exchange is STOP:
            return
        try:
            scorer.score(exchange)
        except Exception:  # one bad exchange must never stop scoring
            log.exception("scoring failed")
            scorer.counters.unscanned("parse_error")


def _authorised(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def admin_app(settings: ObserverSettings, scorer: Scorer, alive: threading.Thread, depth: Any) -> web.Application:
    """The admin routes (see the module docstring)."""
    token = settings.forensics_token.get_secret_value() if settings.forensics_token else None
    scorer.metrics.watch_proxy(scorer.counters, depth)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(scorer.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok = alive.is_alive()
        status = {"status": "ok" if ok else "scoring stopped", "ruleset_version": RULESET_VERSION, "pid": os.getpid()}
        return web.json_response(status, status=200 if ok else 503)

    async def forensics(request: web.Request) -> web.Response:
        if token is None:
            raise web.HTTPNotFound()
        if not _authorised(request, token):
            return web.json_response({"error": "unauthorised"}, status=401, headers={"WWW-Authenticate": "Bearer"})
        raw = request.query.get("limit", str(settings.buffer_size))
        if not raw.isdigit() or int(raw) < 1:
            return web.json_response({"error": "limit must be a positive integer"}, status=400)
        lines = scorer.buffer.last(min(int(raw), settings.buffer_size))
        body = "".join(line + "\n" for line in lines)
        return web.Response(text=body, content_type="application/x-ndjson")

    async def feedback(request: web.Request) -> web.Response:
        if token is not None and not _authorised(request, token):
            return web.json_response({"error": "unauthorised"}, status=401, headers={"WWW-Authenticate": "Bearer"})
        error = _record_feedback(await request.content.read(FEEDBACK_MAX_BYTES + 1), scorer, settings.high_confidence)
        if error:
            return web.json_response({"error": error}, status=400)
        return web.json_response({"recorded": True}, status=202)

    app = web.Application(client_max_size=FEEDBACK_MAX_BYTES)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/forensics/requests", forensics)
    app.router.add_post("/feedback", feedback)
    return app


def _record_feedback(body: bytes, scorer: Scorer, high: float) -> str | None:
    """Count one confirmed error; returns an error message for a bad body."""
    if len(body) > FEEDBACK_MAX_BYTES:
        return f"body larger than {FEEDBACK_MAX_BYTES} bytes"
    try:
        data = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(data, dict) or data.get("kind") not in {"false_negative", "false_positive"}:
        return "kind must be false_negative or false_positive"
    confidence = data.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        return "confidence must be a number in [0, 1]"
    level = "high" if confidence >= high else "low"
    scorer.metrics.feedback.labels(**scorer.metrics.labels, kind=data["kind"], confidence=level).inc()
    return None


async def _serve_admin(
    settings: ObserverSettings, app: web.Application, scoring: threading.Thread, port_out: Any, ready: Any
) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.admin_port)
    await site.start()
    server = site._server  # the bound socket tells the real port when admin_port is 0
    sockets = getattr(server, "sockets", None) or []
    port_out.value = int(sockets[0].getsockname()[1]) if sockets else settings.admin_port
    ready.set()
    await asyncio.to_thread(scoring.join)  # the scoring thread ends on STOP (the queue is drained)
    await runner.cleanup()


def run_worker(settings: ObserverSettings, copies: Any, counters: ProxyCounters, port_out: Any, ready: Any) -> None:
    """Entry point of the worker process."""
    logging.basicConfig(level=os.environ.get("ROLLBACKBOT_OBSERVER_LOG_LEVEL", "WARNING"))
    scorer = build_scorer(settings, counters)
    thread = threading.Thread(target=_score_forever, args=(scorer, copies), name="scoring", daemon=True)
    thread.start()
    app = admin_app(settings, scorer, thread, copies.qsize)
    try:
        asyncio.run(_serve_admin(settings, app, thread, port_out, ready))
    except KeyboardInterrupt:
        pass
