"""The schedule yields to incidents: a rollback never waits behind a readiness run; reloads trigger a run."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.clock import SystemClock
from rollbackbot.core.incidents import IncidentState
from rollbackbot.core.model import ResolvedTarget, RollbackPlan
from rollbackbot.readiness import ReadinessChecker, ReadinessMetrics
from rollbackbot.readiness_schedule import ReadinessSchedule
from tests.readiness.conftest import Rig, policies
from tests.service.argo_rig import APP, argo_rig, fleet_policy


class BlockingGit(GitOpsRepository):
    """A readiness clone whose plans wait for ``release`` while holding the clone's lock: a run caught mid-plan."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.entered = threading.Event()
        self.release = threading.Event()

    def _choose(self, target: ResolvedTarget) -> RollbackPlan:  # runs under the adapter's lock
        self.entered.set()
        assert self.release.wait(30)
        return super()._choose(target)


async def test_a_rollback_completes_while_a_readiness_run_is_in_the_middle_of_a_plan(tmp_path: Path) -> None:
    async with argo_rig(tmp_path) as rig:
        readiness_git = BlockingGit(
            rig.sandbox.remote_url, rig.sandbox.branch, tmp_path / "clone-readiness", rig.sandbox.allowed_signers
        )
        argocd = rig.client()
        checker = ReadinessChecker(readiness_git, argocd, SystemClock(), FileEvidenceSink(tmp_path / "evidence"))
        schedule = ReadinessSchedule(
            checker,
            lambda: [fleet_policy()],
            interval=600,
            busy=lambda: rig.service.working,
            metrics=ReadinessMetrics(),
        )
        run = asyncio.create_task(schedule.run_once())
        try:
            assert await asyncio.to_thread(readiness_git.entered.wait, 30)
            incident = await asyncio.wait_for(rig.fire(), timeout=60)  # while readiness holds its own git lock
            assert incident.state is IncidentState.rolled_back, incident.events
        finally:
            readiness_git.release.set()
            report = await asyncio.wait_for(run, 60)
            await argocd.aclose()
        assert APP in {item.app for item in report.apps}


async def test_it_waits_between_apps_while_an_incident_is_driven(rig: Rig) -> None:
    busy = True
    schedule = ReadinessSchedule(
        rig.checker(), policies, interval=600, busy=lambda: busy, metrics=ReadinessMetrics(), quiet_poll=0.01
    )
    run = asyncio.create_task(schedule.run_once())
    await asyncio.sleep(0.3)
    assert not run.done() and rig.argo.requests == []  # nothing asked while an incident runs
    busy = False
    report = await asyncio.wait_for(run, 60)
    assert len(report.apps) == 10 and schedule.latest is report


async def test_a_policy_reload_runs_it_again_before_the_interval(rig: Rig) -> None:
    metrics = ReadinessMetrics()
    schedule = ReadinessSchedule(rig.checker(), policies, interval=3600, metrics=metrics)
    task = asyncio.create_task(schedule.run_forever())
    try:
        for _ in range(600):
            if schedule.runs == 1:
                break
            await asyncio.sleep(0.05)
        assert schedule.runs == 1 and metrics.report is schedule.latest
        schedule.request_run()
        for _ in range(600):
            if schedule.runs == 2:
                break
            await asyncio.sleep(0.05)
        assert schedule.runs == 2
    finally:
        task.cancel()
