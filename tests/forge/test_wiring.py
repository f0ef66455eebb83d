"""Start-up and the route: a pull-request policy needs a forge; ``POST /forge/events`` verifies its caller."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from rollbackbot.api import create_app
from rollbackbot.errors import ConfigError
from rollbackbot.metrics import INCIDENTS
from rollbackbot.prmode import ForgeEvents
from rollbackbot.settings import load_settings
from rollbackbot.wiring import _forge_events, build

PR_POLICY = """\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {name: docsum-pr}
spec:
  matchers: ['app = "docsum-llm"']
  target: {argocdApps: [docsum-llm], project: ml-prod, paths: [apps/docsum-llm], tags: "docsum-llm/v*"}
  mode: auto
  git: {mode: pull-request, forge: github, repository: acme/gitops}
"""
SECRET = "forge-webhook-secret-0123"


@pytest.fixture(autouse=True)
def _keep_metrics_source() -> Iterator[None]:
    saved = INCIDENTS.count
    yield
    INCIDENTS.count = saved


def _settings(tmp_path: Path, **forge: Any) -> dict[str, Any]:
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "10-pr.yaml").write_text(PR_POLICY)
    (tmp_path / "allowed_signers").write_text("")
    return {
        "git_url": f"file://{tmp_path}/remote.git",
        "git_workdir": str(tmp_path / "clone"),
        "git_allowed_signers": str(tmp_path / "allowed_signers"),
        "policies": str(tmp_path / "policies"),
        "argocd_url": "http://127.0.0.1:9",
        "argocd_token": "argocd-token-for-wiring",
        "webhook_token": "webhook-token-0123456789",
        "database_url": f"sqlite:///{tmp_path}/state.db",
        **forge,
    }


def test_pull_request_policy_without_a_forge_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ROLLBACKBOT_FORGE_API_URL is required by policy docsum-pr"):
        build(load_settings(**_settings(tmp_path)))
    with pytest.raises(ConfigError, match="ROLLBACKBOT_FORGE_TOKEN"):
        build(load_settings(**_settings(tmp_path, forge_api_url="https://api.github.com")))


def test_forge_events_route_verifies_the_signature_and_names_the_incident(tmp_path: Path) -> None:
    settings = load_settings(
        **_settings(tmp_path, forge_api_url="https://api.github.com", forge_token="t0ken", forge_webhook_secret=SECRET)
    )
    wired = build(settings)
    assert wired.service.workflow.pull_requests is not None
    events = _forge_events(settings, wired)
    assert isinstance(events, ForgeEvents)
    nudged: list[str] = []
    events.nudge = nudged.append
    client = TestClient(create_app(wired.service, settings.webhook_token, forge_events=events.receive))
    body = json.dumps({"pull_request": {"head": {"ref": "rollbackbot/docsum-llm/inc-0123456789abcdef"}}}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert client.post("/forge/events", content=body, headers={"X-Hub-Signature-256": "sha256=00"}).status_code == 401
    assert client.post("/forge/events", content=body, headers={"X-Gitlab-Token": "wrong"}).status_code == 401
    answer = client.post("/forge/events", content=body, headers={"X-Hub-Signature-256": signature})
    assert answer.status_code == 202
    assert answer.json() == {"incident": "inc-0123456789abcdef", "detail": "no such incident"}
    gitlab = client.post(
        "/forge/events",
        content=json.dumps({"object_attributes": {"source_branch": "feature/x"}}),
        headers={"X-Gitlab-Token": SECRET},
    )
    assert gitlab.status_code == 202 and gitlab.json()["incident"] is None
    assert nudged == []


def test_forge_events_route_is_404_without_a_secret(tmp_path: Path) -> None:
    settings = load_settings(**_settings(tmp_path, forge_api_url="https://api.github.com", forge_token="t0ken"))
    wired = build(settings)
    assert _forge_events(settings, wired) is None
    client = TestClient(create_app(wired.service, SecretStr("webhook-token-0123456789")))
    assert client.post("/forge/events", content=b"{}").status_code == 404
