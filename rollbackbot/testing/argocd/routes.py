"""HTTP surface of the fake, in the real server's middleware order (docs/argocd-wire.md §8.1, §1):

Content-Type (415 text) → gateway routing (404/405 text, before auth) → forced faults (``failNext``)
→ body decoding (400 code 3) → auth (401) → handler (RBAC 403/404, business errors).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from rollbackbot.testing.argocd import views
from rollbackbot.testing.argocd.decode import (
    HTTP_TO_GRPC,
    PATCH_REQUEST,
    ROLLBACK_REQUEST,
    SESSION_REQUEST,
    SYNC_REQUEST,
    ArgoError,
    Struct,
    decode_body,
)
from rollbackbot.testing.argocd.git import GitError
from rollbackbot.testing.argocd.model import AppSim
from rollbackbot.testing.argocd.rbac import can_i
from rollbackbot.testing.argocd.state import Caller, FakeArgoState
from rollbackbot.testing.argocd.wire import JSON

SSE_KEEPALIVE_SECONDS = 15.0
RECORD_BODY_LIMIT = 65536


@dataclass
class Call:
    """One API request after routing: what a handler needs."""

    state: FakeArgoState
    request: Request
    params: dict[str, str]
    query: dict[str, str]
    body: JSON = field(default_factory=dict)
    caller: Caller | None = None

    def app(self, project: str | None = None) -> AppSim:
        """The addressed app, RBAC-checked (``project`` from query unless given)."""
        name = self.params.get("name") or self.params["applicationName"]
        assert self.caller is not None
        return self.state.find(name, project if project is not None else self.query.get("project"), self.caller)


Handler = Callable[[Call], Awaitable[Response]]


def json_response(data: Any, status: int = 200) -> Response:
    """Compact JSON like Go's encoding/json."""
    return JSONResponse(data, status_code=status)


def error_response(error: ArgoError) -> Response:
    """The grpc-gateway error body with the mapped HTTP status."""
    return json_response(error.body(), error.http_status)


def text_response(status: int, message: str) -> Response:
    """Go ``http.Error``: text/plain with a trailing newline."""
    return PlainTextResponse(message + "\n", status_code=status)


async def _get_app(call: Call) -> Response:
    projects = call.request.query_params.getlist("project") + call.request.query_params.getlist("projects")
    if len(projects) > 1:
        raise ArgoError(3, "multiple projects specified - the get endpoint accepts either zero or one project")
    app = call.app(projects[0] if projects else "")
    refresh = call.query.get("refresh") if "refresh" in call.request.query_params else None
    return json_response(await call.state.get(app, refresh))


async def _sync_app(call: Call) -> Response:
    return json_response(call.state.sync(call.app(call.body.get("project", "")), call.body, _caller(call)))


async def _rollback_app(call: Call) -> Response:
    return json_response(call.state.rollback(call.app(call.body.get("project", "")), call.body, _caller(call)))


async def _terminate_operation(call: Call) -> Response:
    return json_response(call.state.terminate(call.app()))


async def _patch_app(call: Call) -> Response:
    return json_response(call.state.patch(call.app(call.body.get("project", "")), call.body))


async def _sync_windows(call: Call) -> Response:
    return json_response(views.sync_windows(call.app()))


async def _resource_tree(call: Call) -> Response:
    app = call.app()
    return json_response(views.resource_tree(app, app.obj["metadata"]["creationTimestamp"]))


async def _managed_resources(call: Call) -> Response:
    return json_response(views.managed_resources(call.app(), call.query))


async def _app_events(call: Call) -> Response:
    app = call.app()
    return json_response(views.events(app, app.obj["metadata"]["resourceVersion"]))


async def _pod_logs(call: Call) -> Response:
    pod = call.params.get("podName") or call.query.get("podName")
    entries = views.log_entries(call.app(), call.query, pod, call.state.controller.stamp())
    return Response(
        "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries), media_type="application/json"
    )


async def _revision_metadata(call: Call) -> Response:
    call.app()
    try:
        return json_response(call.state.git.revision_metadata(call.params["revision"]))
    except GitError as exc:
        raise ArgoError(2, f"rpc error: code = Unknown desc = {exc}") from None


async def _can_i(call: Call) -> Response:
    caller, params = _caller(call), call.params
    value = can_i(
        params["resource"],
        params["action"],
        params["subresource"],
        caller_project=caller.project,
        denied=call.state.config.denied,
    )
    return json_response({"value": value})


async def _version(call: Call) -> Response:
    return json_response(views.FULL_VERSION if _optional_caller(call) else {"Version": views.VERSION})


