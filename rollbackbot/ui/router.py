"""The incident pages (docs/ui.md): ``/ui/incidents`` and ``/ui/incidents/{id}``, behind a session.

Server-rendered with Jinja2 (autoescaped; invisible and bidi characters shown as ``<U+XXXX>``), one
stylesheet from the package, no JavaScript, and a strict Content-Security-Policy on every answer.
Sign-in is the login form (``POST /ui/login`` with the API token in the field ``token``), which sets
an HttpOnly, Secure, SameSite=Strict session cookie, or an authenticating proxy's user header when
the request comes from one of ``ROLLBACKBOT_UI_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from anyio import from_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.cursors import InvalidCursor, decode_cursor, encode_cursor
from rollbackbot.ports import IncidentPage, IncidentStore
from rollbackbot.ui import chart, sources, views
from rollbackbot.ui.auth import COOKIE_NAME, LoginThrottle, ProxyTrust, SessionSigner

log = logging.getLogger("rollbackbot.ui")

PREFIX = "/ui"
MAX_FORM_BYTES = 4096
LIST_SCAN = 1000  # at most this many incidents are read for one list page (the policy filter)
DEFAULT_PAGE = 50
MAX_PAGE = 200
CHART_INCIDENTS = 20
SINCE_CHOICES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC_FILES = {"ui.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass
class UiConfig:
    """What the pages need: the incident store, the API token, and where commits and evidence are read."""

    store: IncidentStore
    token: str
    git_workdir: Path
    proxy: ProxyTrust = field(default_factory=lambda: ProxyTrust(()))
    slack_message: Callable[[str], str | None] | None = None  # incident id → "channel C…, message ts …"
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    readiness: Callable[[str], dict[str, Any] | None] | None = None  # app → its last readiness (docs/readiness.md)
    # Read-your-writes: waits (bounded) until the webhooks accepted so far are decided (Service.caught_up).
    caught_up: Callable[[], Coroutine[Any, Any, bool]] | None = None


def _finalize(value: Any) -> Any:
    if isinstance(value, Markup) or value is None:
        return "" if value is None else value
    return views.visible(str(value))


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("rollbackbot.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["relative"] = views.relative
    env.filters["duration"] = views.duration
    env.filters["short"] = lambda sha: (sha or "")[:12]
    env.filters["utc"] = lambda at: f"{at:%Y-%m-%d %H:%M:%S} UTC" if at else "—"
    env.filters["iso"] = lambda at: at.isoformat() if at else ""
    env.filters["redact"] = views.redact
    env.filters["size"] = _size
    return env


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def _safe_next(target: str) -> str:
    """Only a path inside the UI: never another host (``//evil``) or scheme."""
    if target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/incidents"


def ui_router(config: UiConfig) -> APIRouter:
    """The router with every page; mounted only when ROLLBACKBOT_UI=true."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    env = _environment()
    signer = SessionSigner(config.token.encode())

    def render(name: str, status: int = 200, **context: Any) -> Response:
        html = env.get_template(name).render(**context)
        return _secure(HTMLResponse(html, status_code=status))

    def user_of(request: Request) -> str | None:
        peer = request.client.host if request.client else None
        by_proxy = config.proxy.user_of(peer, {k.lower(): v for k, v in request.headers.items()})
        return by_proxy or signer.user_of(request.cookies.get(COOKIE_NAME))

    def to_login(request: Request) -> Response:
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _secure(RedirectResponse(f"{PREFIX}/login?next={quote(_safe_next(wanted), safe='')}", 303))

    @router.get("")
    def home() -> Response:
        return _secure(RedirectResponse(f"{PREFIX}/incidents", 303))

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            return _secure(Response("not found", 404, media_type="text/plain"))
        body = resources.files("rollbackbot.ui").joinpath(f"static/{name}").read_bytes()
        response = _secure(Response(body, media_type=STATIC_FILES[name]))
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    @router.get("/login")
    def login_form(request: Request, next: str = "") -> Response:  # noqa: A002 - the query parameter's name
        return render("login.html", next=_safe_next(next), error="", user=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        if config.throttle.blocked(client):
            log.warning("ui login throttled", extra={"client": client})
            return render(
                "login.html", 429, next=f"{PREFIX}/incidents", error="Too many attempts; wait a few minutes.", user=None
            )
        body = await request.body()
        fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace")) if len(body) <= MAX_FORM_BYTES else {}
        token = (fields.get("token") or [""])[0]
        target = _safe_next((fields.get("next") or [""])[0])
        if not signer.token_matches(token):
            config.throttle.failed(client)
            log.info("ui login refused", extra={"client": client})
            return render("login.html", 401, next=target, error="That token is not valid.", user=None)
        response = _secure(RedirectResponse(target, 303))
        response.set_cookie(
            COOKIE_NAME,
            signer.issue("api-token"),
            max_age=signer.lifetime,
            path=PREFIX,
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response

    @router.post("/logout")
    def logout() -> Response:
        response = _secure(RedirectResponse(f"{PREFIX}/login", 303))
        response.delete_cookie(COOKIE_NAME, path=PREFIX, secure=True, httponly=True, samesite="strict")
        return response

    @router.get("/incidents")
    def incident_list(
        request: Request,
        *,
        app: str = "",
        state: str = "",
        policy: str = "",
        since: str = "",
        cursor: str = "",
        limit: int = DEFAULT_PAGE,
    ) -> Response:
        user = user_of(request)
        if user is None:
            return to_login(request)
        limit = max(1, min(limit, MAX_PAGE))
        try:
            after = decode_cursor(cursor) if cursor else None
        except InvalidCursor:
            return render(
                "missing.html", 400, user=user, message="That link to a page of incidents is not valid (cursor)."
            )
        window = SINCE_CHOICES.get(since)
        chosen = views.ListFilter(
            app=app,
            state=state if state in IncidentState.__members__ else "",
            policy=policy,
            since=config.now() - window if window else None,
        )

        def fetch(count: int, start: tuple[datetime, str] | None) -> IncidentPage:
            return config.store.page(
                count, start, app=chosen.app or None, state=chosen.state or None, since=chosen.since
            )

        page, next_after = views.filtered_page(fetch, chosen, after, limit, LIST_SCAN)
        next_cursor = encode_cursor(next_after) if next_after else None
        recent = config.store.recent(CHART_INCIDENTS)
        query = {"app": app, "state": chosen.state, "policy": policy, "since": since if window else "", "limit": limit}
        return render(
            "list.html",
            user=user,
            incidents=[_row(i) for i in page],
            filters=query,
            apps=views.distinct([*(i.app for i in (*recent, *page)), app]),
            policies=views.distinct([*(i.policy for i in (*recent, *page)), policy]),
            states=[s.value for s in IncidentState],
            since_choices=list(SINCE_CHOICES),
            next_cursor=next_cursor,
            next_query={**query, "cursor": next_cursor},
            chart=chart.reaction_chart([views.milestones(i) for i in recent]),
        )

    @router.get("/incidents/{incident_id}")
    def incident_page(request: Request, incident_id: str) -> Response:
        user = user_of(request)
        if user is None:
            return to_login(request)
        incident = config.store.get(incident_id) if len(incident_id) <= 64 else None
        if incident is None and config.caught_up is not None and len(incident_id) <= 64:
            from_thread.run(config.caught_up)  # its webhook may have been answered but not decided yet
            incident = config.store.get(incident_id)
        if incident is None:
            return render("missing.html", 404, user=user, incident_id=incident_id[:64])
        slack = config.slack_message(incident.id) if config.slack_message else None
        recent = config.store.recent(CHART_INCIDENTS)
        return render(
            "incident.html",
            user=user,
            incident=incident,
            row=_row(incident),
            timeline=views.timeline(incident),
            decision=views.decision(incident, slack),
            plan=views.plan(incident),
            commit=sources.read_commit(config.git_workdir, incident.rollback_commit),
            argo=views.argo_outcome(incident),
            verification=views.verification(incident),
            evidence=sources.read_evidence(incident.evidence_url, incident.id),
            chart=chart.reaction_chart([views.milestones(i) for i in recent]),
            readiness=config.readiness(incident.app) if config.readiness else None,
        )

    @router.get("/incidents/{incident_id}/evidence/{name:path}")
    def evidence_file(request: Request, incident_id: str, name: str) -> Response:
        if user_of(request) is None:
            return to_login(request)
        incident = config.store.get(incident_id) if len(incident_id) <= 64 else None
        bundle = sources.read_evidence(incident.evidence_url, incident.id) if incident else None
        path = None
        if bundle and bundle.readable and bundle.root:
            path = sources.evidence_file(bundle.root, {f.name for f in bundle.files}, name)
        if path is None:
            return render("missing.html", 404, user="", incident_id=incident_id[:64])
        response = FileResponse(path, media_type="application/octet-stream", filename=Path(name).name)
        return _secure(response)

    return router


@dataclass(frozen=True)
class Row:
    """One incident as the list (and the page header) shows it."""

    id: str
    app: str
    alert: str
    severity: str
    state: str
    tone: str
    policy: str
    mode: str
    created_at: datetime
    duration: str
    change: str


def _row(incident: Incident) -> Row:
    change = ""
    if incident.to_ref.tag:
        change = f"{incident.from_ref.tag or 'untagged'} → {incident.to_ref.tag}"
    return Row(
        id=incident.id,
        app=incident.app,
        alert=incident.alert.name,
        severity=incident.alert.labels.get("severity", "unknown"),
        state=incident.state.value,
        tone=views.STATE_TONE.get(incident.state, "info"),
        policy=incident.policy,
        mode=incident.mode,
        created_at=incident.created_at,
        duration=views.duration(views.total_seconds(incident)),
        change=change,
    )
