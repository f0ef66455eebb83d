"""A pull-request-mode rig: signed GitOps sandbox, the real git adapter, the fake GitHub on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from rollbackbot.adapters.forge.github import GitHubForge
from rollbackbot.adapters.forge.gitlab import GitLabForge
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import SystemClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incidents import Incident
from rollbackbot.core.policy import GitDelivery, Policy
from rollbackbot.ports import Forge
from rollbackbot.prmode import PullRequestMode
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.forge.github import FakeGitHub
from rollbackbot.testing.forge.gitlab import FakeGitLab
from rollbackbot.testing.forge.server import serve_forge
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox
from tests.service.fakes import FakeArgo

APP = "docsum-llm"
BOT_TOKEN = "ghs_bot0000000000000000000000000000"
ALICE, MALLORY = "ghp_alice000000000000000000000000000", "ghp_mallory0000000000000000000000000"


def pr_policy(git: dict[str, Any] | None = None, approval: bool = False) -> Policy:
    spec: dict[str, Any] = {
        "matchers": ['app = "docsum-llm"'],
        "target": {"argocdApps": [APP], "project": "ml-prod", "paths": [f"apps/{APP}"], "tags": f"{APP}/v*"},
        "mode": "auto",
        "forensics": {"budget": "1s"},
        "git": {
            "mode": "pull-request",
            "forge": "github",
            "repository": "acme/gitops",
            "approvers": ["alice"],
            "poll": "1s",
            **(git or {}),
        },
    }
    if approval:
        spec["approval"] = {"channel": "C0ML0NCALL", "approvers": ["U012ABC"], "timeout": "30m"}
    return Policy.from_document(
        {"apiVersion": "rollbackbot/v1", "kind": "RollbackPolicy", "metadata": {"name": "docsum-pr"}, "spec": spec}
    )


@dataclass
class Rig:
    tmp: Path
    sandbox: GitOpsSandbox
    github: FakeGitHub  # the fake forge in use (a FakeGitLab for forge: gitlab)
    url: str
    git: GitOpsRepository
    argo: FakeArgo
    service: Service
    policy: Policy
    forges: list[GitHubForge | GitLabForge]
    gitlab: FakeGitLab | None = None

    def forge_for(self, delivery: GitDelivery) -> Forge:
        kind = GitLabForge if self.gitlab is not None else GitHubForge
        client = kind(self.url, SecretStr(BOT_TOKEN), str(delivery.repository), attempts=4, wait_max=0.05)
        self.forges.append(client)
        return client

    def new_service(self) -> Service:
        """A service on the same store and clone: a restart."""
        return Service(
            store=SqlIncidentStore(f"sqlite:///{self.tmp}/state.db"),
            git=self.git,
            argocd=self.argo,
            policies=[self.policy],
            clock=SystemClock(),
            pull_requests=PullRequestMode(git=self.git, forges=self.forge_for, clock=SystemClock()),
            watchdog_seconds=None,
        )

    def send_alert(self) -> str:
        labels = {"alertname": "PromptInjectionSpike", "app": APP}
        body = notification([alert(labels, SystemClock().now() - timedelta(minutes=1))])
        return self.service.receive(AlertmanagerPayload.model_validate(body)).incidents[0]

    def incident(self, incident_id: str) -> Incident:
        found = self.service.store.get(incident_id)
        assert found is not None
        return found

    async def until(self, incident_id: str, state: str, timeout: float = 20) -> Incident:
        """Wait until the incident reaches ``state`` (the service keeps polling in the background)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (incident := self.incident(incident_id)).state.value != state:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{incident.state.value}, not {state}: {[e.detail for e in incident.events]}")
            await asyncio.sleep(0.05)
        return incident


@contextlib.asynccontextmanager
async def pr_rig(
    tmp: Path, *, policy: Policy | None = None, required_approvals: int = 0, gitlab: bool = False
) -> AsyncIterator[Rig]:
    sandbox = build_sandbox(tmp / "gitops", [AppSpec(APP, [Release("1.0.0"), Release("1.1.0", health="Degraded")])])
    users = {BOT_TOKEN: "rollbackbot[bot]", ALICE: "alice", MALLORY: "mallory"}
    github = FakeGitHub("acme/gitops", sandbox.remote_path, users=users, required_approvals=required_approvals)
    lab = FakeGitLab("acme/gitops", sandbox.remote_path, users=users) if gitlab else None
    async with serve_forge(lab or github, prefix="/api/v4" if lab else "") as url:
        git = GitOpsRepository(sandbox.remote_url, sandbox.branch, tmp / "clone", sandbox.allowed_signers)
        rig = Rig(tmp, sandbox, github, url, git, FakeArgo(), None, policy or pr_policy(), [], lab)  # type: ignore[arg-type]
        rig.service = rig.new_service()
        try:
            yield rig
        finally:
            await rig.service.stop()
            for client in rig.forges:
                await client.aclose()
