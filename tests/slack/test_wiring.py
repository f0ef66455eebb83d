"""Start-up: propose mode without Slack credentials stops with one line; with them, the route is mounted."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollbackbot.errors import ConfigError
from rollbackbot.metrics import INCIDENTS
from rollbackbot.settings import load_settings
from rollbackbot.wiring import _slack_routers, build, build_app
from tests.slack.conftest import REPO, SECRET, TOKEN

AUTO_ONLY = """\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {name: docsum-llm-injection}
spec:
  matchers: ['app = "docsum-llm"']
  target: {argocdApps: [docsum-llm], project: ml-prod, paths: [apps/docsum-llm], tags: "docsum-llm/v*"}
  mode: auto
"""


@pytest.fixture(autouse=True)
def _keep_metrics_source() -> Iterator[None]:
    saved = INCIDENTS.count  # build() points the gauge at its store; later tests must not scrape ours
    yield
    INCIDENTS.count = saved


def _settings(tmp_path: Path, policies: Path = REPO / "policies", **slack: Any) -> dict[str, Any]:
    signers = tmp_path / "allowed_signers"
    signers.write_text("")
    return {
        "git_url": f"file://{tmp_path}/remote.git",
        "git_workdir": str(tmp_path / "clone"),
        "git_allowed_signers": str(signers),
        "policies": str(policies),
        "argocd_url": "http://127.0.0.1:9",
        "argocd_token": "argocd-token-for-wiring",
        "webhook_token": "webhook-token-0123456789",
        "database_url": f"sqlite:///{tmp_path}/state.db",
        **slack,
    }


@pytest.mark.parametrize(
    ("slack", "missing"),
    [
        ({}, "ROLLBACKBOT_SLACK_BOT_TOKEN"),
        ({"slack_bot_token": TOKEN}, "ROLLBACKBOT_SLACK_SIGNING_SECRET"),
        ({"slack_signing_secret": SECRET}, "ROLLBACKBOT_SLACK_BOT_TOKEN"),
        ({"slack_bot_token": " ", "slack_signing_secret": SECRET}, "ROLLBACKBOT_SLACK_BOT_TOKEN"),
    ],
)
def test_serving_propose_policies_needs_both_slack_credentials(
    tmp_path: Path, slack: dict[str, str], missing: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_app(load_settings(**_settings(tmp_path, **slack)))
    assert str(raised.value) == f"{missing} is required by policy support-llm-refusal (mode propose) but not set"


def test_a_canary_that_holds_needs_slack_even_in_auto_mode(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    shipped = (REPO / "policies" / "25-support-llm-injection-canary.yaml").read_text()
    (policies / "25-canary.yaml").write_text(shipped)
    with pytest.raises(ConfigError) as raised:
        build_app(load_settings(**_settings(tmp_path, policies)))
    assert str(raised.value) == (
        "ROLLBACKBOT_SLACK_BOT_TOKEN is required by policy support-llm-injection-canary "
        "(a canary that holds asks in Slack) but not set"
    )
    (policies / "25-canary.yaml").write_text(shipped.replace("onFailure: hold", "onFailure: complete"))
    build(load_settings(**_settings(tmp_path, policies)))  # completes on its own: no one to ask


def test_auto_only_policies_start_without_slack(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "10-docsum.yaml").write_text(AUTO_ONLY)
    wired = build(load_settings(**_settings(tmp_path, policies)))
    assert wired.slack is None and wired.service.chat is None
    assert _slack_routers(load_settings(**_settings(tmp_path, policies)), wired) == []
    with pytest.raises(ConfigError, match="ROLLBACKBOT_SLACK_SIGNING_SECRET is required when"):
        build_app(load_settings(**_settings(tmp_path, policies, slack_bot_token=TOKEN)))


def test_cli_commands_other_than_serve_do_not_need_slack(tmp_path: Path) -> None:
    wired = build(load_settings(**_settings(tmp_path)))  # plan / rollback / incidents build this way
    assert wired.slack is None and any(p.spec.mode.value == "propose" for p in wired.service.policies)


def test_with_slack_credentials_the_chat_and_the_actions_route_are_wired(tmp_path: Path) -> None:
    settings = load_settings(**_settings(tmp_path, slack_bot_token=TOKEN, slack_signing_secret=SECRET))
    wired = build(settings)
    assert wired.slack is not None and wired.service.chat is wired.slack
    [router] = _slack_routers(settings, wired)
    assert [(r.path, sorted(r.methods)) for r in router.routes] == [("/slack/actions", ["POST"])]  # type: ignore[attr-defined]
    assert wired.slack.api.client.base_url == "https://slack.com/api/"


def test_serve_stops_with_one_line_naming_the_missing_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLBACKBOT_")}
    env |= {f"ROLLBACKBOT_{k.upper()}": str(v) for k, v in _settings(tmp_path).items()}
    done = subprocess.run(
        [sys.executable, "-m", "rollbackbot", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ROLLBACKBOT_SLACK_BOT_TOKEN" in lines[0], done.stderr
