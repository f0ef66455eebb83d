"""Crash safety in pull-request mode: SIGKILL the service after the branch push, after the pull request is
created and after the merge call, restart it, and get one pull request, one merge and one rollback commit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.failpoints import PULL_REQUEST_POINTS
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.forge.github import FakeGitHub
from rollbackbot.testing.forge.server import serve_forge
from rollbackbot.testing.gitops import build_sandbox, run_git
from tests.e2e.conftest import API_AUTH, ARGOCD_TOKEN, WEBHOOK_TOKEN, docsum_releases

pytestmark = pytest.mark.e2e

BOT, ALICE = "ghs_e2e0bot000000000000000000000000000", "github_pat_e2e0alice0000000000000000"
POLICY = """\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {name: docsum-llm-pull-request}
spec:
  matchers: ['app = "docsum-llm"']
  target: {argocdApps: [docsum-llm], project: ml-prod, paths: [apps/docsum-llm], tags: "docsum-llm/v*"}
  mode: auto
  git: {mode: pull-request, forge: github, repository: acme/gitops, approvers: [alice], poll: 1s}
  sync: {timeout: 1m}
"""


async def _incident(api: httpx.AsyncClient, incident_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline, incident = asyncio.get_running_loop().time() + 30, {}
    while asyncio.get_running_loop().time() < deadline:
        incident = (await api.get(f"/api/incidents/{incident_id}")).json()
        if done(incident):
            break
        await asyncio.sleep(0.05)
    return dict(incident)


def _waiting(incident: dict[str, Any]) -> bool:
    return incident.get("state") == "awaiting_approval" and bool((incident.get("pull_request") or {}).get("number"))


@pytest.mark.parametrize("point", PULL_REQUEST_POINTS)
async def test_sigkill_in_pull_request_mode_then_restart_opens_one_pull_request_and_merges_once(
    tmp_path: Path, point: str
) -> None:
    sandbox = build_sandbox(tmp_path / "gitops", docsum_releases())
    head_before = sandbox.head()
    config = tmp_path / "argocd.json"
    apps = [{"name": "docsum-llm", "project": "ml-prod", "path": "apps/docsum-llm"}]
    config.write_text(json.dumps({"token": ARGOCD_TOKEN, "repo": str(sandbox.remote_path), "apps": apps}))
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "10-docsum-llm-pull-request.yaml").write_text(POLICY)
    github = FakeGitHub("acme/gitops", sandbox.remote_path, users={BOT: "rollbackbot[bot]", ALICE: "alice"})
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    labels = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
    body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1))])
    hook = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    async with serve_forge(github) as github_url:  # in this event loop: never block it while the service runs
        with open(tmp_path / "processes.log", "wb") as log:
            argo, argo_url = await asyncio.to_thread(procs.start_fake_argocd, config, log)
            env = procs.service_env(
                git_url=sandbox.remote_url,
                allowed_signers=sandbox.allowed_signers,
                policies=tmp_path / "policies",
                argocd_url=argo_url,
                argocd_token=ARGOCD_TOKEN,
                webhook_token=WEBHOOK_TOKEN,
                state=tmp_path / "state",
            ) | {"ROLLBACKBOT_FORGE_API_URL": github_url, "ROLLBACKBOT_FORGE_TOKEN": BOT}
            service = procs.start_service(env | {"ROLLBACKBOT_FAILPOINTS": point}, port, log, cwd=tmp_path)
            try:
                await asyncio.to_thread(procs.wait_ready, f"{base}/readyz", service)
                async with httpx.AsyncClient(base_url=base, headers=API_AUTH, timeout=10) as api:
                    incident_id = (await api.post("/webhook/alertmanager", json=body, headers=hook)).json()[
                        "incidents"
                    ][0]
                    if point == "after_merge":  # approve; the next look merges, and the process dies right after
                        await _incident(api, incident_id, _waiting)
                        github.review(1, "alice", {"event": "APPROVE"})
                    assert await asyncio.to_thread(service.wait, 30) == -9, "the failpoint did not kill the service"

                    service = procs.start_service(env, port, log, cwd=tmp_path)
                    await asyncio.to_thread(procs.wait_ready, f"{base}/readyz", service)
                    # Alertmanager re-delivers after the outage: that must not open or merge anything new.
                    assert (await api.post("/webhook/alertmanager", json=body, headers=hook)).status_code == 202
                    if point != "after_merge":
                        waiting = await _incident(api, incident_id, _waiting)
                        github.review(int(waiting["pull_request"]["number"]), "alice", {"event": "APPROVE"})
                    incident = await _incident(api, incident_id, lambda i: i.get("state") in ("rolled_back", "failed"))
            finally:
                await asyncio.to_thread(procs.stop, service)
                await asyncio.to_thread(procs.stop, argo)
    assert incident["state"] == "rolled_back", (incident, (tmp_path / "processes.log").read_text()[-3000:])
    assert list(github.pulls) == [1] and github.pulls[1].merged
    assert github.pulls[1].labels == ["rollback", "rollbackbot"]
    assert len(github.calls("POST", r"/repos/acme/gitops/pulls")) == 1
    assert len(github.calls("PUT", r"/repos/acme/gitops/pulls/1/merge")) == 1
    merge_commit = sandbox.head()
    assert incident["rollback_commit"] == incident["pull_request"]["merge_commit"] == merge_commit
    new = run_git(["rev-list", f"{head_before}..{sandbox.branch}"], sandbox.remote_path).split()
    trailers = run_git(
        ["log", "--format=%(trailers:key=Rollback-Incident,valueonly)", f"{head_before}..{sandbox.branch}"],
        sandbox.remote_path,
    ).split()
    assert len(new) == 2 and trailers == [incident_id], "one rollback commit and its merge, nothing else"
