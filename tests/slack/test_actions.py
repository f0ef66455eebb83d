"""POST /slack/actions through the real FastAPI app and Bolt: signatures, approvers, exactly once."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rollbackbot import http_body
from rollbackbot.adapters.slack.app import SlackActions
from rollbackbot.adapters.slack.approvers import safe_name
from rollbackbot.core.incidents import IncidentState
from rollbackbot.testing.slack import block_actions, signed_request
from tests.slack.conftest import APPROVER, SECOPS_MEMBER, SECRET, STRANGER, SUPPORT, Harness

S = IncidentState


async def _proposed(harness: Harness) -> str:
    incident_id = harness.fire(SUPPORT)
    await harness.settle()
    assert harness.incident(incident_id).state is S.awaiting_approval
    return incident_id


def _ephemerals(harness: Harness) -> list[dict[str, Any]]:
    return [c["args"] for c in harness.fake.calls_of("chat.postEphemeral")]


async def test_approve_rolls_back_once_with_the_approver_and_updates_the_message(harness: Harness) -> None:
    incident_id = await _proposed(harness)
    [proposal] = harness.fake.top_level()
    answer = await harness.click("approve_rollback", incident_id)
    assert answer.status_code == 200
    await harness.settle()
    incident = harness.incident(incident_id)
    assert incident.state is S.rolled_back and incident.approved_by == "Dana Ops U012ABC"
    assert list(harness.git.commits) == [incident_id]
    updated = harness.fake.messages[f"{proposal['channel']}/{proposal['ts']}"]
    assert all(block["type"] != "actions" for block in updated["blocks"])  # buttons gone
    assert "*Approved* by <@U012ABC>" in json.dumps(updated["blocks"])
    thread = [m["text"] for m in harness.fake.thread(proposal["channel"], proposal["ts"])]
    assert thread[0].startswith("Writing the rollback commit") and "pushed to main" in thread[1]
    assert "Rolled back to docsum-llm/v1.1.0 in" in thread[-1]
    assert _ephemerals(harness) == []


async def test_reject_closes_the_proposal_without_a_commit(harness: Harness) -> None:
    incident_id = await _proposed(harness)
    assert (await harness.click("reject_rollback", incident_id, SECOPS_MEMBER)).status_code == 200
    await harness.settle()
    incident = harness.incident(incident_id)
    assert incident.state is S.rejected and incident.approved_by == "Sam Sec U0SEC0001"
    assert harness.git.commits == {}
    [update] = harness.fake.calls_of("chat.update")
    assert "Rollback rejected" in update["args"]["text"]


async def test_the_ack_does_not_wait_for_the_decision(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = await _proposed(harness)
    release = asyncio.Event()
    original = SlackActions.decide

    async def slow_decide(self: SlackActions, body: dict[str, Any]) -> str:
        await release.wait()
        return await original(self, body)

    monkeypatch.setattr(SlackActions, "decide", slow_decide)
    started = time.monotonic()
    answer = await harness.click("approve_rollback", incident_id)
    assert answer.status_code == 200 and time.monotonic() - started < 1.0
    assert harness.incident(incident_id).state is S.awaiting_approval  # acked; the work has not run
    release.set()
    await harness.settle()
    assert harness.incident(incident_id).state is S.rolled_back


@pytest.mark.parametrize(
    "tamper",
    ["forged", "stale", "tampered_body", "no_signature", "no_timestamp", "no_headers", "future"],
)
async def test_unsigned_or_wrongly_signed_requests_are_401_and_change_nothing(
    harness: Harness, tamper: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    incident_id = await _proposed(harness)
    calls_before = len(harness.fake.calls)
    payload = block_actions("approve_rollback", incident_id, APPROVER)
    secret = "not-the-signing-secret-0123456789" if tamper == "forged" else SECRET
    stamp = {"stale": int(time.time()) - 301, "future": int(time.time()) + 301}.get(tamper)
    body, headers = signed_request(secret, payload, stamp)
    if tamper == "tampered_body":
        other = block_actions("approve_rollback", incident_id, STRANGER)
        body, _ = signed_request(secret, other)
    headers.pop("X-Slack-Signature") if tamper in ("no_signature", "no_headers") else None
    headers.pop("X-Slack-Request-Timestamp") if tamper in ("no_timestamp", "no_headers") else None
    answer = await harness.post(body, headers)
    assert answer.status_code == 401
    assert SECRET not in answer.text
    await harness.settle()
    assert harness.incident(incident_id).state is S.awaiting_approval
    assert len(harness.fake.calls) == calls_before
    assert "signature missing, wrong or stale" in caplog.text
    assert "payload=" not in caplog.text and incident_id not in caplog.text  # the untrusted body is not logged


async def test_unknown_action_id_is_refused_and_changes_nothing(harness: Harness) -> None:
    incident_id = await _proposed(harness)
    calls_before = len(harness.fake.calls)
    answer = await harness.click("delete_production", incident_id)
    assert answer.status_code == 404
    await harness.settle()
    assert harness.incident(incident_id).state is S.awaiting_approval
    assert len(harness.fake.calls) == calls_before


async def test_someone_not_an_approver_is_told_so_and_nothing_changes(harness: Harness) -> None:
    incident_id = await _proposed(harness)
    events_before = len(harness.incident(incident_id).events)
    assert (await harness.click("approve_rollback", incident_id, STRANGER)).status_code == 200
    await harness.settle()
    incident = harness.incident(incident_id)
    assert incident.state is S.awaiting_approval and incident.approved_by is None
    assert len(incident.events) == events_before + 1
    assert incident.events[-1].detail == f"approve refused: Slack user dana.ops {STRANGER} is not an approver"
    [ephemeral] = _ephemerals(harness)
    assert ephemeral["user"] == STRANGER and "not allowed to approve" in ephemeral["text"]
    assert "<@U012ABC>" in ephemeral["text"] and harness.fake.calls_of("chat.update") == []
    assert harness.git.commits == {}


async def test_user_group_membership_is_looked_up_once_and_cached_briefly(harness: Harness) -> None:
    first = await _proposed(harness)
    await harness.click("approve_rollback", first, STRANGER)
    await harness.click("approve_rollback", first, STRANGER)
    await harness.settle()
    assert len(harness.fake.calls_of("usergroups.users.list")) == 1
    harness.clock.advance(61)
    harness.fake.usergroups["S0SECOPS"].append(STRANGER)  # joined the group meanwhile
    await harness.click("approve_rollback", first, STRANGER)
    await harness.settle()
    assert len(harness.fake.calls_of("usergroups.users.list")) == 2
    assert harness.incident(first).approved_by == f"dana.ops {STRANGER}"  # no profile: the handle will do


async def test_double_click_and_second_approver_act_once_and_the_late_one_hears_who_decided(harness: Harness) -> None:
    incident_id = await _proposed(harness)
    answers = await asyncio.gather(
        harness.click("approve_rollback", incident_id),
        harness.click("approve_rollback", incident_id),
        harness.click("reject_rollback", incident_id, SECOPS_MEMBER),
    )
    assert [a.status_code for a in answers] == [200, 200, 200]
    await harness.settle()
    incident = harness.incident(incident_id)
    assert incident.state in (S.rolled_back, S.rejected)
    assert len([e for e in incident.events if e.state in (S.approved, S.rejected)]) == 1
    assert len(harness.git.commits) == (1 if incident.state is S.rolled_back else 0)
    late = _ephemerals(harness)
    assert len(late) == 2 and all(e["text"].startswith("Already ") for e in late)
    assert len(harness.fake.calls_of("chat.update")) == 1


async def test_a_replayed_signed_request_acts_once(harness: Harness) -> None:
    incident_id = await _proposed(harness)
    body, headers = signed_request(SECRET, block_actions("approve_rollback", incident_id, APPROVER))
    first = await harness.post(body, headers)
    await harness.settle()
    replay = await harness.post(body, headers)
    await harness.settle()
    assert (first.status_code, replay.status_code) == (200, 200)  # Bolt cannot tell a replay inside 5 minutes
    assert harness.incident(incident_id).state is S.rolled_back and len(harness.git.commits) == 1
    [late] = _ephemerals(harness)
    assert late["text"].startswith("Already approved by <@U012ABC> <!date^")


@pytest.mark.parametrize("value", ["inc-0000000000000000", "../../etc/passwd", ""])
async def test_a_button_for_an_unknown_incident_changes_nothing(harness: Harness, value: str) -> None:
    await _proposed(harness)
    assert (await harness.click("approve_rollback", value)).status_code == 200
    await harness.settle()
    [ephemeral] = _ephemerals(harness)
    assert "does not know this incident" in ephemeral["text"] and harness.git.commits == {}


async def test_an_oversized_body_is_refused_before_anything_is_parsed(harness: Harness) -> None:
    answer = await harness.post(b"payload=" + b"x" * 70_000, {"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("Dana Ops", "Dana Ops"),
        ("Dana\nApproved-By: Mallory U0EVIL", "Dana Approved-By Mallory U0EVIL"),
        ("Zoë O'Brien-Łukasz", "Zoë O'Brien-Łukasz"),
        ("\u202eevil\u0000", "evil"),
        ("x" * 200, "x" * 64),
    ],
)
def test_names_are_made_safe_for_a_commit_trailer(raw: str, safe: str) -> None:
    assert safe_name(raw) == safe


async def test_a_hostile_profile_name_cannot_forge_a_trailer(harness: Harness) -> None:
    harness.fake.users[APPROVER] = "Dana\nRollback-To: support-llm/v0.0.1"
    incident_id = await _proposed(harness)
    await harness.click("approve_rollback", incident_id)
    await harness.settle()
    assert harness.incident(incident_id).approved_by == "Dana Rollback-To support-llm v0.0.1 U012ABC"


async def test_a_huge_chunked_body_is_cut_off_at_the_cap_without_reading_it_all(harness: Harness) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1024):  # 64 MiB if it were all read
            sent.append(1)
            yield b"payload=" + b"x" * (64 * 1024)

    answer = await harness.http.post("/slack/actions", content=chunks())  # no Content-Length: chunked
    assert answer.status_code == 413
    assert len(sent) < 5  # refused while streaming, long before 64 MiB


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"payload=%7Bnot-json", {}),
        (b"\xff\xfe\x00", {"Content-Type": "application/json"}),
        (b"{", {"Content-Type": "application/json"}),
        (b"payload=x", {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}),
        (b"payload=x", {"X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": "v0=00"}),
        (b"a=b", {"X-Slack-Request-Timestamp": "-1"}),
    ],
    ids=["bad-payload", "not-utf8", "json", "timestamp-not-a-number", "timestamp-huge", "signature-missing"],
)
async def test_malformed_unsigned_requests_are_401_not_500(
    harness: Harness, body: bytes, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    answer = await harness.post(body, headers)
    assert answer.status_code == 401
    assert "Traceback" not in caplog.text


async def test_a_body_that_trickles_in_times_out(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_body, "BODY_READ_SECONDS", 0.05)
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"payload="
        await never.wait()  # the rest never comes
        yield b"{}"

    # Bounded here too: without a deadline the request would hang, and that must fail, not stall the suite.
    answer = await asyncio.wait_for(harness.http.post("/slack/actions", content=stalled()), timeout=10)
    assert answer.status_code == 408
