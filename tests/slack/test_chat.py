"""Posting is best effort: 429 honoured, outages never hold up a rollback, proposals retried and counted."""

from __future__ import annotations

from pathlib import Path

from rollbackbot.adapters.slack.metrics import SLACK_CALLS, SLACK_PROPOSAL_FAILURES, SLACK_PROPOSALS_PENDING
from rollbackbot.core.incidents import IncidentState
from rollbackbot.metrics import REGISTRY
from tests.slack.conftest import DOCSUM, SUPPORT, Harness, make_harness, new_fake_slack

S = IncidentState


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_rate_limit_is_honoured_with_retry_after(harness: Harness) -> None:
    harness.fake.rate_limit("chat.postMessage", times=2, retry_after=3)
    limited = SLACK_CALLS.labels("chat.postMessage", "rate_limited")._value.get()
    incident_id = harness.fire(SUPPORT)
    await harness.settle()
    assert harness.incident(incident_id).state is S.awaiting_approval
    assert harness.slept[:2] == [3.0, 3.0]  # waited exactly as long as Slack asked, twice
    statuses = [c["status"] for c in harness.fake.calls_of("chat.postMessage")]
    assert statuses == [429, 429, 200]
    assert SLACK_CALLS.labels("chat.postMessage", "rate_limited")._value.get() == limited + 2


async def test_slack_down_never_holds_up_an_automatic_rollback(harness: Harness) -> None:
    harness.fake.unreachable = True
    undelivered = _value("rollbackbot_slack_messages_undelivered_total", {"kind": "rollback"})
    incident_id = harness.fire(DOCSUM)
    await harness.settle()
    incident = harness.incident(incident_id)
    assert incident.state is S.rolled_back and len(harness.git.commits) == 1
    assert harness.fake.calls == []  # nothing reached Slack
    assert _value("rollbackbot_slack_messages_undelivered_total", {"kind": "rollback"}) == undelivered + 1


async def test_slack_answering_503_never_holds_up_an_automatic_rollback(harness: Harness) -> None:
    harness.fake.down = True
    incident_id = harness.fire(DOCSUM)
    await harness.settle()
    assert harness.incident(incident_id).state is S.rolled_back
    assert {c["status"] for c in harness.fake.calls} == {503}


async def test_auto_rollback_posts_once_and_threads_its_outcome(harness: Harness) -> None:
    incident_id = harness.fire(DOCSUM)
    await harness.settle()
    [parent] = harness.fake.top_level()
    assert parent["channel"] == "C0ML0NCALL" and parent["text"].startswith("Rolling back: docsum-llm")
    replies = [m["text"] for m in harness.fake.thread(parent["channel"], parent["ts"])]
    assert len(replies) == 2 and "Argo CD is syncing docsum-llm" in replies[0] and "Rolled back to" in replies[1]
    assert harness.incident(incident_id).state is S.rolled_back


async def test_a_proposal_that_cannot_be_posted_is_retried_counted_and_posted_later(harness: Harness) -> None:
    harness.fake.unreachable = True
    failures = SLACK_PROPOSAL_FAILURES._value.get()
    waits: list[float] = []

    def slack_comes_back(seconds: float) -> None:
        waits.append(seconds)
        if len([w for w in waits if w >= 5]) == 3:  # two background retries fail, the third gets through
            harness.fake.unreachable = False

    harness.on_sleep = slack_comes_back
    incident_id = harness.fire(SUPPORT)
    await harness.settle()
    assert harness.incident(incident_id).state is S.awaiting_approval
    [proposal] = harness.fake.top_level()
    assert proposal["text"].startswith("Rollback proposed: support-llm")
    assert SLACK_PROPOSAL_FAILURES._value.get() == failures + 3  # the first try and two background retries
    assert [w for w in waits if w >= 5][:3] == [5.0, 15.0, 30.0]  # backing off
    assert SLACK_PROPOSALS_PENDING._value.get() == 0


async def test_a_proposal_decided_before_it_could_be_posted_stops_being_retried(harness: Harness) -> None:
    harness.fake.unreachable = True
    incident_id = harness.fire(SUPPORT)

    def decided_meanwhile(seconds: float) -> None:
        if seconds >= 5 and harness.incident(incident_id).state is S.awaiting_approval:
            harness.service.reject(incident_id, "Dana Ops U012ABC")  # e.g. through the CLI or another replica

    harness.on_sleep = decided_meanwhile
    await harness.settle()
    assert harness.incident(incident_id).state is S.rejected
    assert not harness.chat._retries and SLACK_PROPOSALS_PENDING._value.get() == 0


