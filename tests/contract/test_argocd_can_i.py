"""``GET /api/v1/account/can-i/{resource}/{action}/{subresource}``: the fake, the client and the swagger agree."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.argocd.client import ArgoCDClient
from rollbackbot.errors import PermanentError
from rollbackbot.testing.argocd import FakeArgoState, create_app, make_token
from tests.contract.conftest import APP, PROJECT, TOKEN, GitRepo, make_config
from tests.contract.swagger import assert_valid, response_schema

CAN_I = "/api/v1/account/can-i/{resource}/{action}/{subresource}"
ERROR = "#/definitions/runtimeError"


async def test_answers_yes_or_no_as_the_swagger_says(client: httpx.AsyncClient) -> None:
    own = await client.get(f"/api/v1/account/can-i/applications/sync/{PROJECT}%2F{APP}")
    assert own.status_code == 200, own.text
    assert_valid(own.json(), response_schema(CAN_I))
    assert own.json() == {"value": "yes"}
    # A project-role token may not act in another project; the answer is "no", not a 403.
    other = await client.get("/api/v1/account/can-i/applications/sync/payments%2Fbilling")
    assert other.json() == {"value": "no"}
    # An application that does not exist is no 404 either: can-i asks the policy, not the cluster.
    missing = await client.get(f"/api/v1/account/can-i/applications/sync/{PROJECT}%2Fno-such-app")
    assert missing.json() == {"value": "yes"}


async def test_unknown_action_or_resource_is_invalid_argument(client: httpx.AsyncClient) -> None:
    bad_action = await client.get(f"/api/v1/account/can-i/applications/deploy/{PROJECT}%2F{APP}")
    assert bad_action.status_code == 400
    assert_valid(bad_action.json(), ERROR)
    assert bad_action.json()["code"] == 3
    assert "does not contain deploy" in bad_action.json()["message"]
    bad_resource = await client.get("/api/v1/account/can-i/apps/sync/x")
    assert (bad_resource.status_code, bad_resource.json()["code"]) == (400, 3)


async def test_needs_a_session_and_one_segment_per_variable(anon: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    unauthenticated = await anon.get(f"/api/v1/account/can-i/applications/sync/{PROJECT}%2F{APP}")
    assert unauthenticated.status_code == 401
    # grpc-gateway variables match one segment: an unencoded slash is another route, which does not exist.
    split = await client.get(f"/api/v1/account/can-i/applications/sync/{PROJECT}/{APP}")
    assert (split.status_code, split.text) == (404, "Not Found\n")


async def test_denied_rules_turn_the_answer_to_no(repo: GitRepo) -> None:
    admin = make_token("admin:apiKey")
    state = FakeArgoState(make_config(repo, token=admin))
    app = create_app(state.config, state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://argocd") as control:
        assert (
            await control.post("/_fake/rbac", json={"denied": [f"applications/sync/{PROJECT}/*"]})
        ).status_code == 200
    async with ArgoCDClient("http://argocd", SecretStr(admin), transport=transport) as argocd:
        assert await argocd.can_i("applications", "get", f"{PROJECT}/{APP}") is True
        assert await argocd.can_i("applications", "sync", f"{PROJECT}/{APP}") is False
        assert await argocd.can_i("applications", "sync", "payments/billing") is True
        with pytest.raises(PermanentError, match="does not contain"):
            await argocd.can_i("applications", "deploy", f"{PROJECT}/{APP}")
    paths = [r["path"] for r in state.requests]
    assert paths[0] == f"/api/v1/account/can-i/applications/get/{PROJECT}/{APP}"  # the server decodes %2F


async def test_client_sends_the_subresource_in_one_segment(state: FakeArgoState) -> None:
    transport = httpx.ASGITransport(app=create_app(state.config, state))
    async with ArgoCDClient("http://argocd", SecretStr(TOKEN), transport=transport) as argocd:
        assert await argocd.can_i("applications", "sync", f"{PROJECT}/{APP}") is True
        assert await argocd.can_i("applications", "sync", "payments/billing") is False
    assert [r["status"] for r in state.requests] == [200, 200]
