"""What a state change says to people (core/messages.py), without any chat system.

The Slack golden files pin the rendered messages of the common paths; these tests pin the rules
behind them: which state change posts, replaces or replies, which fields a message carries when
the incident or policy lacks something, how a proposal's decision is read back from the events,
and the plain-text rendering of the optional parts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollbackbot.core.decide import Action, AppHistory, Decision, Mode, Rules, decide, decide_with_plan
from rollbackbot.core.incidents import AlertRef, Incident, IncidentState, new_incident
from rollbackbot.core.messages import (
    Decision as Closed,
)
from rollbackbot.core.messages import (
    IncidentMessage,
    MessageKind,
    NoteKind,
    Notices,
    Release,
    ThreadNote,
    as_text,
    decision_line,
    decision_of,
    incident_message,
    notices_for,
    split_approver,
    title_of,
)
from rollbackbot.core.model import ReleaseTag, RollbackPlan
from tests.core.test_pinned_decide import policy

S = IncidentState
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def incident(
    mode: str = "auto",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    target: dict[str, Any] | None = None,
) -> Incident:
    alert = AlertRef(
        name="ModelRefusalRateDrop",
        fingerprint="3f2a",
        starts_at=T0 - 60 * SECOND,
        labels={"app": "fraud-llm"} if labels is None else labels,
        annotations={} if annotations is None else annotations,
    )
    target = {"apps": ["fraud-llm"], "paths": ["apps/fraud-llm"]} if target is None else target
    return new_incident(app="fraud-llm", policy="p", mode=mode, alert=alert, target=target, now=T0)


PLAN = RollbackPlan(
    app="fraud-llm",
    branch="main",
    head="c" * 40,
    current=ReleaseTag("fraud-llm/v2.0.0", "c" * 40, {"Model-Digest": "sha256:" + "9" * 64}),
    target=ReleaseTag("fraud-llm/v1.0.0", "b" * 40, {"Model-Digest": "sha256:" + "1" * 64}),
    diff_stat=" apps/fraud-llm/model.yaml | 2 +-\n",
)


def planned(item: Incident, *, branch: str | None = "main", current: bool = True) -> Incident:
    done = item.with_plan(PLAN if current else replace(PLAN, current=None))
    if branch is None:
        done = replace(done, plan={k: v for k, v in done.plan.items() if k != "branch"})
    return done


def proposed(mode: str = "propose") -> Incident:
    at = T0 + SECOND
    return (
        planned(incident(mode))
        .with_state(S.awaiting_approval, at, "held for a person: cooldown")
        .with_not_before(at + timedelta(minutes=30))
    )


# --- which state change says what --------------------------------------------------------------


def test_message_kinds_are_the_stored_and_counted_vocabulary() -> None:
    # Stored with each posted message and the label of rollbackbot_slack_messages_undelivered_total.
    assert [kind.value for kind in MessageKind] == [
        "proposal",
        "rollback",
        "notify",
        "needs_human",
        "decided",
        "failure",
    ]


def test_notices_are_empty_only_when_nothing_is_said() -> None:
    note = ThreadNote(NoteKind.progress, "inc-1", "text")
    assert Notices().empty
    assert not Notices(reply=note).empty
    assert not Notices(post=incident_message(incident(), None, MessageKind.notify)).empty
    assert not Notices(update=incident_message(incident(), None, MessageKind.notify)).empty


def test_a_rollback_after_a_proposal_is_a_progress_reply_naming_the_branch() -> None:
    approved = proposed().with_state(S.approved, T0 + 2 * SECOND, "approved")
    rolling = approved.with_state(S.rolling_back, T0 + 3 * SECOND, "writing")
    notices = notices_for(rolling, S.approved, None)
    assert notices.post is None and notices.update is None and notices.reply is not None
    assert notices.reply.kind is NoteKind.progress
    assert notices.reply.text == "Writing the rollback commit to main: fraud-llm/v2.0.0 → fraud-llm/v1.0.0"


def test_a_plan_without_a_branch_and_an_untagged_head_still_say_where_and_from_what() -> None:
    item = planned(incident(), branch=None, current=False).with_state(S.rolling_back, T0 + SECOND, "auto")
    reply = notices_for(item, S.approved, None).reply
    assert reply is not None
    assert reply.text == f"Writing the rollback commit to the deploy branch: untagged@{'c' * 12} → fraud-llm/v1.0.0"


@pytest.mark.parametrize(
    ("target", "apps"),
    [({"apps": ["fraud-llm", "fraud-llm-features"]}, "fraud-llm, fraud-llm-features"), ({}, "fraud-llm")],
)
def test_syncing_names_every_argo_app_of_the_target_or_else_the_incidents_app(
    target: dict[str, Any], apps: str
) -> None:
    item = planned(incident(target=target)).with_state(S.rolling_back, T0 + SECOND, "auto")
    syncing = item.with_state(S.syncing, T0 + 2 * SECOND, "commit d1 pushed")
    reply = notices_for(syncing, S.rolling_back, None).reply
    assert reply is not None and reply.text == f"Commit d1 pushed; Argo CD is syncing {apps}"


def test_only_suppressions_a_person_must_act_on_are_posted() -> None:
    no_target = decide_with_plan(Decision(Action.rollback, "auto"), replace(PLAN, target=None))
    cooldown = decide(
        Rules(Mode.auto),
        alert_firing=True,
        alert_started=T0,
        now=T0,
        history=AppHistory(last_rollback_at=T0 - SECOND),
    )
    duplicate = decide(
        Rules(Mode.auto), alert_firing=True, alert_started=T0, now=T0, history=AppHistory(other_active_incident="i-0")
    )
    for reason, posted in [
        (no_target.reason, True),
        ("alert refused: unknown app", True),  # the service refuses alerts it cannot attribute
        (cooldown.reason, False),
        (duplicate.reason, False),
        ("budget spent: 3 rollbacks in 1 day, 0:00:00", False),  # decide() proposes instead
    ]:
        item = incident().with_state(S.suppressed, T0 + SECOND, reason)
        notices = notices_for(item, S.received, None)
        assert (notices.post is not None) is posted, reason
        if notices.post is not None:
            assert notices.post.kind is MessageKind.needs_human


# --- what a message carries ----------------------------------------------------------------------


def test_a_message_without_severity_summary_or_plan_says_so_plainly() -> None:
    message = incident_message(incident(labels={}, annotations={}), None, MessageKind.notify)
    assert (message.severity, message.summary, message.diff_stat) == ("unknown", "", "")
    assert message.from_release is None and message.to_release is None
    assert message.on_timeout == "expire" and message.approvers == () and message.decision is None


def test_the_description_stands_in_for_a_missing_summary() -> None:
    message = incident_message(incident(annotations={"description": "refusals fell"}), None, MessageKind.notify)
    assert message.summary == "refusals fell"
    both = incident_message(incident(annotations={"summary": "s", "description": "d"}), None, MessageKind.notify)
    assert both.summary == "s"


def test_releases_carry_tag_revision_and_trailers() -> None:
    message = incident_message(planned(incident()), None, MessageKind.rollback)
    assert message.from_release == Release("fraud-llm/v2.0.0", "c" * 40, "sha256:" + "9" * 64)
    assert message.to_release == Release("fraud-llm/v1.0.0", "b" * 40, "sha256:" + "1" * 64)
    assert message.diff_stat == " apps/fraud-llm/model.yaml | 2 +-\n"


def test_a_plan_without_a_target_has_no_to_release() -> None:
    item = planned(incident())
    item = replace(item, to_ref=replace(item.to_ref, tag=None))
    message = incident_message(item, None, MessageKind.needs_human)
    assert message.from_release is not None and message.to_release is None


def test_a_plan_recorded_without_tag_details_names_the_release_unknown() -> None:
    item = replace(planned(incident()), from_ref=replace(planned(incident()).from_ref, tag=""))
    item = replace(item, plan={"branch": "main"})
    message = incident_message(item, None, MessageKind.rollback)
    assert message.from_release == Release(f"untagged@{'c' * 12}", "c" * 40, None, None)


def test_a_proposal_carries_the_policys_approvers_deadline_and_what_the_timeout_does() -> None:
    approval = {"channel": "C1X", "approvers": ["U1X", "U2Y"], "onTimeout": "rollback"}
    rules = policy(mode="propose", approval=approval)
    message = incident_message(proposed(), rules, MessageKind.proposal)
    assert message.approvers == ("U1X", "U2Y")
    assert message.on_timeout == "rollback"
    assert message.expires_at == T0 + SECOND + timedelta(minutes=30)
    text = as_text(message)
    assert "(then rolls back anyway)" in text
    assert "Approvers: U1X, U2Y" in text and "[ Approve ]  [ Reject ]" in text
    expiring = incident_message(
        proposed(), policy(mode="propose", approval=approval | {"onTimeout": "expire"}), MessageKind.proposal
    )
    assert "(then nothing changes)" in as_text(expiring)


def test_a_closed_proposal_shows_no_approvers_and_no_buttons() -> None:
    approval = {"channel": "C1X", "approvers": ["U1X"]}
    closed = proposed().with_state(S.rejected, T0 + 2 * SECOND, "rejected")
    message = incident_message(closed, policy(mode="propose", approval=approval), MessageKind.decided)
    text = as_text(message)
    assert "Approvers:" not in text and "[ Approve ]" not in text and "Expires:" not in text


# --- reasons -----------------------------------------------------------------------------------


def test_a_proposal_in_propose_mode_needs_no_reason_but_a_held_back_auto_rollback_says_why() -> None:
    assert incident_message(proposed("propose"), None, MessageKind.proposal).reason == ""
    assert incident_message(proposed("auto"), None, MessageKind.proposal).reason == "held for a person: cooldown"


def test_a_proposal_without_its_awaiting_event_has_an_empty_reason() -> None:
    item = replace(proposed("auto"), events=())
    assert incident_message(item, None, MessageKind.proposal).reason == ""


def test_a_decided_message_gives_the_reason_only_for_a_failure() -> None:
    rejected = proposed().with_state(S.rejected, T0 + 2 * SECOND, "rejected by Dana")
    assert incident_message(rejected, None, MessageKind.decided).reason == ""
    failed = proposed().with_state(S.failed, T0 + 2 * SECOND, "git push refused")
    assert incident_message(failed, None, MessageKind.decided).reason == "git push refused"


def test_an_unfinished_incident_gives_its_latest_event_as_reason() -> None:
    item = incident().with_event(T0 + SECOND, "capturing evidence")
    assert incident_message(item, None, MessageKind.rollback).reason == "capturing evidence"
    assert incident_message(replace(item, events=()), None, MessageKind.rollback).reason == ""


# --- decisions -----------------------------------------------------------------------------------


def test_an_approval_names_the_approver_and_their_slack_id() -> None:
    approved = proposed().with_approver("Dana Ops U012ABC").with_state(S.approved, T0 + 2 * SECOND, "ok")
    assert decision_of(approved) == Closed("approved", T0 + 2 * SECOND, "Dana Ops", "U012ABC")


def test_a_rejection_without_a_recorded_person_names_nobody() -> None:
    rejected = proposed().with_state(S.rejected, T0 + 2 * SECOND, "rejected")
    assert decision_of(rejected) == Closed("rejected", T0 + 2 * SECOND)


@pytest.mark.parametrize("closing", [S.expired, S.failed])
def test_an_expiry_or_failure_names_nobody_even_with_an_approver_recorded(closing: IncidentState) -> None:
    closed = proposed().with_approver("Dana Ops U012ABC").with_state(closing, T0 + 2 * SECOND, "closed")
    assert decision_of(closed) == Closed(closing.value, T0 + 2 * SECOND)


def test_an_incident_never_proposed_has_no_decision() -> None:
    rolled = incident().with_approver("Dana Ops U012ABC").with_state(S.rolling_back, T0 + SECOND, "auto")
    failed = rolled.with_state(S.failed, T0 + 2 * SECOND, "push refused")
    assert decision_of(failed) is None
    assert decision_of(proposed()) is None  # still open


@pytest.mark.parametrize(
    ("approved_by", "split"),
    [
        ("Dana Ops U012ABC", ("Dana Ops", "U012ABC")),
        ("Dana Ops W0ABC", ("Dana Ops", "W0ABC")),
        ("U012ABC", ("U012ABC", None)),  # an id alone has no name in front of it
        ("Dana Ops", ("Dana Ops", None)),
        ("Dana u012abc", ("Dana u012abc", None)),
    ],
)
def test_split_approver(approved_by: str, split: tuple[str, str | None]) -> None:
    assert split_approver(approved_by) == split


@pytest.mark.parametrize(
    ("closed", "line"),
    [
        (Closed("approved", T0, "Dana Ops", "U012ABC"), "approved by Dana Ops (U012ABC) at 2026-11-25 12:00:00 UTC"),
        (Closed("approved", T0, "Dana Ops"), "approved by Dana Ops at 2026-11-25 12:00:00 UTC"),
        (Closed("expired", T0), "expired at 2026-11-25 12:00:00 UTC"),
    ],
)
def test_decision_line(closed: Closed, line: str) -> None:
    assert decision_line(closed) == line


def test_a_decided_message_without_a_decision_has_the_generic_title() -> None:
    message = incident_message(incident(), None, MessageKind.decided)
    assert message.decision is None
    assert title_of(message) == "Incident: fraud-llm"


# --- plain text ----------------------------------------------------------------------------------


def test_a_bare_message_has_only_the_lines_it_has_data_for() -> None:
    message = IncidentMessage(
        kind=MessageKind.notify,
        incident_id="inc-1",
        state="notified",
        app="fraud-llm",
        policy="p",
        mode="notify",
        alert_name="A",
        severity="warning",
        summary="",
        started_at=T0,
        generator_url="",
    )
    assert as_text(message).splitlines() == [
        "Alert (notify only, nothing changes): fraud-llm   (incident inc-1)",
        "Alert:     A  severity warning  started 2026-11-25 12:00:00 UTC",
        "App:       fraud-llm  (policy p, mode notify)",
    ]
