"""The service drives incidents through the ports: intake, decisions, exactly-once, resume."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import FakeClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incidents import Incident
from rollbackbot.core.model import AppHealth
from rollbackbot.core.policy import Policy
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.service.fakes import ConflictError, FakeArgo, FakeGit, TransientError

REPO = Path(__file__).resolve().parents[2]
DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
BADGE = {"alertname": "ModelFalseNegativeSpike", "app": "badge-vision", "severity": "critical"}


@pytest.fixture
def policies() -> list[Policy]:
    return load_policies(REPO / "policies")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _service(tmp_path: Path, policies: list[Policy], clock: FakeClock, git: FakeGit, argo: FakeArgo) -> Service:
    return Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git,
        argocd=argo,
        policies=policies,
        clock=clock,
        evidence=FileEvidenceSink(tmp_path / "evidence"),
    )


def _payload(labels: dict[str, str], clock: FakeClock, ago: float = 120, resolved: bool = False) -> AlertmanagerPayload:
    start = clock.now() - timedelta(seconds=ago)
    body = notification([alert(labels, start, ends_at=clock.now() if resolved else None)])
    return AlertmanagerPayload.model_validate(body)


async def test_auto_rollback_goes_through_every_state(tmp_path: Path, policies: list[Policy], clock: FakeClock) -> None:
    git, argo = FakeGit(), FakeArgo()
    service = _service(tmp_path, policies, clock, git, argo)
    received = service.receive(_payload(DOCSUM, clock))
    await service.idle()
    incident = service.store.get(received.incidents[0])
    assert incident is not None
    assert incident.state.value == "rolled_back"
    assert [e.state.value for e in incident.events] == [
        "received",
        "received",
        "received",
        "rolling_back",
        "syncing",
        "rolled_back",
    ]
    assert "docsum-llm/v1.2.0: not signed" in incident.events[1].detail
    assert "evidence captured" in incident.events[2].detail
    assert "resource-tree.json" in incident.events[2].detail  # what could not be gathered is said
    assert incident.rollback_commit == git.commits[incident.id]
    assert argo.calls == [
        ("refresh", "docsum-llm"),
        ("sync", "docsum-llm", incident.rollback_commit),
        ("wait", "docsum-llm", incident.rollback_commit),
    ]
    assert incident.evidence_url and (Path(incident.evidence_url.removeprefix("file://")) / "manifest.json").exists()


async def test_redelivery_creates_nothing_new(tmp_path: Path, policies: list[Policy], clock: FakeClock) -> None:
    git = FakeGit()
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    payload = _payload(DOCSUM, clock)
    first = service.receive(payload)
    await service.idle()
    again = service.receive(payload)
    await service.idle()
    assert first.incidents == again.incidents
    assert (first.created, again.created) == (1, 0)
    assert git.commit_calls() == [("commit_rollback", first.incidents[0])]  # the re-delivery did not even try
    assert git.plans == 1


async def test_resolved_alert_never_starts_a_rollback(tmp_path: Path, policies: list[Policy], clock: FakeClock) -> None:
    git = FakeGit()
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    received = service.receive(_payload(DOCSUM, clock, resolved=True))
    await service.idle()
    assert received.incidents == []
    assert git.commits == {} and service.store.recent() == []


async def test_unmatched_alert_is_ignored(tmp_path: Path, policies: list[Policy], clock: FakeClock) -> None:
    service = _service(tmp_path, policies, clock, FakeGit(), FakeArgo())
    received = service.receive(_payload({"alertname": "DiskFull", "app": "db"}, clock))
    assert (received.incidents, received.ignored) == ([], 1)


async def test_debounce_then_resolution_suppresses(tmp_path: Path, policies: list[Policy], clock: FakeClock) -> None:
    git = FakeGit()
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    payload = _payload(BADGE, clock, ago=1)  # badge-vision debounces 60s
    incident_id = service.receive(payload).incidents[0]
    await asyncio.sleep(0.1)
    await service.stop()  # the worker would sleep until the debounce ends; look at the stored record
    waiting = service.store.get(incident_id)
    assert waiting is not None and waiting.state.value == "received" and waiting.not_before is not None
    service.receive(_payload(BADGE, clock, ago=1, resolved=True))
    clock.advance(120)
    restarted = _service(tmp_path, policies, clock, git, FakeArgo())
    await restarted.run_incident(incident_id)
    done = restarted.store.get(incident_id)
    assert done is not None and done.state.value == "suppressed" and "resolved" in done.reason
    assert git.commits == {}


async def test_no_target_is_suppressed_with_reason(tmp_path: Path, policies: list[Policy], clock: FakeClock) -> None:
    git = FakeGit(target_tag=None)
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    incident_id = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await service.idle()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "suppressed"
    assert "no verified target" in incident.reason and git.commits == {}


async def test_conflict_fails_without_retry(tmp_path: Path, policies: list[Policy], clock: FakeClock) -> None:
    git = FakeGit(fail_commit=[ConflictError("apps/docsum-llm changed by a1b2c3 (human)")])
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    incident_id = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await service.idle()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "failed"
    assert "not overriding a human" in incident.reason and git.commits == {}


async def test_transient_commit_failure_is_retried(
    tmp_path: Path, policies: list[Policy], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rollbackbot.steps.COMMIT_BACKOFF_SECONDS", 0.0)
    git = FakeGit(fail_commit=[TransientError("remote hung up")])
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    incident_id = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await service.idle()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "rolled_back" and len(git.commits) == 1
    assert git.commit_calls() == [("commit_rollback", incident_id)] * 2  # one failed, one landed


async def test_unhealthy_after_sync_fails_with_reason(tmp_path: Path, policies: list[Policy], clock: FakeClock) -> None:
    argo = FakeArgo(unhealthy="docsum-llm health Degraded after 300s")
    service = _service(tmp_path, policies, clock, FakeGit(), argo)
    incident_id = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await service.idle()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "failed" and "Degraded" in incident.reason


async def test_restart_after_commit_resumes_at_sync_without_second_commit(
    tmp_path: Path, policies: list[Policy], clock: FakeClock
) -> None:
    git, argo = FakeGit(), FakeArgo(unhealthy="Argo CD unreachable")
    service = _service(tmp_path, policies, clock, git, argo)
    incident_id = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await service.idle()
    # Simulate a crash after the push: put the stored incident back into rolling_back without its commit.
    from dataclasses import replace

    from rollbackbot.core.incidents import IncidentState

    stored = service.store.get(incident_id)
    assert stored is not None
    rewound = replace(stored, state=IncidentState.rolling_back, rollback_commit=None, events=stored.events[:4])
    service.store.save(rewound, stored.state)
    restarted = _service(tmp_path, policies, clock, git, FakeArgo())
    await restarted.start()
    await restarted.idle()
    final = restarted.store.get(incident_id)
    assert final is not None and final.state.value == "rolled_back"
    assert len(git.commits) == 1 and "already on main" in final.events[-2].detail


@dataclass
class GatedArgo(FakeArgo):
    """Holds every wait for health until ``release`` is set, so an incident stays active on purpose."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_synced_healthy(
        self, app: str, project: str, revision: str, timeout: float, lineage: object = None
    ) -> AppHealth:
        self.entered.set()
        await self.release.wait()
        return await super().wait_synced_healthy(app, project, revision, timeout, lineage)


