"""The right answer in a moving world: real git, the real Argo CD client, the Argo CD stand-in.

Someone pushes to the deploy branch while rollbackbot waits for Argo CD; a restart resumes an
incident in ``syncing`` after newer work landed; Argo CD refuses the bot before anything is pushed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import SystemClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.argo_status import Lineage, Relation
from rollbackbot.core.model import AppHealth
from rollbackbot.ports import ArgoCD
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.argocd.config import make_token
from tests.service.argo_rig import APP, PROJECT, TOKEN, Rig, argo_rig, fleet_policy
from tests.service.fakes import FakeArgo, FakeGit

OTHER_CHANGE = {"apps/other/notes.md": "unrelated docs\n"}
OUR_PATH_CHANGE = {"apps/docsum-llm/tuning.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tuning\n"}


class SecondWriter:
    """Argo CD as the service sees it, while someone else pushes to the branch right after each sync request."""

    def __init__(self, inner: ArgoCD, rig: Rig, changes: dict[str, str | None], message: str) -> None:
        self.inner, self.rig, self.changes, self.message = inner, rig, changes, message
        self.pushed: list[str] = []

    async def sync(self, app: str, project: str, revision: str, prune: bool, **kwargs: Any) -> None:
        await self.inner.sync(app, project, revision, prune, **kwargs)
        # Blocking on purpose: the stand-in's controller runs on this event loop, so the push lands
        # before Argo CD has finished (or even started) the operation for our commit.
        self.pushed.append(self.rig.sandbox.commit_paths(self.changes, self.message))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("auto_sync", [False, True], ids=["manual-sync", "auto-sync"])
async def test_unrelated_push_during_the_sync_wait_still_rolls_back(tmp_path: Path, auto_sync: bool) -> None:
    async with argo_rig(tmp_path, auto_sync=auto_sync) as rig:
        writer = SecondWriter(rig.service.workflow.steps.argocd, rig, OTHER_CHANGE, "other: docs")
        rig.service.workflow.steps.argocd = writer  # type: ignore[assignment]
        incident = await rig.fire()
        assert incident.state.value == "rolled_back", incident.reason
        assert writer.pushed, "the second writer pushed during the sync"
        newer = writer.pushed[0]
        assert rig.commits_since_start() == [newer, incident.rollback_commit]
        status = rig.argo.app(APP).status
        assert (status["sync"]["status"], status["sync"]["revision"]) == ("Synced", newer)
        assert status["health"]["status"] == "Healthy"
        assert f"Argo CD now at {newer[:12]}" in incident.reason


@pytest.mark.parametrize("auto_sync", [False, True], ids=["manual-sync", "auto-sync"])
async def test_later_change_to_the_app_paths_ends_superseded(tmp_path: Path, auto_sync: bool) -> None:
    async with argo_rig(tmp_path, auto_sync=auto_sync) as rig:
        writer = SecondWriter(rig.service.workflow.steps.argocd, rig, OUR_PATH_CHANGE, "docsum-llm: hand tuning")
        rig.service.workflow.steps.argocd = writer  # type: ignore[assignment]
        incident = await rig.fire()
        assert incident.state.value == "failed"
        assert incident.reason == f"superseded by {writer.pushed[0][:12]} (docsum-llm: hand tuning)"
        assert incident.events[-1].detail == incident.reason
        assert rig.commits_since_start() == [writer.pushed[0], incident.rollback_commit]


class Downtime:
    """Argo CD that never answers a refresh: the service goes down while the incident is in ``syncing``."""

    def __init__(self, inner: ArgoCD) -> None:
        self.inner = inner
        self.entered = asyncio.Event()

    async def refresh(self, app: str, project: str) -> AppHealth:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll with a deadline (the stand-in's controller runs on this event loop)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _down_in_syncing(rig: Rig) -> str:
    """Run an incident up to ``syncing`` and stop the service there; the incident id."""
    downtime = Downtime(rig.service.workflow.steps.argocd)
    rig.service.workflow.steps.argocd = downtime  # type: ignore[assignment]
    incident_id = rig.send_alert()
    await asyncio.wait_for(downtime.entered.wait(), timeout=30)
    await rig.service.stop()
    stored = rig.service.store.get(incident_id)
    assert stored is not None and stored.state.value == "syncing" and stored.rollback_commit
    return incident_id


async def test_resume_in_syncing_does_not_sync_over_newer_work(tmp_path: Path) -> None:
    async with argo_rig(tmp_path) as rig:
        incident_id = await _down_in_syncing(rig)
        # While the bot is down a human changes the app and deploys that by hand.
        human = rig.sandbox.commit_paths(OUR_PATH_CHANGE, "docsum-llm: hotfix while the bot was down")
        rig.argo.sync(rig.argo.app(APP), {"revision": human, "prune": True}, rig.argo.authenticate(TOKEN))
        await _until(lambda: rig.argo.raw(APP)["fake"]["deployedRevision"] == human)
        syncs_before = len(rig.sync_posts())

        async with rig.client() as argocd:
            restarted = rig.new_service(argocd)
            await restarted.start()
            await asyncio.wait_for(restarted.idle(), timeout=30)
            incident = restarted.store.get(incident_id)
            await restarted.stop()
        assert incident is not None and incident.state.value == "failed"
        assert incident.reason == f"superseded by {human[:12]} (docsum-llm: hotfix while the bot was down)"
        assert len(rig.sync_posts()) == syncs_before, "nothing was synced over the newer work"
        assert rig.argo.raw(APP)["fake"]["deployedRevision"] == human


async def test_resume_in_syncing_after_an_unrelated_push_rolls_back(tmp_path: Path) -> None:
    async with argo_rig(tmp_path) as rig:
        incident_id = await _down_in_syncing(rig)
        newer = rig.sandbox.commit_paths(OTHER_CHANGE, "other: docs while the bot was down")
        async with rig.client() as argocd:
            restarted = rig.new_service(argocd)
            await restarted.start()
            await asyncio.wait_for(restarted.idle(), timeout=30)
            incident = restarted.store.get(incident_id)
            await restarted.stop()
        assert incident is not None and incident.state.value == "rolled_back", incident.reason
        assert rig.commits_since_start() == [newer, incident.rollback_commit]


# --- Argo CD problems are found while planning, before anything is pushed ------------------------------

PAYMENTS = make_token("proj:payments:rollbackbot")
PRECHECK_CASES = [
    pytest.param({"token": make_token("proj:ml-prod:revoked")}, "(401)", id="token-rejected"),
    pytest.param({"token": PAYMENTS, "argo_token": PAYMENTS}, "HTTP 403: permission denied", id="other-project-token"),
    pytest.param({"argo_apps": [{"name": "other", "project": PROJECT, "path": "apps/other"}]}, "HTTP 404", id="no-app"),
    pytest.param(
        {"argo_apps": [{"name": APP, "project": "payments", "path": f"apps/{APP}"}]}, "HTTP 404", id="other-project"
    ),
]


@pytest.mark.parametrize(("setup", "expected"), PRECHECK_CASES)
async def test_argocd_problems_fail_the_incident_before_the_push(
    tmp_path: Path, setup: dict[str, Any], expected: str
) -> None:
    async with argo_rig(tmp_path, **setup) as rig:
        incident = await rig.fire()
        assert incident.state.value == "failed"
        assert incident.reason.startswith("Argo CD pre-check failed, nothing committed: docsum-llm: ")
        assert expected in incident.reason
        assert incident.rollback_commit is None and incident.evidence_url is None
        assert rig.sandbox.head() == rig.head_before, "no commit exists in the remote"
        assert rig.commits_since_start() == []
        assert rig.sync_posts() == []
        gets = [r for r in rig.argo.requests if r["method"] == "GET"]
        assert len(gets) == 1 and gets[0]["query"] == {"project": PROJECT}, "one GET of the application"
        assert "eyJ" not in incident.reason


async def test_argocd_not_answering_while_planning_does_not_block_the_rollback(tmp_path: Path) -> None:
    async with argo_rig(tmp_path) as rig:
        rig.argo.set_faults(APP, {"failNext": [503, 503]})  # the planning GET and its one retry
        incident = await rig.fire()
        assert incident.state.value == "rolled_back", incident.reason
        plan_event = next(e.detail for e in incident.events if e.detail.startswith("plan:"))
        assert "Argo CD pre-check skipped: docsum-llm: " in plan_event and "503" in plan_event


# --- the branch check before every (re-)sync, in isolation ------------------------------------------------


class MovedGit(FakeGit):
    """The branch head after our commit, as the git adapter reports it."""

    def __init__(self, head: Lineage) -> None:
        super().__init__()
        self.moved = head

    def lineage(self, commit: str, paths: object, revision: str | None = None) -> Lineage:
        return self.moved


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (
            Lineage("f" * 40, Relation.superseded, "e" * 40, "docsum: by hand"),
            f"superseded by {'e' * 12} (docsum: by hand)",
        ),
        (
            Lineage("b" * 40, Relation.older),
            f"superseded: the deploy branch no longer contains {'0' * 12} (it is at {'b' * 12})",
        ),
    ],
    ids=["paths-changed", "branch-rewritten"],
)
async def test_branch_check_stops_before_argocd_is_asked_to_sync(tmp_path: Path, head: Lineage, reason: str) -> None:
    git, argo = MovedGit(head), FakeArgo()
    service = Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git,
        argocd=argo,
        policies=[fleet_policy()],
        clock=SystemClock(),
    )
    body = notification([alert({"alertname": "ModelAnomaly", "app": APP}, SystemClock().now() - timedelta(minutes=1))])
    incident_id = service.receive(AlertmanagerPayload.model_validate(body)).incidents[0]
    await asyncio.wait_for(service.idle(), timeout=30)
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "failed"
    assert incident.reason.startswith(reason)
    assert incident.rollback_commit == git.commits[incident_id]
    assert not [c for c in argo.calls if c[0] in ("refresh", "sync", "wait")]