async def test_after_a_restart_unposted_proposals_are_posted_and_decisions_update_the_original(
    tmp_path: Path,
) -> None:
    fake = new_fake_slack()
    first, _ = await make_harness(tmp_path, fake=fake)
    await first.service.start()
    fake.unreachable = True
    first.on_sleep = lambda _s: None
    incident_id = first.fire(SUPPORT)
    await first.service.idle()
    await first.chat.stop()  # the process dies with the proposal unposted
    await first.service.stop()
    assert fake.top_level() == []

    fake.unreachable = False
    second, _ = await make_harness(tmp_path, fake=fake, clock=first.clock)
    await second.service.start()
    await second.chat.start()
    await second.settle()
    [proposal] = fake.top_level()
    await second.service.stop()

    third, _ = await make_harness(tmp_path, fake=fake, clock=first.clock)  # one more restart, then the click
    await third.service.start()
    await third.chat.start()
    assert (await third.click("approve_rollback", incident_id)).status_code == 200
    await third.settle()
    [update] = fake.calls_of("chat.update")
    assert (update["args"]["channel"], update["args"]["ts"]) == (proposal["channel"], proposal["ts"])
    assert third.incident(incident_id).state is S.rolled_back
    await third.service.stop()


async def test_a_deleted_proposal_does_not_disturb_the_rollback(harness: Harness) -> None:
    incident_id = harness.fire(SUPPORT)
    await harness.settle()
    harness.fake.messages.clear()  # someone deleted the message in Slack
    await harness.click("approve_rollback", incident_id)
    await harness.settle()
    assert harness.incident(incident_id).state is S.rolled_back
    assert [c["ok"] for c in harness.fake.calls_of("chat.update")] == [False]


async def test_notify_mode_posts_the_alert_and_changes_nothing(harness: Harness) -> None:
    incident_id = harness.fire({"alertname": "ModelConfidenceDrift", "app": "chat-llm", "severity": "warning"})
    await harness.settle()
    assert harness.incident(incident_id).state is S.notified and harness.git.commits == {}
    [message] = harness.fake.top_level()
    assert message["text"].startswith("Alert (notify only, nothing changes): chat-llm")
    assert "actions" not in str(message["blocks"])


async def test_no_verified_target_tells_a_person(harness: Harness) -> None:
    harness.git.target_tag = None
    incident_id = harness.fire(DOCSUM)
    await harness.settle()
    assert harness.incident(incident_id).state is S.suppressed
    [message] = harness.fake.top_level()
    assert message["text"].startswith("No rollback: a person must act: docsum-llm")
    assert "no verified target" in str(message["blocks"])


async def test_a_failed_rollback_is_broadcast_from_its_thread(harness: Harness) -> None:
    harness.argo.unhealthy = "docsum-llm health Degraded after 300s"
    incident_id = harness.fire(DOCSUM)
    await harness.settle()
    assert harness.incident(incident_id).state is S.failed
    [post] = [c["args"] for c in harness.fake.calls_of("chat.postMessage") if c["args"].get("reply_broadcast")]
    assert post["text"].startswith(":x: Rollback failed: Argo CD: docsum-llm health Degraded")


async def test_verification_failure_is_broadcast_when_the_alert_keeps_firing(harness: Harness) -> None:
    incident_id = harness.fire(DOCSUM)
    await harness.settle()
    harness.clock.advance(11 * 60)  # past verify.within (10m) and the alert never resolved
    harness.service.wake(incident_id)
    await harness.settle()
    assert harness.incident(incident_id).verification == "still firing"
    last = harness.fake.calls_of("chat.postMessage")[-1]["args"]
    assert last["reply_broadcast"] is True and "still firing after the rollback" in last["text"]


async def test_an_auto_rollback_held_back_for_a_person_says_why(harness: Harness) -> None:
    harness.argo.unhealthy = None
    original_plan = harness.git.plan

    def head_is_a_rollback(target):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        return replace(original_plan(target), head_is_rollback=True)

    harness.git.plan = head_is_a_rollback
    incident_id = harness.fire(DOCSUM)
    await harness.settle()
    assert harness.incident(incident_id).state is S.awaiting_approval
    [proposal] = harness.fake.top_level()
    assert "the branch head is already a rollbackbot rollback" in str(proposal["blocks"])
    assert "approve_rollback" in str(proposal["blocks"])


async def test_with_a_public_url_every_message_links_the_incident_page(harness: Harness) -> None:
    harness.chat.public_url = "https://rollbackbot.example.com"
    incident_id = harness.fire(DOCSUM)
    await harness.settle()
    assert harness.incident(incident_id).state is S.rolled_back
    page = f"<https://rollbackbot.example.com/ui/incidents/{incident_id}|View incident>"
    posts = harness.fake.calls_of("chat.postMessage")
    assert len(posts) >= 3  # the message and its thread replies
    for call in posts:
        assert page in str(call["args"]), call["args"]


async def test_without_a_public_url_no_message_links_a_page(harness: Harness) -> None:
    harness.fire(DOCSUM)
    await harness.settle()
    posts = harness.fake.calls_of("chat.postMessage")
    assert posts and all("View incident" not in str(call["args"]) for call in posts)