async def _until_terminal(service: Service, incident_id: str) -> Incident:
    """Poll the store (deadline 10 s) until the incident reached a terminal state."""
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        incident = service.store.get(incident_id)
        if incident is not None and incident.state.terminal:
            return incident
        await asyncio.sleep(0.01)
    raise AssertionError(f"{incident_id} not terminal within 10 s")


async def test_second_alert_while_a_rollback_is_active_is_a_duplicate(
    tmp_path: Path, policies: list[Policy], clock: FakeClock
) -> None:
    git, argo = FakeGit(), GatedArgo()
    service = _service(tmp_path, policies, clock, git, argo)
    first = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await asyncio.wait_for(argo.entered.wait(), timeout=10)  # the first rollback is syncing: active
    second = service.receive(_payload({**DOCSUM, "alertname": "ModelCanaryLeak"}, clock)).incidents[0]
    duplicate = await _until_terminal(service, second)
    argo.release.set()
    await service.idle()
    active = service.store.get(first)
    assert first != second and active is not None and active.state.value == "rolled_back"
    assert duplicate.state.value == "suppressed" and duplicate.reason == f"duplicate: incident {first} is active"
    assert git.commit_calls() == [("commit_rollback", first)]
    assert ("plan", "docsum-llm") in git.calls and git.plans == 1  # the duplicate was not even planned


async def test_second_alert_after_a_rollback_is_held_by_the_cooldown(
    tmp_path: Path, policies: list[Policy], clock: FakeClock
) -> None:
    git = FakeGit()
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    first = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await service.idle()  # the first rollback finished: nothing is active any more
    second = service.receive(_payload({**DOCSUM, "alertname": "ModelCanaryLeak"}, clock)).incidents[0]
    await service.idle()
    incident = service.store.get(second)
    assert first != second and incident is not None
    assert incident.state.value == "suppressed" and incident.reason.startswith("cooldown: app rolled back at")
    assert git.commit_calls() == [("commit_rollback", first)]