async def _userinfo(call: Call) -> Response:
    caller = _optional_caller(call)
    if caller is None:
        return json_response({"loggedIn": False})
    return json_response({"loggedIn": True, "username": caller.username, "iss": "argocd"})


async def _create_session(call: Call) -> Response:
    body = call.body
    token = call.state.login(body.get("username", ""), body.get("password", ""), body.get("token", ""))
    response = json_response({"token": token})
    response.set_cookie("argocd.token", token, path="/", httponly=True, samesite="lax")
    return response


async def _delete_session(call: Call) -> Response:
    response = json_response({})
    response.delete_cookie("argocd.token", path="/")
    return response


async def _watch_applications(call: Call) -> Response:
    """NDJSON (or SSE) stream: ADDED per visible app, then MODIFIED whenever it changes."""
    caller, name = _caller(call), call.query.get("name")
    project = call.query.get("projects") or call.query.get("project")
    apps = [
        a
        for a in call.state.apps.values()
        if name in (None, "", a.name)
        and caller.project in (None, a.config.project)
        and project in (None, "", a.config.project)
    ]
    sse = "text/event-stream" in call.request.headers.get("accept", "")

    def frame(kind: str, app: AppSim) -> str:
        payload = json.dumps({"result": {"type": kind, "application": call.state.snapshot(app)}}, separators=(",", ":"))
        return f"data: {payload} \n\n" if sse else payload + "\n"

    async def stream() -> AsyncIterator[str]:
        seen = {a.name: a.obj["metadata"]["resourceVersion"] for a in apps}
        for app in apps:
            yield frame("ADDED", app)
        keepalive = time.monotonic()
        while True:
            await asyncio.sleep(call.state.config.tick)
            for app in apps:
                if app.obj["metadata"]["resourceVersion"] != seen[app.name]:
                    seen[app.name] = app.obj["metadata"]["resourceVersion"]
                    yield frame("MODIFIED", app)
            if sse and time.monotonic() - keepalive >= SSE_KEEPALIVE_SECONDS:
                keepalive = time.monotonic()
                yield ":\n"

    return StreamingResponse(stream(), media_type="text/event-stream" if sse else "application/json")


@dataclass(frozen=True)
class Route:
    """A gateway route: method, path template, handler (None: real endpoint the fake does not implement)."""

    method: str
    template: str
    handler: Handler | None = None
    body: Struct | None = None
    public: bool = False  # services with AuthFuncOverride (session, version)

    @property
    def regex(self) -> re.Pattern[str]:
        """grpc-gateway path variables match exactly one segment."""
        return re.compile(re.sub(r"\{([^}]+)\}", lambda m: f"(?P<{m.group(1).replace('.', '_')}>[^/]+)", self.template))


A = "/api/v1/applications"
ROUTES = [
    Route("GET", "/api/version", _version, public=True),
    Route("POST", "/api/v1/session", _create_session, SESSION_REQUEST, public=True),
    Route("DELETE", "/api/v1/session", _delete_session, public=True),
    Route("GET", "/api/v1/session/userinfo", _userinfo, public=True),
    Route("GET", "/api/v1/account/can-i/{resource}/{action}/{subresource}", _can_i),
    Route("GET", A + "/{name}", _get_app),
    Route("PATCH", A + "/{name}", _patch_app, PATCH_REQUEST),
    Route("POST", A + "/{name}/sync", _sync_app, SYNC_REQUEST),
    Route("POST", A + "/{name}/rollback", _rollback_app, ROLLBACK_REQUEST),
    Route("DELETE", A + "/{name}/operation", _terminate_operation),
    Route("GET", A + "/{name}/syncwindows", _sync_windows),
    Route("GET", A + "/{applicationName}/resource-tree", _resource_tree),
    Route("GET", A + "/{applicationName}/managed-resources", _managed_resources),
    Route("GET", A + "/{name}/events", _app_events),
    Route("GET", A + "/{name}/logs", _pod_logs),
    Route("GET", A + "/{name}/pods/{podName}/logs", _pod_logs),
    Route("GET", A + "/{name}/revisions/{revision}/metadata", _revision_metadata),
    Route("GET", "/api/v1/stream/applications", _watch_applications),
    *(
        Route("GET", A + s)
        for s in ("", "/{name}/links", "/{name}/manifests", "/{name}/resource", "/{name}/resource/actions")
    ),
    *(Route("GET", A + s) for s in ("/{name}/resource/links", "/{appName}/server-side-diff")),
    *(Route("GET", A + f"/{{name}}/revisions/{{revision}}/{s}") for s in ("chartdetails", "ocimetadata")),
    *(Route("POST", A + s) for s in ("", "/manifestsWithFiles", "/{name}/resource", "/{name}/resource/actions")),
    Route("POST", A + "/{name}/resource/actions/v2"),
    *(Route("PUT", A + s) for s in ("/{name}", "/{name}/spec")),
    *(Route("DELETE", A + s) for s in ("/{name}", "/{name}/resource")),
    Route("GET", "/api/v1/stream/applications/{applicationName}/resource-tree"),
]
COMPILED = [(route, route.regex) for route in ROUTES]


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | Response:
    """The route for method+path (still percent-encoded), or grpc-gateway's 404/405 plain-text answer.

    Segments are split before they are decoded, so ``%2F`` stays inside one path variable.
    """
    matches = [
        (route, {k: unquote(v) for k, v in m.groupdict().items()})
        for route, regex in COMPILED
        if (m := regex.fullmatch(path))
    ]
    for route, params in matches:
        if route.method == method:
            return route, params
    return text_response(405, "Method Not Allowed") if matches else text_response(404, "Not Found")


