"""Readiness covers intake only; git and Argo CD reachability are in /status, behind the API token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from rollbackbot.dependencies import DEPENDENCIES
from rollbackbot.metrics import observe_call
from rollbackbot.settings import load_settings
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox
from rollbackbot.wiring import build_app
from tests.api.conftest import processes_spawned

REPO = Path(__file__).resolve().parents[2]
WEBHOOK = "status-webhook-token-0123456789"
READER = "status-reader-token-0123456789"
DOWN = "https://bot:hunter2-secret@127.0.0.1:9/gitops.git?private_token=s3cr3t-query"


@pytest.fixture
async def down(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The real service (wiring.build_app) whose git remote refuses connections."""
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("docsum-llm", [Release("1.0.0")])])
    DEPENDENCIES.clear()
    settings = load_settings(
        git_url=DOWN,
        git_workdir=tmp_path / "clone",
        git_allowed_signers=sandbox.allowed_signers,
        policies=REPO / "policies",
        argocd_url="http://127.0.0.1:9",
        argocd_token="argocd-token-0123456789",
        webhook_token=WEBHOOK,
        api_token=READER,
        database_url=f"sqlite:///{tmp_path}/state.db",
        slack_bot_token="xoxb-status-0123456789",
        slack_signing_secret="status-signing-secret-0123456789",
        slack_api_url="http://127.0.0.1:9/api/",
        readiness_interval_seconds=0,  # the readiness schedule runs git in the background; /readyz must not
    )
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rollbackbot") as http:
            yield http
    DEPENDENCIES.clear()


async def test_git_outage_leaves_readiness_green_without_running_git(down: httpx.AsyncClient) -> None:
    with processes_spawned() as spawned:
        for _ in range(3):
            ready = await down.get("/readyz")
            assert ready.status_code == 200, ready.text
    assert spawned == []  # readiness never runs a git process, let alone a network call


async def test_status_shows_the_git_error_without_credentials(down: httpx.AsyncClient) -> None:
    assert (await down.get("/status")).status_code == 401
    assert (await down.get("/status", headers={"Authorization": f"Bearer {WEBHOOK}"})).status_code == 401
    answer = await down.get("/status", headers={"Authorization": f"Bearer {READER}"})
    assert answer.status_code == 200
    body = answer.json()
    git = body["dependencies"]["git"]
    assert git["status"] == "error" and git["last_success"] is None and "127.0.0.1:9" in git["last_error"]
    assert body["dependencies"]["store"]["status"] == "ok"
    assert body["active_incidents"] == 0 and body["version"]
    for secret in ("hunter2-secret", "bot:", "s3cr3t-query", "private_token"):
        assert secret not in answer.text


def test_calls_feed_the_board_and_the_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    DEPENDENCIES.clear()
    try:
        try:
            raise ConnectionError("GET https://user:pw@argocd.example/api?token=abc refused")
        except ConnectionError:
            observe_call("argocd", "GET /api/v1/applications", 0.01, ok=False)
        failed = DEPENDENCIES.snapshot()["argocd"]
        assert not failed.ok and failed.last_error is not None
        assert "pw@" not in failed.last_error and "token=abc" not in failed.last_error
        assert "argocd.example/api" in failed.last_error
        observe_call("argocd", "GET /api/v1/applications", 0.01, ok=True)
        healed = DEPENDENCIES.snapshot()["argocd"]
        assert healed.ok and healed.last_success is not None and healed.last_error == failed.last_error
        metrics = "".join(str(m) for m in DEPENDENCIES.collect())
        assert "argocd" in metrics
    finally:
        DEPENDENCIES.clear()
