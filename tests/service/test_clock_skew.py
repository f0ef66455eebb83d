"""A clock-skewed alert cannot block an app; an incident only waiting out its debounce holds nobody back."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import FakeClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.policy import Policy
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.service.fakes import FakeArgo, FakeGit

REPO = Path(__file__).resolve().parents[2]
BADGE = {"alertname": "ModelFalseNegativeSpike", "app": "badge-vision", "severity": "critical"}  # debounce 60s
BADGE_OTHER = {**BADGE, "alertname": "ModelHighConfidenceMisclassification"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policies() -> list[Policy]:
    return load_policies(REPO / "policies")


def _service(tmp_path: Path, policies: list[Policy], clock: FakeClock, git: FakeGit) -> Service:
    return Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git,
        argocd=FakeArgo(),
        policies=policies,
        clock=clock,
        evidence=FileEvidenceSink(tmp_path / "evidence"),
    )


def _payload(labels: dict[str, str], clock: FakeClock, ago: float) -> AlertmanagerPayload:
    return AlertmanagerPayload.model_validate(notification([alert(labels, clock.now() - timedelta(seconds=ago))]))


async def _settle(service: Service) -> None:
    await asyncio.wait_for(service.idle(), timeout=10)


async def test_future_starts_at_debounces_from_arrival(
    tmp_path: Path, policies: list[Policy], clock: FakeClock, abuse_report
) -> None:  # type: ignore[no-untyped-def]
    git = FakeGit()
    service = _service(tmp_path, policies, clock, git)
    incident_id = service.receive(_payload(BADGE, clock, ago=-3600)).incidents[0]  # the sender's clock is 1h ahead
    await _settle(service)
    waiting = service.store.get(incident_id)
    assert waiting is not None and waiting.state.value == "received"
    assert "clock skew: startsAt is 3600s in the future" in [e.detail for e in waiting.events]
    assert waiting.not_before == waiting.created_at + timedelta(seconds=60)

    clock.advance(61)  # the debounce ends a minute after arrival, not an hour and a minute
    service.wake(incident_id)
    await _settle(service)
    await service.stop()
    done = service.store.get(incident_id)
    assert done is not None and done.state.value == "rolled_back", done.reason
    assert sum(e.detail.startswith("clock skew") for e in done.events) == 1
    abuse_report.settled(incidents=1, stuck=int(not done.state.terminal))


async def test_small_skew_within_tolerance_keeps_starts_at(
    tmp_path: Path, policies: list[Policy], clock: FakeClock
) -> None:
    service = _service(tmp_path, policies, clock, FakeGit())
    incident_id = service.receive(_payload(BADGE, clock, ago=-30)).incidents[0]
    await _settle(service)
    await service.stop()
    waiting = service.store.get(incident_id)
    assert waiting is not None and not any(e.detail.startswith("clock skew") for e in waiting.events)
    assert waiting.not_before == waiting.alert.starts_at + timedelta(seconds=60)


async def test_waiting_incident_does_not_suppress_a_ready_one(
    tmp_path: Path, policies: list[Policy], clock: FakeClock, abuse_report
) -> None:  # type: ignore[no-untyped-def]
    git = FakeGit()
    service = _service(tmp_path, policies, clock, git)
    waiting_id = service.receive(_payload(BADGE, clock, ago=-3600)).incidents[0]  # skewed: waits 60s from now
    await _settle(service)
    clock.advance(1)
    ready_id = service.receive(_payload(BADGE_OTHER, clock, ago=300)).incidents[0]  # fired 5 min ago: ready
    await _settle(service)
    ready = service.store.get(ready_id)
    assert ready is not None and ready.state.value == "rolled_back", ready.reason

    clock.advance(60)
    service.wake(waiting_id)
    await _settle(service)
    await service.stop()
    waited, ready = service.store.get(waiting_id), service.store.get(ready_id)
    assert waited is not None and ready is not None
    assert waited.state.value == "suppressed"
    assert f"recorded as {waiting_id}" in ready.events[-1].detail  # the waiting one attached to the one that acted
    assert len(git.commits) == 1
    abuse_report.settled(incidents=2, stuck=sum(not i.state.terminal for i in (waited, ready)))
