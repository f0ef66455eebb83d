"""Transient faults are retried at every step within the retry budget; a re-delivery re-opens a failed attempt."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import FakeClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incidents import Incident
from rollbackbot.core.model import ResolvedTarget, RollbackPlan
from rollbackbot.core.policy import Policy
from rollbackbot.core.retries import GAVE_UP, RetryBudget, after_transient, backoff_delay, budget_for
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.service.fakes import ConflictError, FakeArgo, FakeGit, TransientError

DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
FAST = RetryBudget(seconds=60, attempts=3, backoff=0.001, backoff_max=0.005)


def _policy(retry: dict[str, Any] | None = None) -> Policy:
    spec: dict[str, Any] = {
        "matchers": ['app = "docsum-llm"'],
        "target": {"argocdApps": ["docsum-llm"], "project": "ml-prod", "paths": ["apps/docsum-llm"], "tags": "d/v*"},
        "mode": "auto",
    }
    if retry is not None:
        spec["retry"] = retry
    return Policy.from_document(
        {"apiVersion": "rollbackbot/v1", "kind": "RollbackPolicy", "metadata": {"name": "docsum"}, "spec": spec}
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class FlakyGit(FakeGit):
    """Planning fails with the given transient errors first; each failure takes ``seconds`` of the clock."""

    plan_faults: list[Exception] = field(default_factory=list)
    clock: FakeClock | None = None
    seconds: float = 0.0

    def plan(self, target: ResolvedTarget) -> RollbackPlan:
        if self.plan_faults:
            if self.clock is not None:
                self.clock.advance(self.seconds)
            raise self.plan_faults.pop(0)
        return super().plan(target)


@dataclass
class FlakyArgo(FakeArgo):
    """The first ``sync`` calls answer 502."""

    sync_faults: int = 0

    async def sync(self, app: str, project: str, revision: str, prune: bool, lineage: object = None) -> None:
        if self.sync_faults:
            self.sync_faults -= 1
            self.calls.append(("sync failed", app))
            raise TransientError("Argo CD POST /sync failed: HTTP 502: bad gateway")
        await super().sync(app, project, revision, prune, lineage)


def _service(tmp_path: Path, clock: FakeClock, git: FakeGit, argo: FakeArgo, policy: Policy) -> Service:
    return Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git,
        argocd=argo,
        policies=[policy],
        clock=clock,
        evidence=FileEvidenceSink(tmp_path / "evidence"),
        retry=FAST,
    )


def _payload(clock: FakeClock) -> AlertmanagerPayload:
    return AlertmanagerPayload.model_validate(notification([alert(DOCSUM, clock.now() - timedelta(minutes=2))]))


async def _fire(service: Service, payload: AlertmanagerPayload) -> Incident:
    incident_id = service.receive(payload).incidents[0]
    await asyncio.wait_for(service.idle(), timeout=10)
    incident = service.store.get(incident_id)
    assert incident is not None
    return incident


async def test_connection_reset_while_planning_is_retried(tmp_path: Path, clock: FakeClock, abuse_report) -> None:  # type: ignore[no-untyped-def]
    git = FlakyGit(plan_faults=[TransientError("git fetch git://gitops failed: Connection reset by peer")])
    incident = await _fire(_service(tmp_path, clock, git, FakeArgo(), _policy()), _payload(clock))
    assert incident.state.value == "rolled_back", incident.reason
    assert any(e.detail.startswith("transient error, retry 1 in ") for e in incident.events)
    assert git.plans == 1 and len(git.commits) == 1
    abuse_report.settled(
        incidents=1, stuck=0, transient_faults=1, lost_rollbacks=int(incident.state.value != "rolled_back")
    )


async def test_502_while_syncing_is_retried(tmp_path: Path, clock: FakeClock, abuse_report) -> None:  # type: ignore[no-untyped-def]
    git, argo = FakeGit(), FlakyArgo(sync_faults=2)
    incident = await _fire(_service(tmp_path, clock, git, argo, _policy()), _payload(clock))
    assert incident.state.value == "rolled_back", incident.reason
    assert [c[0] for c in argo.calls].count("sync failed") == 2
    assert len(git.commits) == 1  # the commit is not written again when the sync is retried
    abuse_report.settled(
        incidents=1, stuck=0, transient_faults=2, lost_rollbacks=int(incident.state.value != "rolled_back")
    )


async def test_commit_outage_longer_than_the_push_retries_is_retried(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, abuse_report
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("rollbackbot.steps.COMMIT_BACKOFF_SECONDS", 0.0)
    git = FakeGit(fail_commit=[TransientError("git push: the remote end hung up")] * 5)
    incident = await _fire(_service(tmp_path, clock, git, FakeArgo(), _policy()), _payload(clock))
    assert incident.state.value == "rolled_back", incident.reason
    assert len(git.commits) == 1
    abuse_report.settled(
        incidents=1, stuck=0, transient_faults=5, lost_rollbacks=int(incident.state.value != "rolled_back")
    )


async def test_budget_spent_fails_then_redelivery_retries_as_a_new_attempt(
    tmp_path: Path, clock: FakeClock, abuse_report
) -> None:  # type: ignore[no-untyped-def]
    outage = [TransientError("git fetch failed: 502 Bad Gateway") for _ in range(5)]
    git = FlakyGit(plan_faults=outage, clock=clock, seconds=25)  # each try takes 25s; the budget is 60s
    service = _service(tmp_path, clock, git, FakeArgo(), _policy())
    payload = _payload(clock)
    failed = await _fire(service, payload)
    assert failed.state.value == "failed" and failed.reason.startswith(GAVE_UP), failed.reason
    assert "attempt 1 of 3" in failed.reason and "502 Bad Gateway" in failed.reason
    assert git.plan_faults  # the outage outlasted the budget

    git.plan_faults.clear()  # the remote is back; Alertmanager repeats the still-firing alert
    again = await _fire(service, payload)
    assert again.id == failed.id
    assert again.state.value == "rolled_back", again.reason
    assert any(e.detail.startswith("attempt 2 of 3: the alert is still firing") for e in again.events)
    assert len(git.commits) == 1
    abuse_report.settled(
        incidents=1, stuck=0, transient_faults=4, lost_rollbacks=int(again.state.value != "rolled_back")
    )


async def test_redelivery_attempts_are_bounded_and_only_for_transient_failures(
    tmp_path: Path, clock: FakeClock
) -> None:
    git = FlakyGit(plan_faults=[TransientError("reset") for _ in range(100)], clock=clock, seconds=30)
    policy = _policy({"budget": "45s", "attempts": 2})
    service = _service(tmp_path, clock, git, FakeArgo(), policy)
    payload = _payload(clock)
    first = await _fire(service, payload)
    second = await _fire(service, payload)
    third = await _fire(service, payload)
    assert first.state.value == second.state.value == third.state.value == "failed"
    assert "attempt 1 of 2" in first.reason and "attempt 2 of 2" in second.reason
    assert third.events == second.events  # no third attempt: the policy allows two

    conflict = FakeGit(fail_commit=[ConflictError("apps/docsum-llm changed by a human")])
    other = _service(tmp_path / "other", clock, conflict, FakeArgo(), policy)
    refused = await _fire(other, payload)
    assert refused.state.value == "failed" and "not overriding a human" in refused.reason
    assert (await _fire(other, payload)).events == refused.events  # a permanent failure is never retried


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    budget = RetryBudget(backoff=1.0, backoff_max=10.0)

    class Fixed:
        def __init__(self, value: float) -> None:
            self.value = value

        def random(self) -> float:
            return self.value

    low, high = Fixed(0.0), Fixed(0.999999)
    assert [round(backoff_delay(n, budget, low), 2) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [round(backoff_delay(n, budget, high), 2) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]


def test_the_last_retry_never_sleeps_past_the_budget(clock: FakeClock) -> None:
    from rollbackbot.core.incidents import AlertRef, new_incident

    ref = AlertRef("A", "f", clock.now())
    incident = new_incident(app="a", policy="p", mode="auto", alert=ref, target={}, now=clock.now())
    budget = RetryBudget(seconds=10, backoff=8, backoff_max=8)
    first = after_transient(incident, "reset", budget, clock.now())
    clock.advance(9)
    second = after_transient(first.incident, "reset", budget, clock.now())
    assert second.delay is not None and second.delay <= 1.0
    clock.advance(1)
    assert after_transient(second.incident, "reset", budget, clock.now()).incident.state.value == "failed"


def test_policy_retry_block_overrides_the_service_budget() -> None:
    assert budget_for(FAST, _policy({"budget": "2m"})) == RetryBudget(120, 3, FAST.backoff, FAST.backoff_max)
    assert budget_for(FAST, _policy({"attempts": 5})).attempts == 5
    assert budget_for(FAST, _policy()) is FAST
