"""The held canary's Slack buttons: complete_rollback approves, hold_rollback only records; both rendered when held."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

from rollbackbot.adapters.slack.blocks import message_blocks
from rollbackbot.core.incidents import IncidentState
from rollbackbot.core.messages import IncidentMessage, MessageKind, notices_for
from tests.canary.helpers import canary_policy
from tests.slack.conftest import STRANGER, SUPPORT, Harness

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


# --- End shadow now ---------------------------------------------------------------------------------


async def _rolled_back_with_shadow(harness: Harness) -> str:
    incident_id = await _waiting(harness)
    await harness.click("approve_rollback", incident_id)
    await harness.settle()
    assert harness.incident(incident_id).state is S.rolled_back
    harness.service.record_event(incident_id, "shadow on: chat-llm: shadow 5% to ml-quarantine (abc123)")
    return incident_id


def _ephemerals(harness: Harness) -> list[str]:
    return [c["args"]["text"] for c in harness.fake.calls_of("chat.postEphemeral")]


async def test_end_shadow_asks_once_and_tells_a_second_clicker(harness: Harness) -> None:
    incident_id = await _rolled_back_with_shadow(harness)
    assert (await harness.click("end_shadow", incident_id)).status_code == 200
    await harness.settle()
    assert harness.incident(incident_id).events[-1].detail == "shadow end requested by Dana Ops U012ABC"
    await harness.click("end_shadow", incident_id)
    await harness.settle()
    assert [e.detail for e in harness.incident(incident_id).events].count(
        "shadow end requested by Dana Ops U012ABC"
    ) == 1
    assert _ephemerals(harness)[-1].startswith("Already asked: shadow end requested by Dana Ops U012ABC")


async def test_end_shadow_is_refused_to_a_non_approver_and_without_a_shadow(harness: Harness) -> None:
    incident_id = await _rolled_back_with_shadow(harness)
    await harness.click("end_shadow", incident_id, user=STRANGER)
    await harness.settle()
    assert "not allowed to end the shadow of" in _ephemerals(harness)[-1]
    assert not any(e.detail.startswith("shadow end requested") for e in harness.incident(incident_id).events)
    harness.service.record_event(incident_id, "shadow off: chat-llm: shadow removed (def456)")
    await harness.click("end_shadow", incident_id)
    await harness.settle()
    assert _ephemerals(harness)[-1].startswith("No shadow is on for this incident")


async def test_the_rolled_back_message_gains_the_shadow_and_its_button(harness: Harness) -> None:
    incident_id = await _rolled_back_with_shadow(harness)
    incident = harness.incident(incident_id)
    policy = canary_policy()  # ttl 72h, 5 % to ml-quarantine/chat-llm-v2-shadow
    notices = notices_for(incident, S.syncing, policy)
    assert notices.reply is not None and notices.update is not None
    assert notices.update.shadow_until == incident.events[-1].at + timedelta(hours=72)
    rendered = json.dumps(message_blocks(notices.update))
    assert '"end_shadow"' in rendered and "End shadow now" in rendered
    assert "5% of requests mirrored to ml-quarantine/chat-llm-v2-shadow" in rendered
    off = incident.with_event(incident.events[-1].at, "shadow off: removed")
    assert notices_for(off, S.syncing, policy).update is None  # no live shadow: only the outcome reply


# --- the canary's steps in the thread ---------------------------------------------------------------


async def test_step_commits_and_shadow_events_become_thread_replies_analysis_runs_do_not(harness: Harness) -> None:
    incident_id = await _waiting(harness)
    [proposal] = harness.fake.top_level()
    incident = harness.incident(incident_id)
    for detail in (
        "step 1/3: chat-llm-v1=25,chat-llm-v2=75 committed (dec004943079)",
        "step 1/3 analysis passed: safe-5xx-ratio: ok (0)",
        "step 1/3: Synced and Healthy at dec004943079 in 2.1s",
        "shadow on: rollback(chat-llm): shadow 5% to ml-quarantine (c64e5c7396a6)",
    ):
        await harness.chat.incident_noted(incident, detail)
    texts = [m["text"] for m in harness.fake.thread(proposal["channel"], proposal["ts"])]
    assert [t.split(" · ")[0] for t in texts if t.startswith(("Step", "Shadow"))] == [
        "Step 1/3: chat-llm-v1=25,chat-llm-v2=75 committed (dec004943079)",
        "Shadow on: rollback(chat-llm): shadow 5% to ml-quarantine (c64e5c7396a6)",
    ]
