"""Evidence and the Argo CD pre-check run while git plans (they read Argo CD only), never after it.

The fake git's plan blocks until the other read has begun: done one after the other, the plan would
wait out its deadline and the incident would fail. No timing is measured, only who waits for whom.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import FakeClock
from rollbackbot.core.model import ResolvedTarget, RollbackPlan
from rollbackbot.core.policy import Policy
from rollbackbot.errors import PermanentError
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from tests.service.fakes import FakeArgo, FakeGit
from tests.service.test_service import DOCSUM, _payload

REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 5.0


@dataclass
class PlanWaitsFor(FakeGit):
    """A plan that only finishes once ``started`` is set by the read that must run beside it."""

    started: threading.Event = field(default_factory=threading.Event)

    def plan(self, target: ResolvedTarget) -> RollbackPlan:
        if not self.started.wait(WAIT_SECONDS):
            raise PermanentError("the plan ran alone: the other read had not begun")
        return super().plan(target)


@dataclass
class ArgoSignals(FakeArgo):
    """Sets ``on_tree`` when evidence reads the resource tree, ``on_app`` when anyone reads the app."""

    on_tree: threading.Event | None = None
    on_app: threading.Event | None = None

    async def get_application(self, app: str, project: str) -> dict[str, Any]:
        if self.on_app is not None:
            self.on_app.set()
        return await super().get_application(app, project)

    async def get_resource_tree(self, app: str, project: str) -> dict[str, Any]:
        if self.on_tree is not None:
            self.on_tree.set()
        return {"nodes": []}


@pytest.fixture
def policies() -> list[Policy]:
    return load_policies(REPO / "policies")


def _service(tmp_path: Path, policies: list[Policy], git: FakeGit, argo: FakeArgo, *, evidence: bool) -> Service:
    return Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git,
        argocd=argo,
        policies=policies,
        clock=FakeClock(),
        evidence=FileEvidenceSink(tmp_path / "evidence") if evidence else None,
    )


async def test_evidence_is_gathered_while_git_plans(tmp_path: Path, policies: list[Policy]) -> None:
    git = PlanWaitsFor()
    argo = ArgoSignals(on_tree=git.started)  # only evidence capture reads the resource tree
    service = _service(tmp_path, policies, git, argo, evidence=True)
    incident_id = service.receive(_payload(DOCSUM, FakeClock())).incidents[0]
    await service.idle()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "rolled_back", incident and incident.reason
    details = [e.detail for e in incident.events]
    plan_at = next(i for i, d in enumerate(details) if d.startswith("plan: "))
    evidence_at = next(i for i, d in enumerate(details) if d.startswith("evidence captured: "))
    commit_at = next(i for i, d in enumerate(details) if d.startswith("commit "))
    assert plan_at < evidence_at < commit_at  # evidence first, still before anything changes
    assert incident.evidence_url
    bundle = Path(incident.evidence_url.removeprefix("file://"))
    assert '"docsum-llm/v1.1.0"' in (bundle / "git.json").read_text()  # the plan is in the bundle


async def test_the_argocd_precheck_runs_while_git_plans(tmp_path: Path, policies: list[Policy]) -> None:
    git = PlanWaitsFor()
    service = _service(tmp_path, policies, git, ArgoSignals(on_app=git.started), evidence=False)
    incident_id = service.receive(_payload(DOCSUM, FakeClock())).incidents[0]
    await service.idle()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "rolled_back", incident and incident.reason


async def test_no_bundle_is_written_when_the_plan_finds_no_target(tmp_path: Path, policies: list[Policy]) -> None:
    git = PlanWaitsFor(target_tag=None)
    argo = ArgoSignals(on_tree=git.started)
    service = _service(tmp_path, policies, git, argo, evidence=True)
    incident_id = service.receive(_payload(DOCSUM, FakeClock())).incidents[0]
    await service.idle()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "suppressed"
    assert incident.evidence_url is None  # gathered while planning, then dropped: nothing to roll back
    assert not any((tmp_path / "evidence").rglob("*.json")) if (tmp_path / "evidence").exists() else True