def bearer_token(request: Request) -> str | None:
    """Token from ``Authorization: Bearer`` (only if JWT-shaped, else ignored) or the argocd.token cookie."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
        if len(token.split(".")) == 3:
            return token
    cookie = request.cookies.get("argocd.token")
    return cookie if cookie and len(cookie.split(".")) == 3 else None


def _caller(call: Call) -> Caller:
    assert call.caller is not None
    return call.caller


def _optional_caller(call: Call) -> Caller | None:
    try:
        return call.state.authenticate(bearer_token(call.request))
    except ArgoError:
        return None


def forced_failure(status: int) -> Response:
    """A ``failNext`` answer: proxies answer 502/504 with HTML, the server maps others to gRPC errors."""
    if status in (502, 504):
        title = {502: "502 Bad Gateway", 504: "504 Gateway Time-out"}[status]
        return Response(f"<html><body><h1>{title}</h1></body></html>\n", status, media_type="text/html")
    return json_response(
        ArgoError(HTTP_TO_GRPC.get(status, 2), "simulated fault injected by fake-argocd").body(), status
    )


async def handle_api(state: FakeArgoState, request: Request, raw: bytes) -> Response:
    """Run one /api request through the real server's middleware order."""
    path, method = request.url.path, request.method
    if method != "GET" and path.startswith("/api/"):
        if request.headers.get("content-type", "").lower() != "application/json":
            return text_response(415, "Invalid content type")
    raw_path = request.scope.get("raw_path")  # httpx's ASGITransport puts the query string in it too
    routed = match_route(method, raw_path.decode("latin-1").split("?", 1)[0] if raw_path else quote(path))
    if isinstance(routed, Response):
        return routed
    route, params = routed
    forced = state.take_failure(params.get("name") or params.get("applicationName") or request.query_params.get("name"))
    if forced is not None:
        return forced_failure(forced)
    call = Call(state, request, params, dict(request.query_params))
    try:
        if route.body is not None:
            call.body = decode_body(raw, route.body)
            if route.body is ROLLBACK_REQUEST and "id" not in call.body:
                # proto2 required field: the gateway fails marshalling before the server (and auth) runs
                raise ArgoError(13, 'grpc: error while marshaling: proto: required field "id" not set')
        if not route.public:
            call.caller = state.authenticate(bearer_token(request))
        if route.handler is None:
            raise ArgoError(12, f"{method} {route.template} is not implemented by fake-argocd")
        return await route.handler(call)
    except ArgoError as error:
        return error_response(error)


def record(state: FakeArgoState, request: Request, raw: bytes, status: int) -> None:
    """Remember an API request for tests — never the Authorization header or cookie, nor passwords."""
    text = raw[:RECORD_BODY_LIMIT].decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and "password" in parsed:
        parsed["password"] = "<redacted>"
        text = json.dumps(parsed)
    has_bearer = request.headers.get("authorization", "")[:7].lower() == "bearer "
    auth = "bearer" if has_bearer else ("cookie" if "argocd.token" in request.cookies else "none")
    entry: JSON = {"method": request.method, "path": request.url.path, "query": dict(request.query_params)}
    entry |= {"query_string": request.url.query, "content_type": request.headers.get("content-type")}
    entry |= {"body": parsed, "raw_body": text, "auth": auth, "status": status, "time": state.controller.stamp()}
    state.requests.append(entry)
