"""ArgoCDClient against httpx.MockTransport: wire shapes, error mapping, retries, waiting. No network."""

from __future__ import annotations

import copy
import inspect
import json
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.argocd.client import MAX_LOG_BYTES, ArgoCDClient
from rollbackbot.core.argo_status import Lineage, Relation
from rollbackbot.errors import PermanentError, Superseded, TransientError
from rollbackbot.ports import ArgoCD

EXAMPLES = Path(Path(__file__).resolve().parents[1] / "fixtures" / "argocd" / "examples")
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcm9qOnBheW1lbnRzOnJvbGxiYWNrLWJvdCJ9.c2VjcmV0LXNpZ25hdHVyZS14eXo"
BASE = "https://argocd.test"
APP, PROJECT = "payments-api", "payments"
APP_PATH = f"/api/v1/applications/{APP}"
X = "c41d7e2a9f0b3c6d8e1f4a7b0c3d6e9f2a5b8c1d"
B = "9b1e4c7a2d5f8e0b3c6a9d2f5e8b1c4a7d0f3e6b"
ERRORS: dict[str, dict[str, Any]] = json.loads((EXAMPLES / "errors.json").read_text())

Handler = Callable[[httpx.Request], httpx.Response]


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def manual(app: dict[str, Any]) -> dict[str, Any]:
    """The same app with auto-sync switched off the v3.1 way."""
    app = copy.deepcopy(app)
    app["spec"]["syncPolicy"]["automated"]["enabled"] = False
    return app


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


def error(status: int, key: str) -> httpx.Response:
    return httpx.Response(status, json=ERRORS[key])


def text(status: int, body: str) -> httpx.Response:
    return httpx.Response(status, text=body, headers={"Content-Type": "text/plain; charset=utf-8"})


def sequence(*responses: httpx.Response | Exception) -> Callable[[], httpx.Response]:
    """Answers in order, then keeps repeating the last one."""
    items: Iterator[httpx.Response | Exception] = iter(responses)
    last: list[httpx.Response | Exception] = [responses[-1]]

    def next_answer() -> httpx.Response:
        answer = next(items, last[0])
        if isinstance(answer, Exception):
            raise answer
        return answer

    return next_answer


