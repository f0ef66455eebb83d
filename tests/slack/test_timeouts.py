"""Approval deadlines with an injected clock: expire, roll back on timeout, and hold across restarts."""

from __future__ import annotations

from pathlib import Path

from rollbackbot.core.incidents import IncidentState
from tests.slack.conftest import SUPPORT, Harness, make_harness

S = IncidentState
THIRTY_MINUTES = 30 * 60


async def _past_the_deadline(harness: Harness, incident_id: str) -> None:
    deadline = harness.incident(incident_id).not_before
    assert deadline is not None and (deadline - harness.clock.now()).total_seconds() == THIRTY_MINUTES
    harness.clock.advance(THIRTY_MINUTES + 1)
    harness.service.wake(incident_id)  # the worker's timer would fire now; nobody sleeps in tests
    await harness.settle()


async def test_unanswered_proposal_expires_and_says_so(harness: Harness) -> None:
    incident_id = harness.fire(SUPPORT)
    await harness.settle()
    harness.clock.advance(THIRTY_MINUTES - 60)
    harness.service.wake(incident_id)
    await harness.settle()
    assert harness.incident(incident_id).state is S.awaiting_approval  # not yet
    harness.clock.advance(61)
    harness.service.wake(incident_id)
    await harness.settle()
    incident = harness.incident(incident_id)
    assert incident.state is S.expired and harness.git.commits == {}
    [update] = harness.fake.calls_of("chat.update")
    assert update["args"]["text"].startswith("Proposal expired: support-llm")
    assert "nobody decided in time" in str(update["args"]["blocks"])
    late = await harness.click("approve_rollback", incident_id)
    await harness.settle()
    assert late.status_code == 200 and harness.incident(incident_id).state is S.expired
    [ephemeral] = harness.fake.calls_of("chat.postEphemeral")
    assert ephemeral["args"]["text"].startswith("This proposal expired")


async def test_on_timeout_rollback_proceeds_as_if_approved_by_the_timeout(tmp_path: Path) -> None:
    harness, _ = await make_harness(tmp_path, on_timeout="rollback")
    await harness.service.start()
    try:
        incident_id = harness.fire(SUPPORT)
        await harness.settle()
        [proposal] = harness.fake.top_level()
        assert "then rolls back anyway" in str(proposal["blocks"])
        await _past_the_deadline(harness, incident_id)
        incident = harness.incident(incident_id)
        assert incident.state is S.rolled_back and incident.approved_by == "timeout (no decision)"
        assert list(harness.git.commits) == [incident_id]
        [update] = harness.fake.calls_of("chat.update")
        assert "Approved* by timeout (no decision)" in str(update["args"]["blocks"])
    finally:
        await harness.service.stop()


async def test_the_deadline_is_stored_and_holds_across_a_restart(tmp_path: Path) -> None:
    first, _ = await make_harness(tmp_path)
    await first.service.start()
    incident_id = first.fire(SUPPORT)
    await first.settle()
    await first.service.stop()  # the process goes away while the proposal waits

    first.clock.advance(THIRTY_MINUTES + 1)  # and stays away past the deadline
    second, _ = await make_harness(tmp_path, clock=first.clock, fake=first.fake)
    await second.service.start()
    await second.settle()
    assert second.incident(incident_id).state is S.expired
    [proposal] = first.fake.top_level()
    [update] = first.fake.calls_of("chat.update")
    assert (update["args"]["channel"], update["args"]["ts"]) == (proposal["channel"], proposal["ts"])
    await second.service.stop()
