"""Propose mode end to end: the real service process, the fake Slack process, real git over git://."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.slack import block_actions, signed_request
from tests.e2e.conftest import API_AUTH, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, WEBHOOK_TOKEN, Stack

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


def _fire(stack: Stack, labels: dict[str, str]) -> str:
    body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1), annotations={"summary": "s"})])
    answer = httpx.post(f"{stack.service_url}/webhook/alertmanager", json=body, headers=AUTH, timeout=5)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["incidents"][0])


def _wait_calls(stack: Stack, method: str, count: int, timeout: float = 10.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = [c for c in stack.slack_calls() if c["method"] == method]
        if len(calls) >= count:
            return calls
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} {method} calls: {stack.slack_calls()}")


def _git(stack: Stack, *args: str) -> str:
    git_dir = str(stack.sandbox.remote_path)
    return subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True, text=True, check=True).stdout


def test_proposal_in_slack_approved_with_one_click_rolls_back_once(stack: Stack) -> None:
    head_before = stack.sandbox.head()
    incident_id = _fire(stack, {"alertname": "ModelRefusalRateDrop", "app": "support-llm", "severity": "critical"})
    proposed = stack.wait_state(incident_id, {"awaiting_approval", "failed", "suppressed"})
    assert proposed["state"] == "awaiting_approval", proposed
    [post] = _wait_calls(stack, "chat.postMessage", 1)
    args = post["args"]
    assert args["channel"] == "C0ML0NCALL" and "Rollback proposed: support-llm" in args["text"]  # type: ignore[index]
    assert f'"value": "{incident_id}"' in str(args).replace("'", '"')

    forged, _ = signed_request("not-the-secret", block_actions("approve_rollback", incident_id, "U012ABC"))
    _, good_headers = signed_request(SLACK_SIGNING_SECRET, block_actions("approve_rollback", incident_id, "U012ABC"))
    refused = httpx.post(f"{stack.service_url}/slack/actions", content=forged, headers=good_headers, timeout=5)
    assert refused.status_code == 401
    assert stack.slack_click("approve_rollback", incident_id, user="U0STRANGER").status_code == 200
    _wait_calls(stack, "chat.postEphemeral", 1)
    assert stack.incident(incident_id)["state"] == "awaiting_approval"

    clicked = time.monotonic()
    answer = stack.slack_click("approve_rollback", incident_id)
    assert answer.status_code == 200 and time.monotonic() - clicked < 3  # Slack wants its ack within 3 s
    incident = stack.wait_state(incident_id, {"rolled_back", "failed"})
    assert incident["state"] == "rolled_back", incident
    assert incident["approved_by"] == "Dana Ops U012ABC"
    assert stack.slack_click("approve_rollback", incident_id).status_code == 200  # a late second click
    late = _wait_calls(stack, "chat.postEphemeral", 2)[-1]
    assert str(late["args"]["text"]).startswith("Already approved by <@U012ABC>")  # type: ignore[index]

    commit = str(incident["rollback_commit"])
    assert _git(stack, "rev-parse", f"{commit}^").strip() == head_before
    trailers = _git(stack, "log", "-1", "--format=%(trailers:only,unfold)", commit)
    assert "Approved-By: Dana Ops U012ABC" in trailers and f"Rollback-Incident: {incident_id}" in trailers
    assert _git(stack, "log", "--format=%H", f"--grep=Rollback-Incident: {incident_id}", "main").split() == [commit]
    assert stack.argocd_app("support-llm")["status"]["health"]["status"] == "Healthy"  # type: ignore[index]

    [update] = _wait_calls(stack, "chat.update", 1)
    messages = httpx.get(f"{stack.slack_url}/_fake/messages", timeout=5).json()
    [proposal] = [m for m in messages if "thread_ts" not in m]
    assert update["args"]["ts"] == proposal["ts"] and "actions" not in str(proposal["blocks"])  # type: ignore[index]
    thread = _wait_calls(stack, "chat.postMessage", 4)[1:]
    assert all(c["args"]["thread_ts"] for c in thread)  # type: ignore[index]
    assert "Rolled back to support-llm/v1.1.0" in str(thread[-1]["args"]["text"])  # type: ignore[index]

    everything = stack.log.read_text(errors="replace") + str(stack.slack_calls())
    everything += httpx.get(f"{stack.service_url}/api/incidents/{incident_id}", headers=API_AUTH).text
    everything += httpx.get(f"{stack.service_url}/metrics").text
    for secret in (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET):
        assert secret not in everything


def test_slack_down_does_not_hold_up_an_automatic_rollback(stack: Stack) -> None:
    httpx.post(f"{stack.slack_url}/_fake/down", json={"down": True}, timeout=5)
    incident_id = _fire(stack, {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"})
    incident = stack.wait_state(incident_id, {"rolled_back", "failed"})
    assert incident["state"] == "rolled_back", incident
    assert {c["status"] for c in stack.slack_calls()} == {503}
