"""Contract suite: recorded Argo CD examples and the fake agree with the v3.5.1 swagger and each other."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollbackbot.testing.argocd import FakeArgoState, create_app, make_token
from tests.contract.conftest import APP, APP_PATH, DELAYS, PROJECT, TOKEN, GitRepo, make_config, manifests
from tests.contract.swagger import EXAMPLES, assert_valid, load_example, response_schema, shape_differences

APPLICATION = "#/definitions/v1alpha1Application"
ERROR = "#/definitions/runtimeError"
EXAMPLE_DEFINITIONS = {
    "app_get_failed.json": APPLICATION,
    "app_get_final_synced_healthy.json": APPLICATION,
    "app_get_incident.json": APPLICATION,
    "app_get_running.json": APPLICATION,
    "app_get_succeeded_progressing.json": APPLICATION,
    "rollback_request.json": "#/definitions/applicationApplicationRollbackRequest",
    "rollback_response.json": APPLICATION,
    "session_request.json": "#/definitions/sessionSessionCreateRequest",
    "session_response.json": "#/definitions/sessionSessionResponse",
    "sync_request.json": "#/definitions/applicationApplicationSyncRequest",
    "sync_request_minimal.json": "#/definitions/applicationApplicationSyncRequest",
    "sync_response.json": APPLICATION,
    "terminate_response.json": "#/definitions/applicationOperationTerminateResponse",
}
MAPS = frozenset({"metadata.labels", "metadata.annotations"})
URL = f"/api/v1/applications/{APP}"
JSON_CT = {"Content-Type": "application/json"}


def assert_shape(document: Any, example: str) -> None:
    """Valid per swagger and the same shape as the recorded example (list lengths may differ)."""
    assert_valid(document, APPLICATION)
    differences = shape_differences(document, load_example(example), MAPS)
    assert not differences, "\n".join(differences)


def sync_body() -> dict[str, Any]:
    """The recorded full sync request, addressed to our project."""
    return dict(load_example("sync_request.json")) | {"project": PROJECT}


def revert(repo: GitRepo) -> str:
    """Push the rollback commit X: the Deployment is healthy again."""
    return repo.commit({f"{APP_PATH}/app.yaml": manifests("registry.example.com/fraud-llm:1.41.0")}, "rollback")


def repo_of(state: FakeArgoState) -> GitRepo:
    """The repository the fake reads, to push commits to it."""
    return GitRepo(state.config.repo_path())


async def get_app(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get(URL, params={"project": PROJECT} | params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def assert_error(response: httpx.Response, status: int, code: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message, "code": code, "message": message}
    assert_valid(response.json(), ERROR)


# --- (a) the validator on recorded truth -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXAMPLE_DEFINITIONS))
def test_recorded_examples_validate(name: str) -> None:
    assert_valid(load_example(name), EXAMPLE_DEFINITIONS[name])


def test_recorded_errors_and_stream_validate() -> None:
    for body in load_example("errors.json").values():
        assert_valid(body, ERROR)
    for line in (EXAMPLES / "watch_stream.ndjson").read_text().splitlines():
        assert_valid(json.loads(line), response_schema("/api/v1/stream/applications"))


def test_validator_rejects_what_the_wire_never_sends() -> None:
    doc = load_example("app_get_running.json")
    doc["status"]["operationState"]["startedAt"] = "2026-08-22T10:03:58.123456Z"
    doc["status"]["syncStatus"] = "Synced"
    with pytest.raises(AssertionError, match="syncStatus") as caught:
        assert_valid(doc, APPLICATION)
    assert "startedAt" in str(caught.value)


# --- (b) the fake's responses through a whole rollback ------------------------------------------------


async def test_sync_lifecycle_matches_recorded_examples(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    incident = await get_app(client)
    bad = incident["status"]["sync"]["revision"]
    assert (incident["status"]["sync"]["status"], incident["status"]["health"]["status"]) == ("Synced", "Degraded")
    assert_shape(incident, "app_get_incident.json")

    x = revert(repo_of(state))
    response = await client.post(f"{URL}/sync", json=sync_body())
    assert response.status_code == 200
    synced = response.json()
    assert synced["operation"]["sync"]["revision"] == x  # branch resolved at request time
    assert "operationState" not in synced["status"]
    assert (synced["status"]["sync"]["revision"], synced["status"]["health"]["status"]) == (bad, "Degraded")
    assert_shape(synced, "sync_response.json")

    state.advance(DELAYS["running"])
    running = await get_app(client)
    assert running["status"]["operationState"]["phase"] == "Running"
    assert running["status"]["operationState"]["syncResult"]["revision"] == x
    assert_shape(running, "app_get_running.json")

    state.advance(DELAYS["succeeded"])
    done = await get_app(client)
    op_state = done["status"]["operationState"]
    assert (op_state["phase"], op_state["message"]) == ("Succeeded", "successfully synced (all tasks run)")
    assert "operation" not in done
    assert done["status"]["history"][-1]["id"] == 1 and done["status"]["history"][-1]["revision"] == x
    assert done["status"]["sync"]["revision"] == bad, "status must stay stale until the post-op reconcile"
    assert done["status"]["reconciledAt"] < op_state["finishedAt"]

    state.advance(DELAYS["reconcile"])
    progressing = await get_app(client)
    assert progressing["status"]["reconciledAt"] >= progressing["status"]["operationState"]["finishedAt"]
    assert progressing["status"]["sync"] | {"comparedTo": None} == {
        "status": "Synced",
        "comparedTo": None,
        "revision": x,
    }
    assert progressing["status"]["health"]["status"] == "Progressing"
    assert_shape(progressing, "app_get_succeeded_progressing.json")

    state.advance(DELAYS["healthy"])
    final = await get_app(client)
    assert final["status"]["health"]["status"] == "Healthy"
    assert final["status"]["summary"]["images"] == ["registry.example.com/fraud-llm:1.41.0"]
    assert_shape(final, "app_get_final_synced_healthy.json")


async def test_failed_sync_with_retries(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    state.set_faults(APP, {"syncOutcome": "Failed"})
    x = revert(repo_of(state))
    assert (await client.post(f"{URL}/sync", json=sync_body())).status_code == 200
    state.advance(DELAYS["running"] + DELAYS["succeeded"])
    retrying = (await get_app(client))["status"]["operationState"]
    assert retrying["phase"] == "Running" and retrying["retryCount"] == 1 and "finishedAt" in retrying
    state.advance(2 * DELAYS["succeeded"] + DELAYS["reconcile"])
    failed = await get_app(client)
    op_state = failed["status"]["operationState"]
    assert (op_state["phase"], op_state["retryCount"]) == ("Failed", 2)
    assert (
        op_state["message"].startswith("one or more objects failed to apply")
        and "(retried 2 times)" in op_state["message"]
    )
    assert [r["status"] for r in op_state["syncResult"]["resources"]].count("SyncFailed") == 1
    assert (failed["status"]["sync"]["status"], failed["status"]["sync"]["revision"]) == ("OutOfSync", x)
    assert [h["id"] for h in failed["status"]["history"]] == [0], "failed syncs are not recorded"
    assert_shape(failed, "app_get_failed.json")


async def test_rollback_after_disabling_auto_sync(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    rollback = load_example("rollback_request.json") | {"id": 0, "project": PROJECT}
    assert_error(
        await client.post(f"{URL}/rollback", json=rollback),
        400,
        9,
        "rollback cannot be initiated when auto-sync is enabled",
    )
    patch = {"patch": json.dumps({"spec": {"syncPolicy": {"automated": {"enabled": False}}}}), "patchType": "merge"}
    patched = await client.patch(URL, json=patch | {"project": PROJECT})
    assert patched.json()["spec"]["syncPolicy"]["automated"] == {"enabled": False, "prune": True, "selfHeal": True}
    missing = await client.post(f"{URL}/rollback", json=rollback | {"id": 99})
    assert_error(missing, 400, 3, f"application argocd/{APP} does not have deployment with id 99")
    response = await client.post(f"{URL}/rollback", json=rollback)
    assert response.json()["operation"]["sync"]["syncStrategy"] == {"apply": {}}
    assert_shape(response.json(), "rollback_response.json")


async def test_auxiliary_endpoints_match_swagger(client: httpx.AsyncClient, anon: httpx.AsyncClient) -> None:
    cases = {
        f"{URL}/syncwindows": "/api/v1/applications/{name}/syncwindows",
        f"/api/v1/applications/{APP}/resource-tree": "/api/v1/applications/{applicationName}/resource-tree",
        f"/api/v1/applications/{APP}/managed-resources": "/api/v1/applications/{applicationName}/managed-resources",
        f"{URL}/events": "/api/v1/applications/{name}/events",
        "/api/v1/session/userinfo": "/api/v1/session/userinfo",
        "/api/version": "/api/version",
    }
    for url, template in cases.items():
        response = await client.get(url, params={"project": PROJECT})
        assert response.status_code == 200, url
        assert_valid(response.json(), response_schema(template))
    tree = (await client.get(f"/api/v1/applications/{APP}/resource-tree")).json()
    assert {n["kind"] for n in tree["nodes"]} == {"ConfigMap", "Service", "Deployment", "ReplicaSet", "Pod"}
    assert (await client.get(f"{URL}/syncwindows")).json() == {"canSync": True}
    assert (await client.get("/api/v1/session/userinfo")).json() == {
        "loggedIn": True,
        "username": "proj:ml-prod:rollbackbot",
        "iss": "argocd",
    }
    assert (await anon.get("/api/version")).json() == {"Version": "v3.5.1+109ca7c"}
    logs = await client.get(f"{URL}/logs", params={"kind": "Deployment", "resourceName": APP, "tailLines": "2"})
    lines = [json.loads(line) for line in logs.text.splitlines()]
    for line in lines:
        assert_valid(line, response_schema("/api/v1/applications/{name}/logs"))
    assert len(lines) == 3 and lines[-1]["result"]["last"] is True and lines[0]["result"]["podName"].startswith(APP)
    pod = next(n["name"] for n in tree["nodes"] if n["kind"] == "Pod")
    by_pod = await client.get(f"{URL}/logs", params={"podName": pod, "namespace": "ml-prod", "follow": "false"})
    assert {json.loads(line)["result"]["podName"] for line in by_pod.text.splitlines()} == {pod, ""}
    assert (await client.get(f"{URL}/pods/nope/logs")).text == "", "no matching pod: an empty stream"


async def test_session_login(anon: httpx.AsyncClient, state: FakeArgoState) -> None:
    bad = await anon.post("/api/v1/session", json={"username": "admin", "password": "nope"})
    assert_error(bad, 401, 16, "Invalid username or password")
    login = await anon.post(
        "/api/v1/session", json=load_example("session_request.json") | {"username": "admin", "password": "s3cret-pass"}
    )
    assert login.status_code == 200
    assert_valid(login.json(), "#/definitions/sessionSessionResponse")
    token = login.json()["token"]
    info = await anon.get("/api/v1/session/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert info.json()["username"] == "admin"
    assert all(r["body"] is None or r["body"].get("password") in (None, "<redacted>") for r in state.requests)
    assert "s3cret-pass" not in json.dumps(state.requests)


# --- (c) middleware order and error bodies -----------------------------------------------------------


async def test_content_type_is_checked_before_routing_and_auth(anon: httpx.AsyncClient) -> None:
    charset = await anon.post(f"{URL}/sync", content=b"{}", headers={"Content-Type": "application/json; charset=utf-8"})
    assert (charset.status_code, charset.text, charset.headers["content-type"]) == (
        415,
        "Invalid content type\n",
        "text/plain; charset=utf-8",
    )
    assert (await anon.delete(f"{URL}/operation")).status_code == 415
    assert (await anon.post(f"{URL}/refresh")).status_code == 415
    not_found = await anon.post(f"{URL}/refresh", headers=JSON_CT)
    assert (not_found.status_code, not_found.text) == (404, "Not Found\n")
    wrong_method = await anon.get(f"{URL}/sync")
    assert (wrong_method.status_code, wrong_method.text) == (405, "Method Not Allowed\n")


async def test_authentication_errors(anon: httpx.AsyncClient) -> None:
    assert_error(await anon.get(URL), 401, 16, "no session information")
    assert_error(await anon.get(URL, headers={"Authorization": "Bearer not-a-jwt"}), 401, 16, "no session information")
    unknown = await anon.get(URL, headers={"Authorization": f"Bearer {make_token('someone')}"})
    assert unknown.status_code == 401 and unknown.json()["message"].startswith("invalid session: ")


async def test_body_decoding_happens_before_auth(anon: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    bad_type = await anon.post(f"{URL}/rollback", json={"id": "11"})
    assert_error(bad_type, 400, 3, load_example("errors.json")["400_bad_json"]["message"])
    syntax = await client.post(f"{URL}/sync", content=b"{nope", headers=JSON_CT)
    assert syntax.status_code == 400 and syntax.json()["code"] == 3
    options = await client.post(f"{URL}/sync", json={"syncOptions": ["Prune=true"]})
    assert options.json()["message"] == (
        "json: cannot unmarshal array into Go struct field ApplicationSyncRequest.syncOptions"
        " of type application.SyncOptions"
    )
    no_id = await client.post(f"{URL}/rollback", json={"prune": True})
    assert no_id.status_code == 500 and no_id.json()["code"] == 13


async def test_rbac_403_versus_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/applications/nope"), 403, 7, "permission denied")
    nope = await client.get("/api/v1/applications/nope", params={"project": PROJECT})
    assert_error(nope, 404, 5, 'applications.argoproj.io "nope" not found')
    other = await client.get(URL, params={"project": "payments"})
    assert other.status_code == 403, "a project token has no access to another project at all"
    hidden = await client.get("/api/v1/applications/billing")
    assert_error(hidden, 403, 7, "permission denied")


async def test_admin_sees_404_for_app_in_other_project(repo: GitRepo) -> None:
    admin = make_token("admin:login")
    state = FakeArgoState(make_config(repo, token=admin))
    transport = httpx.ASGITransport(app=create_app(state.config, state))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://a", headers={"Authorization": f"Bearer {admin}"}
    ) as http:
        response = await http.get("/api/v1/applications/billing", params={"project": PROJECT})
    assert_error(response, 404, 5, 'applications.argoproj.io "billing" not found')


async def test_sync_conflicts(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    x = revert(repo_of(state))
    explicit = await client.post(f"{URL}/sync", json={"revision": x, "project": PROJECT})
    assert_error(explicit, 400, 9, f"Cannot sync to {x}: auto-sync currently set to main")
    first = await client.post(f"{URL}/sync", content=b"", headers=JSON_CT)  # empty body is {}
    assert first.status_code == 200
    assert first.json()["operation"]["initiatedBy"] == {"username": "proj:ml-prod:rollbackbot"}
    assert first.json()["operation"]["retry"] == {}
    assert_error(await client.post(f"{URL}/sync", json={}), 400, 9, "another operation is already in progress")


async def test_terminate(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    none = await client.delete(f"{URL}/operation", headers=JSON_CT)
    assert_error(none, 400, 3, "Unable to terminate operation. No operation is in progress")
    revert(repo_of(state))
    await client.post(f"{URL}/sync", json={})
    queued = await client.delete(f"{URL}/operation", headers=JSON_CT)
    assert queued.status_code == 400, "not picked up by the controller yet: nothing to terminate"
    state.advance(DELAYS["running"])
    terminated = await client.delete(f"{URL}/operation", headers=JSON_CT)
    assert (terminated.status_code, terminated.json()) == (200, {})
    assert (await get_app(client))["status"]["operationState"]["phase"] == "Terminating"
    state.advance(state.config.tick)
    after = await get_app(client)
    assert after["status"]["operationState"]["phase"] == "Failed" and "operation" not in after
    assert after["status"]["operationState"]["message"] == "Operation terminated"


async def test_fail_next_and_unsupported_patch(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    state.set_faults(APP, {"failNext": [503, 502]})
    first, second, third = [await client.get(URL) for _ in range(3)]
    assert (first.status_code, first.json()["code"]) == (503, 14)
    assert second.status_code == 502 and second.headers["content-type"].startswith("text/html")
    assert third.status_code == 200
    patch = await client.patch(URL, json={"patch": "{}", "patchType": "strategic"})
    assert_error(patch, 400, 3, "Patch type 'strategic' is not supported")


# --- refresh, auto-sync, recording ------------------------------------------------------------------


async def test_refresh_sees_new_commit_and_starts_auto_sync(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    x = revert(repo_of(state))
    plain = await get_app(client)
    assert plain["status"]["sync"]["status"] == "Synced", "without a refresh the fake has not seen X"
    refreshed = await get_app(client, refresh="normal")
    assert refreshed["status"]["sync"] | {"comparedTo": None} == {
        "status": "OutOfSync",
        "comparedTo": None,
        "revision": x,
    }
    assert refreshed["operation"]["initiatedBy"] == {"automated": True}
    assert refreshed["operation"]["retry"] == {"limit": 5}
    assert "annotations" not in refreshed["metadata"]


async def test_refresh_hang_blocks_until_cleared(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    state.set_faults(APP, {"refreshHang": True})
    pending = asyncio.create_task(get_app(client, refresh="hard"))
    await asyncio.sleep(0.2)
    assert not pending.done()
    assert state.raw(APP)["metadata"]["annotations"] == {"argocd.argoproj.io/refresh": "hard"}
    state.set_faults(APP, {"refreshHang": False})
    refreshed = await asyncio.wait_for(pending, timeout=5)
    assert "annotations" not in refreshed["metadata"]


async def test_requests_are_recorded_without_credentials(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    await client.post(f"{URL}/sync", json={"prune": True}, params={"x": "1"})
    recorded = (await client.get("/_fake/requests")).json()
    assert recorded[-1] | {"time": None} == {
        "method": "POST",
        "path": f"{URL}/sync",
        "query": {"x": "1"},
        "query_string": "x=1",
        "content_type": "application/json",
        "body": {"prune": True},
        "raw_body": '{"prune":true}',
        "auth": "bearer",
        "status": 200,
        "time": None,
    }
    assert TOKEN not in json.dumps(recorded)
    assert (await client.delete("/_fake/requests")).json() == {"cleared": 1}
    faults = await client.post(f"/_fake/apps/{APP}/faults", json={"healthOverride": "Degraded"})
    assert faults.json()["healthOverride"] == "Degraded"
    assert (await client.post(f"/_fake/apps/{APP}/faults", json={"bogus": 1})).status_code == 422
    raw = (await client.get(f"/_fake/apps/{APP}")).json()
    assert raw["fake"]["faults"]["healthOverride"] == "Degraded" and raw["status"]["sync"]["status"] == "Synced"


# --- fault knobs -------------------------------------------------------------------------------------------


async def test_stale_status_window(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    state.set_faults(APP, {"staleStatusSeconds": 30})
    bad = (await get_app(client))["status"]["sync"]["revision"]
    revert(repo_of(state))
    await client.post(f"{URL}/sync", json={})
    state.advance(sum(DELAYS.values()))
    stale = await get_app(client)
    assert stale["status"]["operationState"]["phase"] == "Succeeded"
    assert (stale["status"]["sync"]["revision"], stale["status"]["health"]["status"]) == (bad, "Degraded")
    assert stale["status"]["reconciledAt"] < stale["status"]["operationState"]["finishedAt"]
    fresh = await get_app(client, refresh="normal")  # blocks until the controller got round to it
    assert fresh["status"]["reconciledAt"] >= fresh["status"]["operationState"]["finishedAt"]
    assert fresh["status"]["sync"]["status"] == "Synced"


async def test_sync_window_error_outcome_and_health_override(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    state.set_faults(APP, {"syncWindowBlocked": True})
    assert_error(await client.post(f"{URL}/sync", json={}), 403, 7, "cannot sync: blocked by sync window")
    windows = await client.get(f"{URL}/syncwindows")
    assert windows.json()["canSync"] is False
    assert_valid(windows.json(), response_schema("/api/v1/applications/{name}/syncwindows"))
    state.set_faults(APP, {"syncWindowBlocked": False, "syncOutcome": "Error"})
    await client.post(f"{URL}/sync", json={})
    state.advance(DELAYS["running"] + DELAYS["succeeded"])
    errored = (await get_app(client))["status"]["operationState"]
    assert errored["phase"] == "Error" and errored["message"].startswith("ComparisonError")
    state.set_faults(APP, {"healthOverride": "Progressing"})
    state.advance(DELAYS["reconcile"] + state.config.tick)
    assert (await get_app(client))["status"]["health"]["status"] == "Progressing"


async def test_sync_without_prune_leaves_objects_requiring_pruning(repo: GitRepo) -> None:
    extra = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: canary-weights\n"
    repo.commit({f"{APP_PATH}/app.yaml": manifests("registry.example.com/fraud-llm:1.42.0", extra=extra)}, "canary")
    state = FakeArgoState(make_config(repo, apps=[{"name": APP, "project": PROJECT, "path": APP_PATH}]))
    app, caller = state.app(APP), state.authenticate(TOKEN)
    revert(repo)
    state.sync(app, {"prune": False}, caller)
    state.advance(sum(DELAYS.values()))
    leftover = [r for r in app.status["resources"] if r.get("requiresPruning")]
    assert [r["name"] for r in leftover] == ["canary-weights"] and app.status["sync"]["status"] == "OutOfSync"
    skipped = [r for r in app.status["operationState"]["syncResult"]["resources"] if r["name"] == "canary-weights"]
    assert {"status": "PruneSkipped", "message": "ignored (requires pruning)"}.items() <= skipped[0].items()
    state.sync(app, {"prune": True}, caller)
    state.advance(sum(DELAYS.values()))
    assert app.status["sync"]["status"] == "Synced" and "canary-weights" not in json.dumps(app.status["resources"])


# --- (d) health follows the real repository -------------------------------------------------------------


async def test_health_is_derived_from_the_deployed_revision(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    degraded = repo.commit({"apps/m/app.yaml": manifests("img:2", "Degraded")}, "bad")
    healthy = repo.commit({"apps/m/app.yaml": manifests("img:1")}, "good")
    state = FakeArgoState(make_config(repo, apps=[{"name": "m", "project": PROJECT, "path": "apps/m"}]))
    app = state.app("m")
    state.sync(app, {"revision": degraded}, state.authenticate(TOKEN))
    state.advance(sum(DELAYS.values()))
    assert app.status["health"]["status"] == "Degraded"
    assert (app.status["sync"]["status"], app.status["sync"]["revision"]) == ("OutOfSync", healthy)
    state.sync(app, {}, state.authenticate(TOKEN))
    state.advance(DELAYS["running"] + DELAYS["succeeded"] + DELAYS["reconcile"])
    assert app.status["health"]["status"] == "Progressing"
    state.advance(DELAYS["healthy"])
    assert (app.status["health"]["status"], app.status["sync"]["status"]) == ("Healthy", "Synced")
    assert [h["revision"] for h in app.status["history"]] == [healthy, degraded, healthy]


# --- (e) a real process -----------------------------------------------------------------------------------


@pytest.mark.network
def test_module_serves_as_a_process(repo: GitRepo, tmp_path: Path) -> None:
    config = tmp_path / "fake.json"
    fast = {"running": 0.05, "succeeded": 0.05, "reconcile": 0.05, "healthy": 0.05}
    data = make_config(repo, tick=0.02, delays=fast).model_dump(mode="json", exclude={"username", "startTime"})
    config.write_text(json.dumps(data | {"subject": "proj:ml-prod:rollbackbot"}))
    command = [sys.executable, "-m", "rollbackbot.testing.argocd", "--config", str(config), "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("fake-argocd listening on http://127.0.0.1:"), line
        base = line.rsplit(" ", 1)[-1]
        assert httpx.get(f"{base}/api/version", timeout=5).json() == {"Version": "v3.5.1+109ca7c"}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.stream(
            "GET", f"{base}/api/v1/stream/applications", params={"name": APP}, headers=headers, timeout=10
        ) as stream:
            lines = stream.iter_lines()
            added = json.loads(next(lines))
            assert added["result"]["type"] == "ADDED"
            revert(repo)
            httpx.post(f"{base}{URL}/sync", json={}, headers=headers, timeout=5).raise_for_status()
            events = [json.loads(next(lines))]
            while events[-1]["result"]["application"]["status"].get("health", {}).get("status") != "Healthy":
                events.append(json.loads(next(lines)))  # the ticker moves the controller in real time
        assert [e["result"]["type"] for e in events] == ["MODIFIED"] * len(events)
        phases = [e["result"]["application"]["status"].get("operationState", {}).get("phase") for e in events]
        assert "Running" in phases and phases[-1] == "Succeeded"
        for event in [added, *events]:
            assert_valid(event, response_schema("/api/v1/stream/applications"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.stdout.read() == "", "stdout carries only the announcement line; logs go to stderr"


# --- (f) a moving branch: auto-sync follows the head, status.sync.revision advances ---------------------


def settle(state: FakeArgoState) -> None:
    """Long enough for any queued operation, its reconcile and the rollout to finish."""
    state.advance(sum(DELAYS.values()) + state.config.tick)


async def test_auto_sync_follows_the_branch_head_past_our_commit(
    client: httpx.AsyncClient, state: FakeArgoState
) -> None:
    x = revert(repo_of(state))
    refreshed = await get_app(client, refresh="normal")
    assert refreshed["operation"]["sync"]["revision"] == x
    state.advance(DELAYS["running"])
    z = repo_of(state).commit({f"{APP_PATH}/app.yaml": manifests("registry.example.com/fraud-llm:1.43.0")}, "hotfix")
    state.advance(DELAYS["succeeded"] + DELAYS["reconcile"])
    compared = await get_app(client)
    assert compared["status"]["history"][-1]["revision"] == x
    assert (compared["status"]["sync"]["status"], compared["status"]["sync"]["revision"]) == ("OutOfSync", z)
    assert compared["operation"]["sync"]["revision"] == z, "auto-sync starts for the newest head"
    assert compared["operation"]["initiatedBy"] == {"automated": True}
    assert "operationState" not in compared["status"], "starting an operation clears the last state"
    settle(state)
    final = await get_app(client)
    assert (final["status"]["sync"]["status"], final["status"]["sync"]["revision"]) == ("Synced", z)
    assert final["status"]["health"]["status"] == "Healthy"
    assert [h["revision"] for h in final["status"]["history"]][-2:] == [x, z]
    assert final["status"]["summary"]["images"] == ["registry.example.com/fraud-llm:1.43.0"]
    assert_valid(final, APPLICATION)


async def test_unrelated_push_advances_the_compared_revision_without_a_sync(
    client: httpx.AsyncClient, state: FakeArgoState
) -> None:
    x = revert(repo_of(state))
    await get_app(client, refresh="normal")
    settle(state)
    y = repo_of(state).commit({"handbook/runbook.md": "# runbook\n"}, "docs: runbook")
    refreshed = await get_app(client, refresh="normal")
    assert (refreshed["status"]["sync"]["status"], refreshed["status"]["sync"]["revision"]) == ("Synced", y)
    assert refreshed["status"]["health"]["status"] == "Healthy"
    assert "operation" not in refreshed, "nothing to deploy: the app's manifests did not change"
    assert refreshed["status"]["operationState"]["syncResult"]["revision"] == x
    assert refreshed["status"]["history"][-1]["revision"] == x


async def test_refresh_after_two_pushes_syncs_the_newest_head(client: httpx.AsyncClient, state: FakeArgoState) -> None:
    revert(repo_of(state))
    y = repo_of(state).commit({"handbook/runbook.md": "# runbook\n"}, "docs: runbook")
    refreshed = await get_app(client, refresh="normal")
    assert refreshed["status"]["sync"]["revision"] == y
    assert refreshed["operation"]["sync"]["revision"] == y
    settle(state)
    final = await get_app(client)
    assert (final["status"]["sync"]["status"], final["status"]["health"]["status"]) == ("Synced", "Healthy")
    assert final["status"]["operationState"]["syncResult"]["revision"] == y


async def test_manual_sync_of_our_commit_is_compared_against_the_newer_head(repo: GitRepo) -> None:
    state = FakeArgoState(make_config(repo, apps=[{"name": APP, "project": PROJECT, "path": APP_PATH}]))
    app, caller = state.app(APP), state.authenticate(TOKEN)
    x = revert(repo)
    y = repo.commit({"handbook/runbook.md": "# runbook\n"}, "docs: runbook")
    state.sync(app, {"revision": x}, caller)
    settle(state)
    assert app.status["operationState"]["syncResult"]["revision"] == x
    assert (app.status["sync"]["status"], app.status["sync"]["revision"]) == ("Synced", y)
    assert app.status["health"]["status"] == "Healthy"
