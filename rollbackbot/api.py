"""HTTP interface (docs/http-api.md): the Alertmanager webhook, the incident API, health and metrics.

- ``POST /webhook/alertmanager``: webhook token; body capped (1 MiB) while it streams, read within a deadline.
- ``GET /api/incidents`` (``limit`` ≤ 500, opaque ``cursor``, filters ``app``, ``state``, ``since``; answers
  ``next_cursor``, null on the last page), ``GET /api/incidents/{id}`` and ``GET /status``: bearer
  ``ROLLBACKBOT_API_TOKEN``, or the webhook token when unset (401 without).
- ``GET /api/readiness``: the last rollback readiness run (docs/readiness.md), API token as above.
- ``GET /healthz``, ``/readyz``, ``/metrics``: open. Readiness covers intake only (store writable,
  policies loaded) and never calls git or Argo CD; their reachability is in ``/status`` and the
  ``rollbackbot_dependency_up`` metric.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr, ValidationError

from rollbackbot import __version__
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incident_json import incident_to_api
from rollbackbot.core.incidents import IncidentState
from rollbackbot.cursors import InvalidCursor, decode_cursor, encode_cursor
from rollbackbot.dependencies import DEPENDENCIES, DependencyBoard
from rollbackbot.errors import StoreUnavailable
from rollbackbot.http_body import BodyRefused, read_capped
from rollbackbot.metrics import REGISTRY, WEBHOOK_REQUESTS, WebhookResponseMetrics
from rollbackbot.redact import redact_urls
from rollbackbot.service import Service

log = logging.getLogger("rollbackbot.api")

MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_RETRY_AFTER_SECONDS = 5
MAX_PAGE = 500
ReadinessCheck = Callable[[], str | None]  # returns a problem, or None when fine
ForgeEventHandler = Callable[[dict[str, str], bytes], tuple[int, dict[str, Any]]]  # prmode.ForgeEvents.receive
BackgroundJob = Callable[[], Coroutine[Any, Any, None]]  # runs while the app serves; cancelled at shutdown


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


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    """(created, id) from a ``cursor``; HTTP 400 when it is not one of ours."""
    try:
        return decode_cursor(cursor) if cursor else None
    except InvalidCursor:
        raise HTTPException(400, "invalid cursor") from None


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def create_app(
    service: Service,
    webhook_token: SecretStr,
    readiness: dict[str, ReadinessCheck] | None = None,
    routers: Sequence[APIRouter] = (),
    liveness: dict[str, ReadinessCheck] | None = None,
    *,
    api_token: SecretStr | None = None,
    background: Sequence[BackgroundJob] = (),
    dependencies: DependencyBoard = DEPENDENCIES,
    readiness_report: Callable[[], dict[str, Any]] | None = None,
    forge_events: ForgeEventHandler | None = None,
) -> FastAPI:
    """The FastAPI application; the service and ``background`` jobs run with it, ``routers`` mounted (Slack).

    ``liveness`` checks fail ``/healthz`` (the pod is restarted) and make the webhook answer 503 so
    Alertmanager delivers again later, instead of accepting alerts into state that will be lost.
    ``/api/*`` and ``/status`` take ``api_token``, or ``webhook_token`` when it is None.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        jobs = [asyncio.get_running_loop().create_task(job()) for job in background]
        yield
        for task in jobs:
            task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await service.stop()

    app = FastAPI(title="rollbackbot", version=__version__, lifespan=lifespan)
    app.add_middleware(WebhookResponseMetrics)  # rollbackbot_webhook_responses_total{code}, 500s included
    checks = readiness or {}
    alive_checks = dict(liveness or {})
    if service.inbox is not None:
        alive_checks.setdefault("inbox", service.inbox.problem)  # a dead or stuck drainer: restart the pod
    reader_token = api_token or webhook_token

    def require_api_token(request: Request) -> None:
        if not _authorized(request.headers.get("authorization"), reader_token):
            raise HTTPException(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})

    guarded = APIRouter(dependencies=[Depends(require_api_token)], responses={401: {"description": "no token"}})

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
        "/forge/events",
        status_code=202,
        responses={
            400: {"description": "body is not JSON"},
            401: {"description": "GitHub X-Hub-Signature-256 or GitLab X-Gitlab-Token does not verify"},
            404: {"description": "no forge webhook secret configured (ROLLBACKBOT_FORGE_WEBHOOK_SECRET)"},
            413: {},
        },
    )
    async def forge_event(request: Request) -> JSONResponse:
        """A GitHub or GitLab webhook: the pull request's incident looks at it now (pull-request mode)."""
        if forge_events is None:
            return JSONResponse({"detail": "no forge webhook configured"}, 404)
        try:
            body = await read_capped(request, MAX_BODY_BYTES)
        except BodyRefused as exc:
            return JSONResponse({"detail": exc.detail}, exc.status)
        status, answer = forge_events({k.lower(): v for k, v in request.headers.items()}, body)
        return JSONResponse(answer, status)

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
        with service.inbox.handling() if service.inbox is not None else nullcontext():
            return await _accept(request)

    async def _accept(request: Request) -> JSONResponse:
        try:
            body = await read_capped(request, MAX_BODY_BYTES)
        except BodyRefused as exc:
            WEBHOOK_REQUESTS.labels("too_large" if exc.status == 413 else "too_slow").inc()
            return JSONResponse({"detail": exc.detail}, exc.status)
        try:
            payload = AlertmanagerPayload.model_validate_json(body)
        except ValidationError as exc:
            WEBHOOK_REQUESTS.labels("invalid").inc()
            errors = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors(include_input=False)
            ][:20]
            return JSONResponse({"detail": errors}, 422)
        try:
            incidents = await service.accept(payload, body)  # durably in the inbox; a drainer decides
        except StoreUnavailable as exc:  # nothing was recorded: Alertmanager delivers again on a 5xx
            WEBHOOK_REQUESTS.labels("store_unavailable").inc()
            log.warning("webhook refused: incident store unavailable", extra={"error": str(exc)})
            return JSONResponse({"detail": f"{exc}; deliver again later"}, 503)
        WEBHOOK_REQUESTS.labels("accepted").inc()
        return JSONResponse({"incidents": incidents}, 202)

    @guarded.get("/api/incidents")
    async def list_incidents(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        app: Annotated[str | None, Query(max_length=255)] = None,
        state: IncidentState | None = None,
        since: datetime | None = None,
    ) -> dict[str, Any]:
        """Incidents newest first, ``limit`` per page; pass ``next_cursor`` back as ``cursor`` for the next."""
        after = _after(cursor)
        await service.caught_up()  # read-your-writes: webhooks answered before this request are decided
        page = await run_in_threadpool(
            service.store.page, limit, after, app=app, state=state.value if state else None, since=_utc(since)
        )
        return {
            "incidents": [incident_to_api(i) for i in page.incidents],
            "next_cursor": encode_cursor(page.next_after) if page.next_after else None,
        }

    @guarded.get("/api/incidents/{incident_id}")
    async def get_incident(incident_id: str) -> dict[str, Any]:
        """One incident with its events."""
        await service.caught_up()  # read-your-writes: webhooks answered before this request are decided
        incident = await run_in_threadpool(service.store.get, incident_id)
        if incident is None:
            raise HTTPException(404, f"no incident {incident_id}")
        return incident_to_api(incident)

    @guarded.get("/status")
    def status() -> dict[str, Any]:
        """Each dependency as last seen (ok/error, last success, last error without credentials)."""
        seen = {name: health.to_api() for name, health in dependencies.snapshot().items()}
        owners: dict[str, str] | None = None
        try:
            service.store.ping()
            active: int | None = service.store.count_active()
            owners = service.store.owners()
            seen["store"] = {"status": "ok", "last_error": None}
        except Exception as exc:  # a status page reports, it never raises
            active = None
            seen["store"] = {"status": "error", "last_error": redact_urls(f"{type(exc).__name__}: {exc}")[:300]}
        # Which replica drives which incident right now (live leases only), and who answered.
        replicas = {"self": service.leases.owner, "leases": owners}
        return {"version": __version__, "active_incidents": active, "dependencies": seen, "replicas": replicas}

    if readiness_report is not None:

        @guarded.get("/api/readiness")
        def rollback_readiness(app: Annotated[str | None, Query(max_length=255)] = None) -> dict[str, Any]:
            """The last rollback readiness run: per guarded app, ready or its blockers (docs/readiness.md)."""
            report = readiness_report()
            if app is not None:
                report = report | {"apps": [a for a in report["apps"] if a["app"] == app]}
            return report

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """Liveness: the process answers and its state database is still the file on disk."""
        if dead := problems_of(alive_checks):
            return JSONResponse({"status": "not alive", "problems": dead}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness for intake only: store writable, policies loaded (never git or Argo CD)."""
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

    app.include_router(guarded)
    for router in routers:
        app.include_router(router)  # its lifespan runs inside the service's
    return app
