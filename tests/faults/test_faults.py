"""Faults in the systems around the service: Argo CD errors, hangs and bad health, git outages and races.

Real git (a signed sandbox repository), the real Argo CD client, and the fake Argo CD API in-process
with its fault knobs; every failure must end in ``failed`` with a readable reason, never stuck.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.argocd.client import ArgoCDClient
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.git.workclone import SelfRepairingRepo
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import SystemClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incidents import Incident
from rollbackbot.core.model import RollbackRequest, RollbackResult
from rollbackbot.core.policy import Policy
from rollbackbot.core.retries import GAVE_UP, RetryBudget
from rollbackbot.ports import GitOpsRepo
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.argocd import create_app, get_state
from rollbackbot.testing.argocd.config import FakeArgoConfig, make_token
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox

TOKEN = make_token("proj:ml-prod:rollbackbot")
APP = "docsum-llm"


def _policy(**extra: Any) -> Policy:
    return Policy.from_document(
        {
            "apiVersion": "rollbackbot/v1",
            "kind": "RollbackPolicy",
            "metadata": {"name": "docsum"},
            "spec": {
                "matchers": [f'app = "{APP}"'],
                "target": {"argocdApps": [APP], "project": "ml-prod", "paths": [f"apps/{APP}"], "tags": f"{APP}/v*"},
                "mode": "auto",
                "sync": {"timeout": "3s"},
                "forensics": {"budget": "1s"},
                **extra,
            },
        }
    )


@dataclass
class Rig:
    service: Service
    sandbox: GitOpsSandbox
    argo: Any  # FakeArgoState

    async def fire(self, alertname: str = "PromptInjectionSpike") -> Incident:
        labels = {"alertname": alertname, "app": APP, "severity": "critical"}
        body = notification([alert(labels, SystemClock().now() - timedelta(minutes=1))])
        incident_id = self.service.receive(AlertmanagerPayload.model_validate(body)).incidents[0]
        await asyncio.wait_for(self.service.idle(), timeout=30)
        incident = self.service.store.get(incident_id)
        assert incident is not None
        return incident


def _clone(sandbox: GitOpsSandbox, workdir: Path) -> GitOpsRepository:
    return GitOpsRepository(sandbox.remote_url, "main", workdir, sandbox.allowed_signers)


async def _controller(state: Any) -> None:
    while True:  # the fake's controller only moves when time is advanced in-process
        state.advance(0.05)
        await asyncio.sleep(0.01)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with _rigged(tmp_path, [Release("1.0.0"), Release("1.1.0", health="Degraded")], _policy()) as built:
        yield built


@asynccontextmanager
async def _rigged(
    tmp_path: Path, releases: list[Release], policy: Policy, git: GitOpsRepo | None = None
) -> AsyncIterator[Rig]:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec(APP, releases)])
    config = FakeArgoConfig(
        token=TOKEN, repo=str(sandbox.remote_path), apps=[{"name": APP, "project": "ml-prod", "path": f"apps/{APP}"}]
    )
    app = create_app(config)
    state = get_state(app)
    argocd = ArgoCDClient(
        "http://argocd",
        SecretStr(TOKEN),
        transport=httpx.ASGITransport(app=app),
        poll_interval=0.02,
        refresh_timeout=0.3,
        retry_attempts=3,
        retry_wait_max=0.05,
        busy_timeout=3.0,
    )
    service = Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git or _clone(sandbox, tmp_path / "clone"),
        argocd=argocd,
        policies=[policy],
        clock=SystemClock(),
        retry=RetryBudget(seconds=1.0, attempts=2, backoff=0.05, backoff_max=0.2),  # outages outlast it here
    )
    ticker = asyncio.create_task(_controller(state))
    yield Rig(service, sandbox, state)
    ticker.cancel()
    await service.stop()
    await argocd.aclose()


async def test_transient_argocd_errors_are_retried(rig: Rig, abuse_report) -> None:  # type: ignore[no-untyped-def]
    rig.argo.set_faults(APP, {"failNext": [503, 502]})
    incident = await rig.fire()
    assert incident.state.value == "rolled_back", incident.reason
    abuse_report.add("faults", faults=2, rollbacks=1)
    abuse_report.settled(incidents=1, stuck=0, transient_faults=2, lost_rollbacks=0)


async def test_argocd_down_ends_failed_with_reason(rig: Rig, abuse_report) -> None:  # type: ignore[no-untyped-def]
    rig.argo.set_faults(APP, {"failNext": [503] * 200})
    incident = await rig.fire()
    assert incident.state.value == "failed"
    assert "Argo CD" in incident.reason and "503" in incident.reason
    assert incident.rollback_commit  # the commit is pushed: Argo CD will pick it up when it is back
    assert TOKEN not in incident.reason
    abuse_report.add("faults", faults=1, rollbacks=1)


async def test_degraded_after_sync_fails_within_the_sync_timeout(rig: Rig, abuse_report) -> None:  # type: ignore[no-untyped-def]
    rig.argo.set_faults(APP, {"healthOverride": "Degraded"})
    started = asyncio.get_running_loop().time()
    incident = await rig.fire()
    assert incident.state.value == "failed" and "Degraded" in incident.reason
    assert asyncio.get_running_loop().time() - started < 15
    abuse_report.add("faults", faults=1, rollbacks=1)


async def test_hanging_refresh_falls_back(rig: Rig, abuse_report) -> None:  # type: ignore[no-untyped-def]
    rig.argo.set_faults(APP, {"refreshHang": True})
    incident = await rig.fire()
    assert incident.state.value == "rolled_back", incident.reason
    abuse_report.add("faults", faults=1, rollbacks=1)


async def test_git_remote_unreachable(tmp_path: Path, rig: Rig, abuse_report) -> None:  # type: ignore[no-untyped-def]
    rig.service.workflow.steps.git = GitOpsRepository(
        "https://bot:s3cr3t-password@127.0.0.1:9/gitops.git", "main", tmp_path / "other", rig.sandbox.allowed_signers
    )
    incident = await rig.fire()
    assert incident.state.value == "failed" and incident.reason.startswith(GAVE_UP), incident.reason
    assert "git fetch" in incident.reason and "retry" in incident.events[-2].detail
    assert "s3cr3t-password" not in incident.reason
    abuse_report.add("faults", faults=1)


class HumanRace:
    """Lets a human push right before rollbackbot writes its commit."""

    def __init__(self, inner: GitOpsRepository, sandbox: GitOpsSandbox, path: str) -> None:
        self.inner, self.sandbox, self.path = inner, sandbox, path

    def plan(self, target):  # type: ignore[no-untyped-def]
        return self.inner.plan(target)

    def find_rollback(self, incident_id: str) -> str | None:
        return self.inner.find_rollback(incident_id)

    def commit_rollback(self, request: RollbackRequest) -> RollbackResult:
        self.sandbox.commit_paths({self.path: "hotfix: true\n"}, "human hotfix during the incident")
        return self.inner.commit_rollback(request)

    def lineage(self, commit, paths, revision=None):  # type: ignore[no-untyped-def]
        return self.inner.lineage(commit, paths, revision)


@pytest.mark.parametrize(("path", "survives"), [("platform/other.yaml", True), (f"apps/{APP}/hotfix.yaml", False)])
async def test_push_race_with_a_human(rig: Rig, path: str, survives: bool, abuse_report) -> None:  # type: ignore[no-untyped-def]
    inner = rig.service.workflow.steps.git
    assert isinstance(inner, GitOpsRepository)
    rig.service.workflow.steps.git = HumanRace(inner, rig.sandbox, path)
    incident = await rig.fire()
    messages = rig.sandbox.log_messages(3)
    human_commit = any("human hotfix" in m for m in messages)
    if survives:
        assert incident.state.value == "rolled_back", incident.reason
        assert human_commit and rig.sandbox.show("main", path) == "hotfix: true\n"
        assert messages[0].startswith(f"rollback({APP})")
    else:
        assert incident.state.value == "failed" and "conflict" in incident.reason
        assert messages[0] == "human hotfix during the incident" or messages[0].startswith("human hotfix")
    abuse_report.add("faults", faults=1, rollbacks=int(survives))


def _damage(workdir: Path, how: str) -> None:
    if how == "deleted":
        shutil.rmtree(workdir)
    else:  # every object gone, refs and HEAD still there: only git itself can tell
        shutil.rmtree(workdir / "objects")
        (workdir / "objects").mkdir()


@pytest.mark.parametrize("how", ["deleted", "corrupted"])
async def test_damaged_work_clone_is_cloned_again(tmp_path: Path, how: str, abuse_report) -> None:  # type: ignore[no-untyped-def]
    releases = [Release("1.0.0"), Release("1.1.0"), Release("1.2.0", health="Degraded")]
    repaired: SelfRepairingRepo | None = None

    def repo() -> GitOpsRepository:
        assert built_sandbox is not None
        return _clone(built_sandbox, tmp_path / "clone")

    built_sandbox: GitOpsSandbox | None = None
    async with _rigged(tmp_path, releases, _policy(cooldown="0s")) as rig:
        built_sandbox = rig.sandbox
        repaired = SelfRepairingRepo(repo, tmp_path / "clone")
        rig.service.workflow.steps.git = repaired
        first = await rig.fire()
        assert first.state.value == "rolled_back", first.reason
        _damage(tmp_path / "clone", how)
        proposed = await rig.fire("ModelCanaryLeak")  # planned on the new clone
        assert proposed.state.value == "awaiting_approval", proposed.reason  # the head is our own rollback
        assert rig.service.approve(proposed.id, "tester").acted
        await asyncio.wait_for(rig.service.idle(), timeout=30)
        second = rig.service.store.get(proposed.id)
    assert second is not None and second.state.value == "rolled_back", second.reason
    assert (first.to_ref.tag, second.to_ref.tag) == (f"{APP}/v1.1.0", f"{APP}/v1.0.0")
    assert repaired.repairs == 1
    assert (tmp_path / "clone.damaged").exists() == (how == "corrupted")  # set aside for a look, not deleted
    abuse_report.add("faults", faults=1, rollbacks=2)
    abuse_report.settled(incidents=2, stuck=0)
