"""Rollback readiness end to end: the CLI's exit codes and JSON, and the service's schedule, API and metrics."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import API_AUTH, Stack, slack_env
from tests.e2e.test_cli import _cli, _cli_with

pytestmark = pytest.mark.e2e


def _apps(stdout: str) -> dict[str, dict[str, Any]]:
    return {app["app"]: app for app in json.loads(stdout)["apps"]}


def test_cli_exit_codes_and_json(stack: Stack) -> None:
    head = stack.sandbox.head()
    # Without Slack settings the propose policy (support-llm) has nobody who could approve.
    without_slack = _cli(stack, "readiness", "--json")
    assert without_slack.returncode == 1, without_slack.stderr
    apps = _apps(without_slack.stdout)
    assert set(apps) == {"docsum-llm", "badge-vision", "support-llm"}
    assert apps["docsum-llm"]["ready"] and apps["docsum-llm"]["target"] == "docsum-llm/v1.1.0"
    assert any("docsum-llm/v1.2.0 skipped" in note for note in apps["docsum-llm"]["notes"])
    assert [b["reason"] for b in apps["support-llm"]["blockers"]] == ["approvers_empty"]

    with_slack = _cli_with(stack, slack_env(stack.slack_url), "readiness", "--json")
    assert with_slack.returncode == 0, with_slack.stdout + with_slack.stderr
    assert all(app["ready"] for app in _apps(with_slack.stdout).values())
    table = _cli_with(stack, slack_env(stack.slack_url), "readiness", "--app", "badge-vision")
    assert table.returncode == 0
    assert "badge-vision/v3.1.0 -> badge-vision/v3.0.0" in table.stdout and "1 of 1 guarded apps ready" in table.stdout

    # A release CI must refuse: the only older release of badge-vision loses its signature.
    stack.sandbox.git("tag", "-d", "badge-vision/v3.0.0")
    stack.sandbox.git(
        "tag", "-a", "-m", "badge-vision/v3.0.0\n\nModel-Digest: sha256:" + "ab" * 32, "badge-vision/v3.0.0", "HEAD~3"
    )
    broken = _cli_with(stack, slack_env(stack.slack_url), "readiness", "--app", "badge-vision")
    assert broken.returncode == 1, broken.stdout
    assert "NO" in broken.stdout and "no_verified_target" in broken.stdout
    unknown = _cli(stack, "readiness", "--app", "nope", "--json")
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["errors"] == ["no policy guards app 'nope'"]
    assert stack.sandbox.head() == head  # read-only


@pytest.mark.stack_env(ROLLBACKBOT_READINESS_INTERVAL_SECONDS="600")
def test_the_service_checks_at_start_and_serves_the_report(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        report = httpx.get(f"{stack.service_url}/api/readiness", headers=API_AUTH, timeout=5).json()
        if report["checked_at"] is not None:
            break
        time.sleep(0.2)
    assert report["ready"] is True, report
    assert {app["app"] for app in report["apps"]} == {"docsum-llm", "badge-vision", "support-llm"}
    one = httpx.get(f"{stack.service_url}/api/readiness?app=docsum-llm", headers=API_AUTH, timeout=5).json()
    assert [app["app"] for app in one["apps"]] == ["docsum-llm"]
    assert httpx.get(f"{stack.service_url}/api/readiness", timeout=5).status_code == 401
    metrics = httpx.get(f"{stack.service_url}/metrics", timeout=5).text
    assert 'rollbackbot_rollback_ready{app="docsum-llm",policy="docsum-llm-injection"} 1.0' in metrics
    assert 'rollbackbot_rollback_blockers{app="docsum-llm",reason="unsigned"} 0.0' in metrics
    # It read Argo CD and asked can-i; it never synced or refreshed.
    requests = stack.argocd_requests()
    assert any("/api/v1/account/can-i/applications/sync/" in str(r["path"]) for r in requests)
    assert not any(r["method"] == "POST" or "refresh" in str(r["query"]) for r in requests)
