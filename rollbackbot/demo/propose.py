"""The demo's second act: ``mode: propose`` — a rollback drafted in Slack and approved with one click.

The fake Slack Web API runs as its own process; the proposal is printed as a person reads it,
Approve is pressed with a correctly signed interactivity request, and the rollback completes.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.core.incidents import TERMINAL_STATES
from rollbackbot.core.messages import MessageKind, as_text, incident_message
from rollbackbot.policy_files import load_policies
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import AppSpec, Release
from rollbackbot.testing.slack import block_actions, signed_request

APP = "support-llm"
SLACK_BOT_TOKEN = "xoxb-demo-bot-token-0123456789abcdef"
SLACK_SIGNING_SECRET = "demo-slack-signing-secret-0123456789"
APPROVER_ID, APPROVER_NAME = "U012ABC", "Dana Ops"  # an approver in policies/20-support-llm-refusal.yaml
DONE = {state.value for state in TERMINAL_STATES}

EMBEDDED_POLICY = """\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {name: support-llm-refusal}
spec:
  matchers: ['alertname = "ModelRefusalRateDrop"', 'app =~ "support-llm(-.+)?"']
  target: {argocdApps: ["${labels.app}"], project: ml-prod, paths: ["apps/${labels.app}"], tags: "${labels.app}/v*"}
  mode: propose
  approval: {channel: C0ML0NCALL, approvers: [U012ABC, S0SECOPS], timeout: 30m, onTimeout: expire}
"""


def releases() -> AppSpec:
    """support-llm in the sandbox: 1.2.0 is deployed and its refusals collapsed."""
    return AppSpec(APP, [Release("1.0.0"), Release("1.1.0"), Release("1.2.0", health="Degraded")])


def slack_env(slack_url: str) -> dict[str, str]:
    """The service's Slack settings, pointing at the fake Slack process."""
    return {
        "ROLLBACKBOT_SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
        "ROLLBACKBOT_SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "ROLLBACKBOT_SLACK_API_URL": f"{slack_url}/api/",
    }


@dataclass(frozen=True)
class Setting:
    """Where the first act left things."""

    service: httpx.AsyncClient
    webhook_token: str
    slack_url: str
    argo_url: str
    remote: Path  # the GitOps remote (bare)
    database_url: str
    policies: Path


def say(text: str = "") -> None:
    """One line of the demo's output, flushed at once."""
    print(text, flush=True)


def indent(text: str, prefix: str = "   │ ") -> str:
    """Every line of ``text`` behind ``prefix``."""
    return "\n".join(prefix + line for line in text.splitlines())


async def propose_act(setting: Setting) -> int:
    """Run the propose scenario; 0 when the approved rollback ends rolled back and Healthy."""
    started = time.monotonic()
    labels = {"alertname": "ModelRefusalRateDrop", "app": APP, "severity": "critical", "namespace": "ml-prod"}
    summary = "Refusal rate of support-llm fell to 0.3% (baseline 4.1%): guardrail bypass?"
    body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=3), annotations={"summary": summary})])
    say(f'\n7. propose mode: Alertmanager delivers ModelRefusalRateDrop{{app="{APP}"}}')
    headers = {"Authorization": f"Bearer {setting.webhook_token}"}
    answer = await setting.service.post("/webhook/alertmanager", json=body, headers=headers)
    incident_id = answer.json()["incidents"][0]
    incident = await wait_incident(setting.service, incident_id, {"awaiting_approval", *DONE})
    if incident["state"] != "awaiting_approval":
        say(f"   expected a proposal, got {incident['state']}: {incident.get('reason')}")
        return 1
    posted = await wait_slack(setting.slack_url, lambda m: "thread_ts" not in m and "Rollback proposed" in m["text"])
    say(f"\n8. proposal posted to Slack channel {posted['channel']} (ts {posted['ts']}); as a person reads it:")
    say(indent(proposal_text(setting, incident_id)))

    say(f"\n9. {APPROVER_NAME} ({APPROVER_ID}) clicks Approve; Slack sends a signed interactivity request")
    payload = block_actions("approve_rollback", incident_id, APPROVER_ID, user_name="dana.ops", message_ts=posted["ts"])
    content, signed = signed_request(SLACK_SIGNING_SECRET, payload)
    clicked = time.monotonic()
    ack = await setting.service.post("/slack/actions", content=content, headers=signed)
    say(f"   POST /slack/actions answered {ack.status_code} in {1000 * (time.monotonic() - clicked):.1f} ms (ack)")
    incident = await wait_incident(setting.service, incident_id, DONE)
    states = " → ".join(dict.fromkeys(e["state"] for e in incident["events"]))
    say(f"   {states}")
    await _show_slack_thread(setting.slack_url, posted)
    _show_commit(setting.remote, incident.get("rollback_commit"))
    async with httpx.AsyncClient(timeout=5.0) as argo:
        status = (await argo.get(f"{setting.argo_url}/_fake/apps/{APP}")).json().get("status", {})
    health = status.get("health", {}).get("status")
    ok = incident["state"] == "rolled_back" and health == "Healthy"
    say(
        f"\n{'OK' if ok else 'FAILED'}: proposal {incident['state']} after approval by {incident.get('approved_by')}; "
        f"{APP} {status.get('sync', {}).get('status')}, {health}; {time.monotonic() - started:.1f}s for this act"
    )
    return 0 if ok else 1


def proposal_text(setting: Setting, incident_id: str) -> str:
    """The proposal as a person reads it in Slack (plain text)."""
    incident = SqlIncidentStore(setting.database_url).get(incident_id)
    policies = {p.name: p for p in load_policies(setting.policies)}
    if incident is None:
        return "(incident not found)"
    return as_text(incident_message(incident, policies.get(incident.policy), MessageKind.proposal))


async def wait_incident(
    client: httpx.AsyncClient,
    incident_id: str,
    states: set[str],
    timeout: float = 30,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """The incident once it is in one of ``states`` (or ``until`` holds), or as it is after ``timeout``."""
    deadline, incident = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        incident = (await client.get(f"/api/incidents/{incident_id}")).json()
        if incident["state"] in states or (until is not None and until(incident)):
            break
        await asyncio.sleep(0.05)
    return dict(incident)


async def _messages(slack_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        return list((await http.get(f"{slack_url}/_fake/messages")).json())


async def wait_slack(slack_url: str, wanted: Any, timeout: float = 10) -> dict[str, Any]:
    """The first message the fake Slack received that ``wanted`` accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in await _messages(slack_url) if wanted(m)]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise RuntimeError("the expected Slack message never arrived")


async def _show_slack_thread(slack_url: str, parent: dict[str, Any]) -> None:
    await wait_slack(slack_url, lambda m: m.get("thread_ts") == parent["ts"] and "Rolled back" in m["text"])
    messages = await _messages(slack_url)
    [updated] = [m for m in messages if m["ts"] == parent["ts"]]
    has_buttons = any(block["type"] == "actions" for block in updated["blocks"])
    say(f"\n10. Slack: the proposal now reads {updated['text']!r} (buttons {'still there' if has_buttons else 'gone'})")
    for reply in (m for m in messages if m.get("thread_ts") == parent["ts"]):
        say(f"    thread: {reply['text']}")


def _show_commit(remote: Path, commit: str | None) -> None:
    if not commit:
        return
    shown = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "-1", "--format=%H%n%s%n%n%(trailers:only,unfold)", commit],
        capture_output=True,
        text=True,
        check=False,
    )
    say("\n11. the approved rollback commit:")
    say(indent(shown.stdout.rstrip(), "    "))
