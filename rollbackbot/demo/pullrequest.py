"""The demo's third act: ``git.mode: pull-request`` — the deploy branch is protected, so the rollback is a pull
request on a (fake) GitHub, merged when an allowed reviewer approves it (docs/pull-request-mode.md).

The fake GitHub serves the REST API on loopback over the sandbox's real bare repository and posts signed
webhooks to the service's ``/forge/events``; reviews are submitted through its API as the reviewers would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from rollbackbot.demo.propose import DONE, Setting, indent, proposal_text, say, wait_incident, wait_slack
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.forge.github import FakeGitHub
from rollbackbot.testing.forge.github_wire import Hook
from rollbackbot.testing.gitops import AppSpec, Release, run_git

APP = "triage-llm"
REPOSITORY = "acme/gitops"
BOT_TOKEN = "ghs_demo0rollbackbot0installation0token0"  # the GitHub App installation token it would have
REVIEWERS = {"alice": "github_pat_demo0alice0000000000000000", "mallory": "github_pat_demo0mallory00000000000000"}
WEBHOOK_SECRET = "demo-forge-webhook-secret-0123456789"

EMBEDDED_POLICY = f"""\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {{name: triage-llm-pull-request}}
spec:
  matchers: ['alertname = "PromptInjectionSpike"', 'app = "{APP}"']
  target: {{argocdApps: [{APP}], project: ml-prod, paths: [apps/{APP}], tags: "{APP}/v*"}}
  mode: auto
  approval: {{channel: C0ML0NCALL, approvers: [U012ABC], timeout: 30m, onTimeout: expire}}
  git:
    mode: pull-request              # the deploy branch is protected: no direct push
    forge: github
    repository: {REPOSITORY}
    autoMerge: afterApproval        # merge once one of the approvers below approves the current head
    approvers: [alice]
    poll: 5s                        # the webhook makes it sooner; polling covers a lost one
  sync: {{timeout: 1m, prune: true}}
"""


def releases() -> AppSpec:
    """triage-llm in the sandbox: 1.2.0 is deployed and leaks its canary."""
    return AppSpec(APP, [Release("1.0.0"), Release("1.1.0"), Release("1.2.0", health="Degraded")])


def fake_github(remote: Path, service_url: str) -> FakeGitHub:
    """The fake GitHub over the sandbox's bare repository, with its webhook pointed at the service."""
    users = {BOT_TOKEN: "rollbackbot[bot]", **{token: login for login, token in REVIEWERS.items()}}
    github = FakeGitHub(REPOSITORY, remote, users=users)
    github.hooks.append(Hook(f"{service_url}/forge/events", WEBHOOK_SECRET))
    return github


