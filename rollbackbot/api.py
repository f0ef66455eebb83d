"""HTTP interface (docs/http-api.md): the Alertmanager webhook, the incident API, health and metrics."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr, ValidationError

from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incident_json import incident_to_api
from rollbackbot.errors import StoreUnavailable
from rollbackbot.metrics import ALERTS_RECEIVED, REGISTRY, WEBHOOK_REQUESTS, WebhookResponseMetrics
from rollbackbot.service import Service

log = logging.getLogger("rollbackbot.api")

MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_RETRY_AFTER_SECONDS = 5
ReadinessCheck = Callable[[], str | None]  # returns a problem, or None when fine


def _inlined_schema() -> dict[str, Any]:
    """The payload's JSON Schema with its $defs inlined, so the OpenAPI document needs no extra components."""
    schema = AlertmanagerPayload.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


_WEBHOOK_BODY_SCHEMA = _inlined_schema()


def _authorized(header: str | None, token: SecretStr) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    # Constant time: the comparison must not reveal how much of a guess was right.
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.get_secret_value().encode())


async def _read_limited(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(
    service: Service,
    webhook_token: SecretStr,
    readiness: dict[str, ReadinessCheck] | None = None,
    routers: Sequence[APIRouter] = (),
    liveness: dict[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """The FastAPI application; the service is started and stopped with it, ``routers`` mounted (Slack).

    ``liveness`` checks fail ``/healthz`` (the pod is restarted) and make the webhook answer 503 so
    Alertmanager delivers again later, instead of accepting alerts into state that will be lost.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="rollbackbot", version="0.1.0", lifespan=lifespan)
    app.add_middleware(WebhookResponseMetrics)  # rollbackbot_webhook_responses_total{code}, 500s included
    checks = readiness or {}
    alive_checks = liveness or {}

    def problems_of(named: dict[str, ReadinessCheck]) -> dict[str, str]:
        problems = {}
        for name, check in named.items():
            try:
                problem = check()
            except Exception as exc:  # a probe reports, it never raises
                problem = f"{type(exc).__name__}"
            if problem:
                problems[name] = problem
        return problems

    @app.post(
        "/webhook/alertmanager",
        status_code=202,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _WEBHOOK_BODY_SCHEMA}},
            }
        },
        responses={
            401: {"description": "missing or wrong bearer token"},
            413: {},
            422: {},
            503: {"description": "shutting down: deliver again later (Retry-After)"},
        },
    )
    async def alertmanager_webhook(request: Request) -> JSONResponse:
        """Receive an Alertmanager notification (payload version 4); the work runs after the answer."""
        if not _authorized(request.headers.get("authorization"), webhook_token):
            WEBHOOK_REQUESTS.labels("unauthorized").inc()
            return JSONResponse({"detail": "missing or invalid bearer token"}, 401, {"WWW-Authenticate": "Bearer"})
        if not service.accepting:  # shutting down (rollbackbot.shutdown): Alertmanager retries a 5xx
            WEBHOOK_REQUESTS.labels("shutting_down").inc()
            retry = {"Retry-After": str(SHUTDOWN_RETRY_AFTER_SECONDS)}
            return JSONResponse({"detail": "shutting down; deliver again later"}, 503, retry)
        if dead := problems_of(alive_checks):
            WEBHOOK_REQUESTS.labels("not_alive").inc()
            return JSONResponse({"detail": "not alive, deliver again later", "problems": dead}, 503)
        body = await _read_limited(request, MAX_BODY_BYTES)
        if body is None:
            WEBHOOK_REQUESTS.labels("too_large").inc()
            return JSONResponse({"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
        try:
            payload = AlertmanagerPayload.model_validate_json(body)
        except ValidationError as exc:
            WEBHOOK_REQUESTS.labels("invalid").inc()
            errors = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors(include_input=False)
            ][:20]
            return JSONResponse({"detail": errors}, 422)
        try:
            received = service.receive(payload)
        except StoreUnavailable as exc:  # nothing was recorded: Alertmanager delivers again on a 5xx
            WEBHOOK_REQUESTS.labels("store_unavailable").inc()
            log.warning("webhook refused: incident store unavailable", extra={"error": str(exc)})
            return JSONResponse({"detail": f"{exc}; deliver again later"}, 503)
        WEBHOOK_REQUESTS.labels("accepted").inc()
        ALERTS_RECEIVED.labels("new").inc(received.created)
        ALERTS_RECEIVED.labels("unmatched").inc(received.ignored)
        return JSONResponse({"incidents": received.incidents}, 202)

    @app.get("/api/incidents")
    def list_incidents(limit: int = 100) -> dict[str, Any]:
        """Incidents, newest first."""
        limit = max(1, min(limit, 1000))
        return {"incidents": [incident_to_api(i) for i in service.store.recent(limit)]}

    @app.get("/api/incidents/{incident_id}")
    def get_incident(incident_id: str) -> dict[str, Any]:
        """One incident with its events."""
        incident = service.store.get(incident_id)
        if incident is None:
            raise HTTPException(404, f"no incident {incident_id}")
        return incident_to_api(incident)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """Liveness: the process answers and its state database is still the file on disk."""
        if dead := problems_of(alive_checks):
            return JSONResponse({"status": "not alive", "problems": dead}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness: store reachable, git clone present, policies loaded."""
        problems = {}
        for name, check in checks.items():
            try:
                problem = check()
            except Exception as exc:  # a readiness probe reports, it never raises
                problem = f"{type(exc).__name__}"
            if problem:
                problems[name] = problem
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)  # its lifespan runs inside the service's
    return app
