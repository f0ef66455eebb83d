"""Service.drain (graceful shutdown): no new work, the step in flight finishes and persists, waits end."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import FakeClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.model import AppHealth
from rollbackbot.core.policy import Policy
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.service.fakes import FakeArgo, FakeGit

REPO = Path(__file__).resolve().parents[2]
DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}


@dataclass
class HeldArgo(FakeArgo):
    """Argo CD whose health wait blocks until the test lets it go."""

    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_synced_healthy(
        self, app: str, project: str, revision: str, timeout: float, lineage: object = None
    ) -> AppHealth:
        self.waiting.set()
        await self.release.wait()
        return await super().wait_synced_healthy(app, project, revision, timeout, lineage)


def _service(tmp_path: Path, argo: FakeArgo, policies: list[Policy] | None = None) -> Service:
    return Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=FakeGit(),
        argocd=argo,
        policies=policies or load_policies(REPO / "policies"),
        clock=FakeClock(),
        evidence=FileEvidenceSink(tmp_path / "evidence"),
    )


def _payload(service: Service, ago: float = 120) -> AlertmanagerPayload:
    body = notification([alert(DOCSUM, service.clock.now() - timedelta(seconds=ago))])
    return AlertmanagerPayload.model_validate(body)


async def test_the_sync_in_flight_finishes_and_is_saved(tmp_path: Path) -> None:
    argo = HeldArgo()
    service = _service(tmp_path, argo)
    [incident_id] = service.receive(_payload(service)).incidents
    await asyncio.wait_for(argo.waiting.wait(), 10)
    assert service.accepting

    drain = asyncio.create_task(service.drain(30))
    await asyncio.sleep(0)
    assert not service.accepting
    assert not drain.done()  # still waiting for the step
    argo.release.set()
    assert await asyncio.wait_for(drain, 10) is True
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "rolled_back"
    await service.stop()


async def test_grace_period_over_leaves_the_last_persisted_state(tmp_path: Path) -> None:
    argo = HeldArgo()
    service = _service(tmp_path, argo)
    [incident_id] = service.receive(_payload(service)).incidents
    await asyncio.wait_for(argo.waiting.wait(), 10)
    assert await service.drain(0.05) is False
    await service.stop()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "syncing"
    assert incident.rollback_commit is not None  # resumes at sync, never commits twice


async def test_waiting_incidents_stop_waiting_and_no_new_work_starts(tmp_path: Path) -> None:
    policies = load_policies(REPO / "policies")
    debounced = [
        p.model_copy(update={"spec": p.spec.model_copy(update={"debounce": timedelta(hours=1)})}) for p in policies
    ]
    service = _service(tmp_path, FakeArgo(), debounced)
    [incident_id] = service.receive(_payload(service, ago=1)).incidents
    await service.idle()  # asleep until the debounce ends, an hour from now
    assert await asyncio.wait_for(service.drain(30), 10) is True
    service.schedule(incident_id)
    assert not service._running, "work scheduled after shutdown began"
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "received"