def forge_env(github_url: str) -> dict[str, str]:
    """The service's forge settings, pointing at the fake GitHub."""
    return {
        "ROLLBACKBOT_FORGE_API_URL": github_url,
        "ROLLBACKBOT_FORGE_TOKEN": BOT_TOKEN,
        "ROLLBACKBOT_FORGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


async def pull_request_act(setting: Setting, github: FakeGitHub, github_url: str) -> int:
    """Run the pull-request scenario; 0 when the merged pull request ends rolled back and Healthy."""
    started = time.monotonic()
    base_before = _branch_head(setting.remote)
    say(f"\n12. pull-request mode: the deploy branch is protected; the policy of {APP} says")
    say(f"    git: {{mode: pull-request, forge: github, repository: {REPOSITORY}, approvers: [alice]}}")
    labels = {"alertname": "PromptInjectionSpike", "app": APP, "severity": "critical", "namespace": "ml-prod"}
    summary = f"System-prompt canary of {APP} seen in 3 outputs"
    body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1), annotations={"summary": summary})])
    headers = {"Authorization": f"Bearer {setting.webhook_token}"}
    answer = await setting.service.post("/webhook/alertmanager", json=body, headers=headers)
    incident_id = answer.json()["incidents"][0]
    incident = await wait_incident(setting.service, incident_id, {"awaiting_approval", *DONE})
    pr = incident.get("pull_request") or {}
    if incident["state"] != "awaiting_approval" or not pr.get("number"):
        say(f"   expected an open pull request, got {incident['state']}: {incident.get('reason')}")
        return 1
    pull = github.pulls[int(pr["number"])]
    untouched = _branch_head(setting.remote) == base_before
    say(f"\n13. rollbackbot pushed {pr['branch']} ({pr['head_sha'][:12]}) and opened pull request #{pull.number}:")
    say(f"    {pr['url']}")
    say(f"    title: {pull.title}   labels: {', '.join(pull.labels)}")
    table = [line for line in pull.body.splitlines() if line.startswith("| ") and line.strip("| ")]
    say(indent("\n".join(table), "    │ "))
    say(f"    the deploy branch is {'untouched' if untouched else 'CHANGED'}: main is still at {base_before[:12]}")
    posted = await wait_slack(setting.slack_url, lambda m: "thread_ts" not in m and f"proposed: {APP}" in m["text"])
    say(f"    Slack ({posted['channel']}), as a person reads it:")
    say(indent(proposal_text(setting, incident_id), "    │ "))

    async with httpx.AsyncClient(base_url=github_url, timeout=5.0) as api:
        say("\n14. mallory approves the pull request on GitHub (not in git.approvers)")
        await _review(api, pull.number, "mallory")
        ignored = await wait_incident(setting.service, incident_id, DONE, until=_event_mentions("mallory"))
        say(f"    rollbackbot read it: {_last_event(ignored, 'mallory')}; still {ignored['state']}")
        say("\n15. alice approves; GitHub posts the signed pull_request_review webhook to /forge/events")
        await _review(api, pull.number, "alice")
    incident = await wait_incident(setting.service, incident_id, DONE)
    say(f"    {' → '.join(dict.fromkeys(e['state'] for e in incident['events']))}")
    return await _show_outcome(setting, github, incident, base_before, started)


async def _show_outcome(
    setting: Setting, github: FakeGitHub, incident: dict[str, Any], base_before: str, started: float
) -> int:
    pr = incident.get("pull_request") or {}
    merges = github.calls("PUT", rf"/repos/{REPOSITORY}/pulls/\d+/merge")
    merge_commit = str(pr.get("merge_commit") or "")
    for call in merges:
        say(f"    PUT {call['path']} {call['body']}")
    parents = (
        run_git(["rev-list", "--parents", "-n1", merge_commit], setting.remote).split()[1:] if merge_commit else []
    )
    say(f"\n16. merge commit {merge_commit[:12]} on main, parents {' '.join(p[:12] for p in parents)}")
    async with httpx.AsyncClient(timeout=5.0) as argo:
        status = (await argo.get(f"{setting.argo_url}/_fake/apps/{APP}")).json().get("status", {})
    health, revision = status.get("health", {}).get("status"), status.get("sync", {}).get("revision", "")
    say(f"    Argo CD: {APP} {status.get('sync', {}).get('status')} at {revision[:12]}, health {health}")
    ok = (
        incident["state"] == "rolled_back"
        and health == "Healthy"
        and revision == merge_commit == incident.get("rollback_commit")
        and parents == [base_before, pr.get("head_sha")]
        and [m["body"].get("sha") for m in merges] == [pr.get("head_sha")]
    )
    say(
        f"\n{'OK' if ok else 'FAILED'}: pull request #{pr.get('number')} merged with its head SHA as precondition"
        f" after approval by {incident.get('approved_by')}; {APP} rolled back to {incident.get('to', {}).get('tag')}"
        f" at the merge commit; {time.monotonic() - started:.1f}s for this act"
    )
    return 0 if ok else 1


async def _review(api: httpx.AsyncClient, number: int, login: str) -> None:
    answer = await api.post(
        f"/repos/{REPOSITORY}/pulls/{number}/reviews",
        json={"event": "APPROVE", "body": "rollback looks right"},
        headers={"Authorization": f"Bearer {REVIEWERS[login]}"},
    )
    answer.raise_for_status()


def _event_mentions(word: str) -> Callable[[dict[str, Any]], bool]:
    return lambda incident: any(word in e["detail"] for e in incident["events"])


def _last_event(incident: dict[str, Any], word: str) -> str:
    return next((e["detail"] for e in reversed(incident["events"]) if word in e["detail"]), "")


def _branch_head(remote: Path) -> str:
    return run_git(["rev-parse", "refs/heads/main"], remote).strip()