SUPPORT = {"alertname": "ModelRefusalRateDrop", "app": "support-llm", "severity": "critical"}


async def test_further_alert_attaches_to_the_active_incident(
    tmp_path: Path, policies: list[Policy], clock: FakeClock
) -> None:
    git = FakeGit()
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    first = service.receive(_payload(SUPPORT, clock)).incidents[0]  # propose: stays awaiting_approval
    await service.idle()
    clock.advance(1)
    second = service.receive(_payload({**SUPPORT, "pod": "b"}, clock, ago=60)).incidents[0]
    await service.idle()
    await service.stop()
    active, duplicate = service.store.get(first), service.store.get(second)
    assert active is not None and duplicate is not None
    assert active.state.value == "awaiting_approval"
    assert duplicate.state.value == "suppressed" and first in duplicate.reason
    assert f"recorded as {second}" in active.events[-1].detail
    assert git.commits == {}


async def test_firing_alert_with_past_end_is_treated_as_resolved(
    tmp_path: Path, policies: list[Policy], clock: FakeClock
) -> None:
    git = FakeGit()
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    body = notification([alert(DOCSUM, clock.now() - timedelta(minutes=5), ends_at=clock.now() - timedelta(seconds=1))])
    body["alerts"][0]["status"] = "firing"
    received = service.receive(AlertmanagerPayload.model_validate(body))
    await service.idle()
    assert received.incidents == [] and git.commits == {}


async def test_verification_window(tmp_path: Path, policies: list[Policy], clock: FakeClock) -> None:
    git = FakeGit()
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    cleared = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await service.idle()
    service.receive(_payload(DOCSUM, clock, resolved=True))
    await service.idle()
    done = service.store.get(cleared)
    assert done is not None and done.verification == "cleared"

    clock.advance(3600)  # past cooldown; a second, unrelated alert that never clears
    stuck = service.receive(_payload({**DOCSUM, "alertname": "ModelCanaryLeak"}, clock)).incidents[0]
    await service.idle()
    clock.advance(11 * 60)  # docsum verify.within is 10m
    service.wake(stuck)
    await service.idle()
    await service.stop()
    incident = service.store.get(stuck)
    assert incident is not None and incident.state.value == "rolled_back"
    assert incident.verification == "still firing"
    assert "did not remove the anomaly" in incident.events[-1].detail


async def test_waiting_incidents_do_not_starve_new_rollbacks(tmp_path: Path, clock: FakeClock) -> None:
    policies = load_policies(REPO / "policies")
    git = FakeGit()
    service = Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/s.db"),
        git=git,
        argocd=FakeArgo(),
        policies=policies,
        clock=clock,
        max_concurrency=2,
    )
    # Two rollbacks finish and then wait in their 10-minute verification windows, holding no slot.
    for app_alert in ("PromptInjectionSpike", "ModelCanaryLeak"):
        service.receive(_payload({**DOCSUM, "alertname": app_alert, "app": "docsum-llm"}, clock))
        await service.idle()
        clock.advance(3600)
    badge = service.receive(_payload(BADGE, clock, ago=600)).incidents[0]
    await asyncio.wait_for(service.idle(), timeout=5)
    await service.stop()
    incident = service.store.get(badge)
    assert incident is not None and incident.state.value == "rolled_back", incident.reason
    assert len(git.commits) == 3


async def test_a_replanned_commit_records_the_plan_it_wrote(
    tmp_path: Path, policies: list[Policy], clock: FakeClock
) -> None:
    # Another rollback moved the head between our plan and our commit: the adapter re-planned on it,
    # and the incident's from/head must describe what was actually written, not the stale plan.
    git = FakeGit(replan_when_moved=True)
    service = _service(tmp_path, policies, clock, git, FakeArgo())
    [incident_id] = service.receive(_payload(DOCSUM, clock)).incidents
    planned_head = git.head
    git.head = "c" * 40  # moved after the plan was recorded: the next plan/commit sees it
    original_plan = git.plan

    def stale_plan(target):  # type: ignore[no-untyped-def]
        plan = original_plan(target)
        return type(plan)(**{**plan.__dict__, "head": planned_head})

    git.plan = stale_plan  # type: ignore[method-assign]
    await service.idle()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "rolled_back", incident
    assert incident.from_ref.revision == "c" * 40
    assert any("re-planned on cccccccccccc" in e.detail for e in incident.events)