class FakeTime:
    """Monotonic clock moved only by the injected sleep, so waits run instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Server:
    """Routes requests to per-route answer sequences and records every request."""

    def __init__(self, **routes: Callable[[], httpx.Response]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/sync"):
            return self.routes["sync"]()
        if path.endswith("/logs"):
            return self.routes["logs"]()
        if path.endswith("/resource-tree"):
            return self.routes["tree"]()
        if "refresh" in request.url.params and "refresh" in self.routes:
            return self.routes["refresh"]()
        return self.routes["get"]()

    def calls(self, method: str, suffix: str = "") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.endswith(suffix)]

    def posts(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.calls("POST", "/sync")]


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def connect(clock: FakeTime) -> Callable[..., ArgoCDClient]:
    def make(server: Handler, **options: Any) -> ArgoCDClient:
        options.setdefault("retry_attempts", 3)
        return ArgoCDClient(
            BASE,
            SecretStr(TOKEN),
            transport=httpx.MockTransport(server),
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            **options,
        )

    return make


# --- request shapes -------------------------------------------------------------------------------------


async def test_get_application_sends_bearer_and_project_and_no_content_type(connect: Any) -> None:
    server = Server(get=sequence(ok(example("app_get_incident"))))
    async with connect(server) as client:
        app = await client.get_application(APP, PROJECT)
    assert app["metadata"]["name"] == APP
    (request,) = server.requests
    assert (request.method, request.url.path, request.url.query) == ("GET", APP_PATH, b"project=payments")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "Content-Type" not in request.headers


async def test_refresh_asks_for_a_normal_refresh_with_its_own_timeout(connect: Any) -> None:
    server = Server(get=sequence(ok(example("app_get_final_synced_healthy"))))
    async with connect(server, refresh_timeout=42.0) as client:
        health = await client.refresh(APP, PROJECT)
    (request,) = server.requests
    assert request.url.path == APP_PATH
    assert request.url.query == b"refresh=normal&project=payments"
    assert request.extensions["timeout"]["read"] == 42.0
    assert (health.app, health.sync_status, health.health_status, health.revision) == (
        APP,
        "Synced",
        "Healthy",
        X,
    )


async def test_refresh_that_hangs_falls_back_to_a_plain_get(connect: Any) -> None:
    server = Server(
        refresh=sequence(httpx.ReadTimeout("refresh hung")),
        get=sequence(ok(example("app_get_incident"))),
    )
    async with connect(server) as client:
        health = await client.refresh(APP, PROJECT)
    queries = [r.url.query for r in server.requests]
    # One refresh attempt only (a retry would hang again), then a plain read.
    assert queries == [b"refresh=normal&project=payments", b"project=payments"]
    assert health.health_status == "Degraded"


async def test_sync_of_auto_sync_app_never_sends_the_sha(connect: Any) -> None:
    server = Server(get=sequence(ok(example("app_get_incident"))), sync=sequence(ok(example("sync_response"))))
    async with connect(server) as client:
        await client.sync(APP, PROJECT, X, prune=True)
    (post,) = server.calls("POST")
    assert post.url.path == f"{APP_PATH}/sync"
    assert post.url.query == b""
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(post.content) == {"prune": True, "project": PROJECT}


async def test_sync_of_manual_app_sends_the_sha(connect: Any) -> None:
    server = Server(get=sequence(ok(manual(example("app_get_incident")))), sync=sequence(ok(example("sync_response"))))
    async with connect(server) as client:
        await client.sync(APP, PROJECT, X, prune=False)
    assert server.posts() == [{"revision": X, "prune": False, "project": PROJECT}]
    assert server.calls("POST")[0].headers["Content-Type"] == "application/json"


async def test_sync_of_app_without_sync_policy_sends_the_sha(connect: Any) -> None:
    app = example("app_get_incident")
    del app["spec"]["syncPolicy"]
    server = Server(get=sequence(ok(app)), sync=sequence(ok(example("sync_response"))))
    async with connect(server) as client:
        await client.sync(APP, PROJECT, X, prune=True)
    assert server.posts() == [{"revision": X, "prune": True, "project": PROJECT}]


async def test_resource_tree_path_and_query(connect: Any) -> None:
    server = Server(tree=sequence(ok({"nodes": [{"kind": "Pod", "name": "p"}]})))
    async with connect(server) as client:
        tree = await client.get_resource_tree(APP, PROJECT)
    assert tree["nodes"][0]["kind"] == "Pod"
    (request,) = server.requests
    assert (request.url.path, request.url.query) == (f"{APP_PATH}/resource-tree", b"project=payments")


async def test_root_path_and_odd_app_names_stay_inside_the_api(clock: FakeTime) -> None:
    server = Server(get=sequence(ok({})))
    async with ArgoCDClient(
        "https://argocd.test/argocd", SecretStr(TOKEN), transport=httpx.MockTransport(server)
    ) as client:
        await client.get_application("a/../b", PROJECT)
    assert server.requests[0].url.raw_path.startswith(b"/argocd/api/v1/applications/a%2F..%2Fb?")


# --- errors and retries ---------------------------------------------------------------------------------


async def test_503_is_retried_then_succeeds(connect: Any, clock: FakeTime) -> None:
    unavailable = httpx.Response(503, json={"error": "x", "code": 14, "message": "connection refused"})
    server = Server(get=sequence(unavailable, unavailable, ok(example("app_get_incident"))))
    async with connect(server, retry_wait_max=4.0) as client:
        await client.get_application(APP, PROJECT)
    assert len(server.requests) == 3
    assert len(clock.sleeps) == 2
    assert all(0 < s <= 4.0 for s in clock.sleeps)


@pytest.mark.parametrize("status", [429, 500, 502, 504])
async def test_overload_and_server_errors_are_transient(connect: Any, status: int) -> None:
    server = Server(get=sequence(text(status, "<html>bad gateway</html>")))
    async with connect(server, retry_attempts=2) as client:
        with pytest.raises(TransientError, match=f"HTTP {status}"):
            await client.get_application(APP, PROJECT)
    assert len(server.requests) == 2


async def test_transport_error_gives_up_after_the_configured_attempts(connect: Any, clock: FakeTime) -> None:
    server = Server(get=sequence(httpx.ConnectError("connection refused")))
    async with connect(server, retry_attempts=4) as client:
        with pytest.raises(TransientError, match="gave up after 4 attempts") as caught:
            await client.get_application(APP, PROJECT)
    assert len(server.requests) == 4
    assert len(clock.sleeps) == 3
    assert "ConnectError" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "key", "expected"),
    [
        (403, "403_permission_denied", f"GET {APP_PATH} failed: HTTP 403: permission denied"),
        (404, "404_not_found", 'HTTP 404: applications.argoproj.io "payments-api" not found'),
        (400, "400_bad_json", "HTTP 400: json: cannot unmarshal"),
    ],
)
async def test_client_errors_are_permanent_after_one_call(connect: Any, status: int, key: str, expected: str) -> None:
    server = Server(get=sequence(error(status, key)))
    async with connect(server) as client:
        with pytest.raises(PermanentError) as caught:
            await client.get_application(APP, PROJECT)
    assert len(server.requests) == 1
    assert expected in str(caught.value)


async def test_401_names_the_token_problem(connect: Any) -> None:
    server = Server(get=sequence(error(401, "401_no_token")))
    async with connect(server) as client:
        with pytest.raises(PermanentError) as caught:
            await client.get_application(APP, PROJECT)
    assert str(caught.value).startswith("Argo CD rejected the token (401): no session information")
    assert len(server.requests) == 1


async def test_415_text_body_surfaces_readably(connect: Any) -> None:
    server = Server(get=sequence(ok(example("app_get_incident"))), sync=sequence(text(415, "Invalid content type\n")))
    async with connect(server) as client:
        with pytest.raises(PermanentError) as caught:
            await client.sync(APP, PROJECT, X, prune=True)
    assert str(caught.value) == f"Argo CD POST {APP_PATH}/sync failed: HTTP 415: Invalid content type"
    assert len(server.calls("POST")) == 1


async def test_gateway_404_text_plain(connect: Any) -> None:
    server = Server(get=sequence(text(404, "Not Found\n")))
    async with connect(server) as client:
        with pytest.raises(PermanentError, match="HTTP 404: Not Found$"):
            await client.get_application(APP, PROJECT)


async def test_autosync_revision_conflict_is_permanent(connect: Any) -> None:
    server = Server(get=sequence(ok(example("app_get_incident"))), sync=sequence(error(400, "400_autosync_revision")))
    async with connect(server) as client:
        with pytest.raises(PermanentError, match="Cannot sync to c41d7e2a"):
            await client.sync(APP, PROJECT, X, prune=True)
    assert len(server.calls("POST")) == 1


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        (text(200, "<html>Log in with SSO</html>"), "without JSON"),
        (ok(["not", "an", "object"]), "JSON list, not an object"),
    ],
)
async def test_200_that_is_not_a_json_object_is_transient(
    connect: Any, response: httpx.Response, fragment: str
) -> None:
    server = Server(get=sequence(response))
    async with connect(server, retry_attempts=2) as client:
        with pytest.raises(TransientError, match=fragment):
            await client.get_application(APP, PROJECT)
    assert len(server.requests) == 2


async def test_every_call_is_logged_at_debug(connect: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rollbackbot.argocd")
    server = Server(get=sequence(error(404, "404_not_found")))
    async with connect(server) as client:
        with pytest.raises(PermanentError):
            await client.get_application(APP, PROJECT)
    (record,) = [r for r in caplog.records if r.name == "rollbackbot.argocd" and r.levelno == logging.DEBUG]
    assert record.getMessage() == f"argocd GET {APP_PATH} -> 404 in 0 ms"


async def test_token_never_appears_in_errors_or_logs(connect: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def echo_token(request: httpx.Request) -> httpx.Response:
        # A hostile or buggy proxy echoing the Authorization header back must not leak it.
        leak = request.headers["Authorization"]
        return httpx.Response(403, json={"error": leak, "code": 7, "message": f"denied for {leak}"})

    failures: list[BaseException] = []
    answers: list[Handler] = [
        echo_token,
        lambda r: httpx.Response(503, text=f"upstream said {r.headers['Authorization']}"),
        lambda r: httpx.Response(200, text=f"<html>{r.headers['Authorization']}</html>"),
        lambda r: error(401, "401_expired"),
        lambda r: (_ for _ in ()).throw(httpx.ConnectError(f"proxy refused {r.headers['Authorization']}")),
    ]
    for answer in answers:
        async with connect(answer, retry_attempts=2) as client:
            with pytest.raises((PermanentError, TransientError)) as caught:
                await client.get_application(APP, PROJECT)
            failures.append(caught.value)
    for failure in failures:
        rendered = "".join(traceback.format_exception(failure))
        assert TOKEN not in rendered
        assert TOKEN not in repr(failure)
    assert "denied for Bearer ***" in str(failures[0])
    assert caplog.records, "expected log records to inspect"
    assert TOKEN not in caplog.text
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


# --- sync: another operation in progress ---------------------------------------------------------------


def running_other_op() -> dict[str, Any]:
    """Auto-sync of the bad commit B still running."""
    app = example("app_get_running")
    app["operation"]["sync"]["revision"] = B
    app["status"]["operationState"]["syncResult"]["revision"] = B
    return app


IN_PROGRESS = "400_op_in_progress"


async def test_operation_in_progress_is_waited_out_then_synced_again(connect: Any, clock: FakeTime) -> None:
    server = Server(
        get=sequence(
            ok(example("app_get_incident")),  # decide auto-sync before the first POST
            ok(running_other_op()),
            ok(running_other_op()),
            ok(example("app_get_incident")),  # B's op finished; not ours
            ok(example("app_get_incident")),  # decide auto-sync before the second POST
        ),
        sync=sequence(error(400, IN_PROGRESS), ok(example("sync_response"))),
    )
    async with connect(server, poll_interval=2.0) as client:
        await client.sync(APP, PROJECT, X, prune=True)
    assert server.posts() == [{"prune": True, "project": PROJECT}] * 2
    assert clock.sleeps and all(s == 2.0 for s in clock.sleeps)


async def test_running_operation_for_our_revision_is_adopted(connect: Any) -> None:
    server = Server(
        get=sequence(ok(example("app_get_incident")), ok(example("app_get_running"))),
        sync=sequence(error(400, IN_PROGRESS)),
    )
    async with connect(server) as client:
        await client.sync(APP, PROJECT, X, prune=True)
    assert len(server.posts()) == 1


async def test_finished_successful_operation_for_our_revision_is_adopted(connect: Any) -> None:
    server = Server(
        get=sequence(ok(example("app_get_incident")), ok(example("app_get_succeeded_progressing"))),
        sync=sequence(error(400, IN_PROGRESS)),
    )
    async with connect(server) as client:
        await client.sync(APP, PROJECT, X, prune=True)
    assert len(server.posts()) == 1


async def test_finished_failed_operation_for_our_revision_is_synced_again(connect: Any) -> None:
    server = Server(
        get=sequence(ok(example("app_get_incident")), ok(example("app_get_failed"))),
        sync=sequence(error(400, IN_PROGRESS), ok(example("sync_response"))),
    )
    async with connect(server) as client:
        await client.sync(APP, PROJECT, X, prune=True)
    assert len(server.posts()) == 2


async def test_operation_that_never_ends_is_bounded(connect: Any, clock: FakeTime) -> None:
    server = Server(
        get=sequence(ok(example("app_get_incident")), ok(running_other_op())),
        sync=sequence(error(400, IN_PROGRESS)),
    )
    start = clock.now
    async with connect(server, busy_timeout=30.0, poll_interval=5.0) as client:
        with pytest.raises(PermanentError, match="another operation is still running after 30s") as caught:
            await client.sync(APP, PROJECT, X, prune=True)
    assert "another operation is running (for 9b1e4c7a2d5f)" in str(caught.value)
    assert 30.0 <= clock.now - start <= 35.0
    assert len(server.posts()) == 1


# --- wait_synced_healthy --------------------------------------------------------------------------------


async def test_wait_returns_health_once_done(connect: Any, clock: FakeTime) -> None:
    server = Server(
        get=sequence(
            ok(example("sync_response")),
            ok(example("app_get_running")),
            ok(example("app_get_succeeded_progressing")),
            ok(example("app_get_final_synced_healthy")),
        )
    )
    async with connect(server, poll_interval=3.0) as client:
        health = await client.wait_synced_healthy(APP, PROJECT, X, timeout=600)
    assert (health.sync_status, health.health_status, health.revision) == ("Synced", "Healthy", X)
    assert clock.sleeps == [3.0, 3.0, 3.0]


async def test_wait_raises_argos_message_when_the_sync_failed(connect: Any) -> None:
    server = Server(get=sequence(ok(example("app_get_running")), ok(example("app_get_failed"))))
    async with connect(server) as client:
        with pytest.raises(PermanentError) as caught:
            await client.wait_synced_healthy(APP, PROJECT, X, timeout=600)
    message = str(caught.value)
    assert message.startswith("Argo CD sync of payments-api to c41d7e2a9f0b failed: operation Failed:")
    assert "spec.template.spec.containers[0].image: Required value" in message


async def test_wait_timeout_reports_the_last_reason(connect: Any, clock: FakeTime) -> None:
    server = Server(get=sequence(ok(example("app_get_succeeded_progressing"))))
    start = clock.now
    async with connect(server, poll_interval=2.0) as client:
        with pytest.raises(PermanentError) as caught:
            await client.wait_synced_healthy(APP, PROJECT, X, timeout=10)
    assert str(caught.value).startswith(
        "payments-api did not become Synced+Healthy at c41d7e2a9f0b within 10s: health Progressing"
    )
    assert clock.now - start == 10.0
    assert len(server.requests) == 6  # t=0,2,4,6,8,10


async def test_wait_rides_out_a_flaky_api_server(connect: Any) -> None:
    server = Server(get=sequence(httpx.Response(502, text="bad gateway"), ok(example("app_get_final_synced_healthy"))))
    async with connect(server, retry_attempts=1) as client:
        health = await client.wait_synced_healthy(APP, PROJECT, X, timeout=60)
    assert health.health_status == "Healthy"


async def test_wait_timeout_while_unreachable_says_so(connect: Any) -> None:
    server = Server(get=sequence(httpx.ConnectError("no route to host")))
    async with connect(server, retry_attempts=1) as client:
        with pytest.raises(PermanentError, match="within 5s: Argo CD unreachable: .*ConnectError"):
            await client.wait_synced_healthy(APP, PROJECT, X, timeout=5)


async def test_wait_stops_at_once_on_permission_errors(connect: Any) -> None:
    server = Server(get=sequence(error(403, "403_permission_denied")))
    async with connect(server) as client:
        with pytest.raises(PermanentError, match="HTTP 403"):
            await client.wait_synced_healthy(APP, PROJECT, X, timeout=600)
    assert len(server.requests) == 1


# --- pod logs -------------------------------------------------------------------------------------------


def log_stream(*entries: dict[str, Any]) -> httpx.Response:
    body = "".join(json.dumps(e) + "\n" for e in entries)
    return httpx.Response(200, text=body, headers={"Content-Type": "application/json"})


def line(content: str, last: bool = False) -> dict[str, Any]:
    return {"result": {"content": content, "podName": "" if last else "pod-1", "last": last}}


async def test_pod_logs_request_and_joined_content(connect: Any) -> None:
    server = Server(
        logs=sequence(log_stream(line("GET /healthz 200"), line("boom"), line("", last=True), line("after last")))
    )
    async with connect(server) as client:
        logs = await client.pod_logs(APP, PROJECT, "pod-1", "payments", container="api", tail_lines=50)
    assert logs == "GET /healthz 200\nboom"
    (request,) = server.requests
    assert request.url.path == f"{APP_PATH}/logs"
    assert dict(request.url.params) == {
        "namespace": "payments",
        "podName": "pod-1",
        "tailLines": "50",
        "follow": "false",
        "project": PROJECT,
        "container": "api",
    }


async def test_pod_logs_are_size_capped(connect: Any) -> None:
    chunk = "x" * 10_000
    server = Server(logs=sequence(log_stream(*[line(chunk) for _ in range(100)])))
    async with connect(server) as client:
        logs = await client.pod_logs(APP, PROJECT, "pod-1", "payments")
    assert len(logs.encode()) <= MAX_LOG_BYTES + 100
    assert logs.endswith(f"[log truncated at {MAX_LOG_BYTES} bytes]")


async def test_pod_logs_stream_error_is_mapped(connect: Any) -> None:
    denied = {
        "error": {
            "grpc_code": 7,
            "http_code": 403,
            "message": "permission denied",
            "http_status": "Forbidden",
        }
    }
    server = Server(logs=sequence(log_stream(denied)))
    async with connect(server) as client:
        with pytest.raises(PermanentError, match="HTTP 403: permission denied"):
            await client.pod_logs(APP, PROJECT, "pod-1", "payments")
    assert len(server.requests) == 1


async def test_pod_logs_http_error_before_stream(connect: Any) -> None:
    server = Server(logs=sequence(error(403, "403_permission_denied")))
    async with connect(server) as client:
        with pytest.raises(PermanentError, match="HTTP 403: permission denied"):
            await client.pod_logs(APP, PROJECT, "pod-1", "payments")


# --- a moving branch: lineage of the revisions Argo CD reports ------------------------------------------

Y = "1f2e3d4c5b6a79880716253443526170a9b8c7d6"  # later, kept the app's paths
Z = "7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"  # later, changed the app's paths


class Lineages:
    """A LineageLookup that answers from a table and records every question."""

    def __init__(self, *answers: Lineage | Exception) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, revision: str) -> Lineage:
        self.asked.append(revision)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def at(name: str, **fields: str) -> dict[str, Any]:
    """An example with status.sync.revision / syncResult.revision / operation revision replaced."""
    app = example(name)
    if "compared" in fields:
        app["status"]["sync"]["revision"] = fields["compared"]
    if "deployed" in fields:
        app["status"]["operationState"]["syncResult"]["revision"] = fields["deployed"]
    if "requested" in fields:
        app["operation"]["sync"]["revision"] = fields["requested"]
    return app


async def test_wait_accepts_a_descendant_that_kept_the_app_paths(connect: Any, clock: FakeTime) -> None:
    lineage = Lineages(Lineage(Y, Relation.descendant))
    server = Server(get=sequence(ok(at("app_get_final_synced_healthy", compared=Y))))
    async with connect(server, poll_interval=1.0) as client:
        health = await client.wait_synced_healthy(APP, PROJECT, X, timeout=60, lineage=lineage)
        with pytest.raises(PermanentError, match="within 5s: sync status Synced at 1f2e3d4c5b6a"):
            await client.wait_synced_healthy(APP, PROJECT, X, timeout=5)  # without lineage: only X counts
    assert (health.sync_status, health.health_status, health.revision) == ("Synced", "Healthy", Y)
    assert lineage.asked == [Y]


async def test_wait_stops_at_a_revision_that_changed_the_app_paths(connect: Any, clock: FakeTime) -> None:
    lineage = Lineages(Lineage(Z, Relation.superseded, changed_by=Z, subject="payments-api: manual bump"))
    server = Server(get=sequence(ok(example("app_get_running")), ok(at("app_get_final_synced_healthy", compared=Z))))
    async with connect(server) as client:
        with pytest.raises(Superseded) as caught:
            await client.wait_synced_healthy(APP, PROJECT, X, timeout=600, lineage=lineage)
    assert str(caught.value) == "superseded by 7a6b5c4d3e2f (payments-api: manual bump)"
    assert clock.now - 1000.0 < 5, "stops at once, no timeout"


async def test_wait_asks_git_once_per_revision_and_rides_out_a_git_hiccup(connect: Any) -> None:
    lineage = Lineages(TransientError("git fetch failed"), Lineage(Y, Relation.descendant))
    progressing = at("app_get_succeeded_progressing", compared=Y, deployed=Y)
    server = Server(get=sequence(ok(progressing), ok(progressing), ok(at("app_get_final_synced_healthy", compared=Y))))
    async with connect(server) as client:
        health = await client.wait_synced_healthy(APP, PROJECT, X, timeout=60, lineage=lineage)
    assert health.revision == Y
    assert lineage.asked == [Y, Y], "asked again after the hiccup, then remembered"


async def test_unrelated_revisions_are_asked_again(connect: Any) -> None:
    lineage = Lineages(Lineage(Y, Relation.unrelated), Lineage(Y, Relation.descendant))
    server = Server(get=sequence(ok(at("app_get_final_synced_healthy", compared=Y))))
    async with connect(server) as client:
        await client.wait_synced_healthy(APP, PROJECT, X, timeout=60, lineage=lineage)
    assert lineage.asked == [Y, Y], "not in our clone yet: the next poll asks again"


async def test_sync_adopts_a_running_operation_for_a_descendant(connect: Any) -> None:
    lineage = Lineages(Lineage(Y, Relation.descendant))
    server = Server(
        get=sequence(ok(example("app_get_incident")), ok(at("app_get_running", requested=Y, deployed=Y))),
        sync=sequence(error(400, IN_PROGRESS)),
    )
    async with connect(server) as client:
        await client.sync(APP, PROJECT, X, prune=True, lineage=lineage)
    assert len(server.posts()) == 1, "adopted: no second sync"


async def test_sync_never_syncs_over_a_revision_that_changed_the_app_paths(connect: Any) -> None:
    lineage = Lineages(Lineage(Z, Relation.superseded, changed_by=Z, subject="hotfix"))
    server = Server(get=sequence(ok(manual(at("app_get_final_synced_healthy", compared=Z)))))
    async with connect(server) as client:
        with pytest.raises(Superseded, match="superseded by 7a6b5c4d3e2f"):
            await client.sync(APP, PROJECT, X, prune=True, lineage=lineage)
    assert server.posts() == []


async def test_sync_waits_out_a_superseding_operation_by_stopping(connect: Any) -> None:
    lineage = Lineages(Lineage(B, Relation.older), Lineage(Z, Relation.superseded, changed_by=Z, subject="hotfix"))
    server = Server(
        get=sequence(ok(example("app_get_incident")), ok(at("app_get_running", requested=Z, deployed=Z))),
        sync=sequence(error(400, IN_PROGRESS)),
    )
    async with connect(server) as client:
        with pytest.raises(Superseded):
            await client.sync(APP, PROJECT, X, prune=True, lineage=lineage)
    assert len(server.posts()) == 1


def test_client_implements_the_port() -> None:
    """Checked by mypy (the assignment) and at runtime (every port method is a coroutine function)."""
    port: ArgoCD = ArgoCDClient(BASE, SecretStr(TOKEN), transport=httpx.MockTransport(Server()))
    for name in ("refresh", "sync", "wait_synced_healthy", "get_application", "get_resource_tree"):
        assert inspect.iscoroutinefunction(getattr(port, name)), name
