"""Service.replace_policies: new alerts use the new set; an incident in flight keeps the policy it started with."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import FakeClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.policy import Approval, OnTimeout, Policy, PolicyMode
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.service.fakes import FakeArgo, FakeGit

REPO = Path(__file__).resolve().parents[2]
DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}


def _proposing(policy: Policy) -> Policy:
    """The policy in propose mode, approving itself after 5 minutes without an answer."""
    assert policy.spec.approval is not None
    approval = Approval.model_validate(
        {**policy.spec.approval.model_dump(by_alias=True), "timeout": "5m", "onTimeout": OnTimeout.rollback.value}
    )
    return policy.model_copy(
        update={"spec": policy.spec.model_copy(update={"mode": PolicyMode.propose, "approval": approval})}
    )


async def test_incident_waiting_for_approval_outlives_the_removal_of_its_policy(tmp_path: Path) -> None:
    shipped = load_policies(REPO / "policies")
    docsum = _proposing(next(p for p in shipped if p.name == "docsum-llm-injection"))
    others = [p for p in shipped if p.name != docsum.name]
    clock = FakeClock()
    service = Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=FakeGit(),
        argocd=FakeArgo(),
        policies=[docsum, *others],
        clock=clock,
        evidence=FileEvidenceSink(tmp_path / "evidence"),
    )
    body = notification([alert(DOCSUM, clock.now() - timedelta(minutes=2))])
    [incident_id] = service.receive(AlertmanagerPayload.model_validate(body)).incidents
    await service.idle()
    assert (waiting := service.store.get(incident_id)) is not None and waiting.state.value == "awaiting_approval"

    service.replace_policies(others)
    again = notification([alert(DOCSUM | {"severity": "page"}, clock.now())])
    assert service.receive(AlertmanagerPayload.model_validate(again)).ignored == 1

    clock.advance(6 * 60)  # past the stored policy's approval timeout
    service.wake(incident_id)
    await service.idle()
    await service.stop()
    done = service.store.get(incident_id)
    assert done is not None and done.state.value == "rolled_back", done.events[-1]
    assert done.approved_by == "timeout (no decision)"
