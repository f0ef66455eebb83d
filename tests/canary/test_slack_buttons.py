"""The held canary's Slack buttons: complete_rollback approves, hold_rollback only records; both rendered when held."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

from rollbackbot.adapters.slack.blocks import message_blocks
from rollbackbot.core.incidents import IncidentState
from rollbackbot.core.messages import IncidentMessage, MessageKind
from tests.slack.conftest import SUPPORT, Harness

S = IncidentState


async def _waiting(harness: Harness) -> str:
    incident_id = harness.fire(SUPPORT)
    await harness.settle()
    assert harness.incident(incident_id).state is S.awaiting_approval
    return incident_id


async def test_hold_keeps_the_incident_waiting_and_records_who_held(harness: Harness) -> None:
    incident_id = await _waiting(harness)
    assert (await harness.click("hold_rollback", incident_id)).status_code == 200
    await harness.settle()
    incident = harness.incident(incident_id)
    assert incident.state is S.awaiting_approval
    assert incident.events[-1].detail == "hold: Dana Ops U012ABC keeps the weights"
    assert harness.git.commits == {}


async def test_complete_is_an_approval(harness: Harness) -> None:
    incident_id = await _waiting(harness)
    assert (await harness.click("complete_rollback", incident_id)).status_code == 200
    await harness.settle()
    incident = harness.incident(incident_id)
    assert incident.state is S.rolled_back and incident.approved_by == "Dana Ops U012ABC"


def test_a_held_canary_shows_complete_and_hold_instead_of_approve_and_reject() -> None:
    proposal = IncidentMessage(
        kind=MessageKind.proposal,
        incident_id="inc-1",
        state="awaiting_approval",
        app="chat-llm",
        policy="chat-llm-canary",
        mode="auto",
        alert_name="ModelRefusalRateDrop",
        severity="warning",
        summary="",
        started_at=datetime(2026, 12, 5, tzinfo=UTC),
        generator_url="",
        approvers=("U012ABC",),
    )
    plain = json.dumps(message_blocks(proposal))
    assert "approve_rollback" in plain and "complete_rollback" not in plain
    held = dataclasses.replace(proposal, reason="canary held at 50% on the safe release (step 2/3): q: 0.2 > max 0.01")
    rendered = json.dumps(message_blocks(held))
    assert '"complete_rollback"' in rendered and '"hold_rollback"' in rendered
    assert "approve_rollback" not in rendered and "Complete to 100 % now" in rendered
