"""What a person must read about an incident, independent of any chat system.

Purely computational: ``notices_for`` turns a state change into the messages to post, update or
reply with, built from the incident and its policy alone; adapters render them (Slack Block Kit,
plain text) and deliver them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum, auto
from typing import Any
from urllib.parse import quote

from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.policy import Policy
from rollbackbot.core.shadow import shadow_off_due, shadow_on_since

S = IncidentState
USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
# Suppressions a person must act on; routine ones (duplicate, cooldown, resolved, stale) stay quiet.
# (A spent budget is not a suppression: decide() proposes the rollback to a person instead.)
_NEEDS_HUMAN = ("no verified target", "alert refused")


class MessageKind(StrEnum):
    """Top-level messages, one per incident (the parent of its thread), and what replaces them."""

    proposal = "proposal"  # awaiting approval: Approve / Reject buttons
    rollback = "rollback"  # auto mode: rolling back now
    notify = "notify"  # mode notify: nothing changes
    needs_human = "needs_human"  # suppressed, and only a person can resolve it
    decided = "decided"  # a proposal after approval, rejection, expiry or failure (no buttons)
    failure = "failure"  # failed before any message was posted


class NoteKind(Enum):
    """Replies in the incident's thread. Compared by identity only: never stored, sent or counted."""

    progress = auto()
    outcome = auto()
    failure = auto()
    verification_failed = auto()


@dataclass(frozen=True)
class Release:
    """One side of the rollback: a tag (or an untagged head) and the model it ships."""

    tag: str
    revision: str | None = None
    model_digest: str | None = None
    data_version: str | None = None


@dataclass(frozen=True)
class Decision:
    """Who closed a proposal and when; ``user_id`` is None for the timeout or the service itself."""

    verb: str  # approved | rejected | expired | failed
    at: datetime
    by: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class PullRequestLink:
    """The pull request of an incident in pull-request mode: approving merges it."""

    number: int
    url: str
    forge: str  # github | gitlab


@dataclass(frozen=True)
class IncidentMessage:
    """A top-level message: everything a person needs to judge the incident."""

    kind: MessageKind
    incident_id: str
    state: str
    app: str
    policy: str
    mode: str
    alert_name: str
    severity: str
    summary: str
    started_at: datetime
    generator_url: str
    from_release: Release | None = None
    to_release: Release | None = None
    diff_stat: str = ""
    evidence_url: str | None = None
    expires_at: datetime | None = None
    on_timeout: str | None = None  # expire | rollback: what the expiry leads to
    approvers: tuple[str, ...] = ()
    decision: Decision | None = None
    reason: str = ""
    page_url: str | None = None  # the incident's page (docs/ui.md), when ROLLBACKBOT_PUBLIC_URL is set
    pull_request: PullRequestLink | None = None  # pull-request mode: the pull request that carries the rollback
    trigger: Trigger | None = None  # the top flagged payload of the evidence (core.trigger)
    shadow: str = ""  # a live shadow, e.g. "2% of requests with x-suspect=1 mirrored to ml-quarantine/…"
    shadow_until: datetime | None = None  # when it is removed unless a person ends it first

    @property
    def asks_for_decision(self) -> bool:
        """Whether the message carries Approve / Reject buttons."""
        return self.kind is MessageKind.proposal


@dataclass(frozen=True)
class Trigger:
    """The request that set the alert off, as the evidence shows it: already redacted and cut."""

    detectors: tuple[str, ...]
    excerpt: str
    flagged_requests: int

    @property
    def line(self) -> str:
        """One line naming the detectors, the excerpt and how many requests were flagged."""
        detectors = ", ".join(self.detectors) or "canary/PII in the answer"
        return f'{detectors}: "{self.excerpt}" ({self.flagged_requests} flagged)'


def trigger_of(incident: Incident) -> Trigger | None:
    """The incident's top flagged payload, when its evidence had one."""
    found = incident.trigger
    if not found:
        return None
    detectors = tuple(str(d) for d in found.get("detectors") or ())
    return Trigger(detectors, str(found.get("excerpt", "")), int(found.get("flagged_requests") or 0))


@dataclass(frozen=True)
class ThreadNote:
    """A reply in the incident's thread; ``broadcast`` also shows it in the channel."""

    kind: NoteKind
    incident_id: str
    text: str
    broadcast: bool = False
    page_url: str | None = None  # the incident's page (docs/ui.md), when ROLLBACKBOT_PUBLIC_URL is set


@dataclass(frozen=True)
class Notices:
    """What one state change means for the channel: a new message, a replacement, a reply."""

    post: IncidentMessage | None = None
    update: IncidentMessage | None = None
    reply: ThreadNote | None = None

    @property
    def empty(self) -> bool:
        """Nothing to say."""
        return self.post is None and self.update is None and self.reply is None


def incident_page_url(public_url: str | None, incident_id: str) -> str | None:
    """``<public URL>/ui/incidents/<id>``: where the incident's page is, or None without a public URL."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/ui/incidents/{quote(incident_id, safe='')}"


def notices_for(incident: Incident, previous: IncidentState | None, policy: Policy | None) -> Notices:
    """The messages a state change calls for (table of docs/incidents.md transitions)."""
    state = incident.state
    if previous is S.awaiting_approval and state is not S.awaiting_approval:
        return Notices(update=incident_message(incident, policy, MessageKind.decided))
    if state is S.awaiting_approval:
        return Notices(post=incident_message(incident, policy, MessageKind.proposal))
    if state is S.rolling_back and previous is S.received:
        return Notices(post=incident_message(incident, policy, MessageKind.rollback))
    if state is S.rolling_back:
        text = f"Writing the rollback commit to {_branch(incident)}: {_from_tag(incident)} → {incident.to_ref.tag}"
        return Notices(reply=ThreadNote(NoteKind.progress, incident.id, text))
    if state is S.syncing:
        apps = ", ".join(incident.target.get("apps", ())) or incident.app
        detail = _last_detail(incident)
        text = f"{detail[:1].upper()}{detail[1:]}; Argo CD is syncing {apps}"
        return Notices(reply=ThreadNote(NoteKind.progress, incident.id, text))
    if state is S.rolled_back and previous is S.rolled_back and incident.verification == "still firing":
        text = f"Verification failed: {incident.alert.name} is still firing after the rollback. A person must look."
        return Notices(reply=ThreadNote(NoteKind.verification_failed, incident.id, text, broadcast=True))
    if state is S.rolled_back:
        reply = ThreadNote(NoteKind.outcome, incident.id, _rolled_back_text(incident))
        if policy is not None and policy.spec.shadow is not None and shadow_on_since(incident.events):
            # The first message gains the shadow and its End shadow now button.
            kind = MessageKind.decided if decision_of(incident) else MessageKind.rollback
            return Notices(update=incident_message(incident, policy, kind), reply=reply)
        return Notices(reply=reply)
    if state is S.failed:
        text = f"Rollback failed: {incident.reason}. A person must look."
        return Notices(reply=ThreadNote(NoteKind.failure, incident.id, text, broadcast=True))
    if state is S.notified:
        return Notices(post=incident_message(incident, policy, MessageKind.notify))
    if state is S.suppressed and incident.reason.startswith(_NEEDS_HUMAN):
        return Notices(post=incident_message(incident, policy, MessageKind.needs_human))
    return Notices()


# Canary and shadow events worth a reply in the incident's thread; analysis runs stay on the incident page.
_STEP_NOTE = re.compile(r"step \d+/\d+: \S+ committed|step \d+/\d+ skipped|step \d+/\d+ failed")
_SHADOW_NOTES = ("shadow on:", "shadow off:", "shadow not started:", "shadow not removed:", "shadow end requested")


def step_note(incident_id: str, detail: str) -> ThreadNote | None:
    """A thread reply for a canary step or shadow event as it happens; None for the ones not worth one."""
    if _STEP_NOTE.match(detail) or detail.startswith(_SHADOW_NOTES):
        return ThreadNote(NoteKind.progress, incident_id, f"{detail[:1].upper()}{detail[1:]}")
    return None


def incident_message(incident: Incident, policy: Policy | None, kind: MessageKind) -> IncidentMessage:
    """The full message for an incident as it is now."""
    alert = incident.alert
    approval = policy.spec.approval if policy else None
    awaiting = incident.state is S.awaiting_approval
    return IncidentMessage(
        kind=kind,
        incident_id=incident.id,
        state=incident.state.value,
        app=incident.app,
        policy=incident.policy,
        mode=incident.mode,
        alert_name=alert.name,
        severity=alert.labels.get("severity", "unknown"),
        summary=alert.annotations.get("summary") or alert.annotations.get("description", ""),
        started_at=alert.starts_at,
        generator_url=alert.generator_url,
        from_release=_release(incident.plan.get("current"), _from_tag(incident), incident.from_ref.revision)
        if incident.plan
        else None,
        to_release=_release(incident.plan.get("target"), incident.to_ref.tag, incident.to_ref.revision)
        if incident.plan and incident.to_ref.tag
        else None,
        diff_stat=str(incident.plan.get("diff_stat", "")),
        evidence_url=incident.evidence_url or None,
        expires_at=_expiry(incident) if awaiting else None,
        on_timeout=approval.on_timeout.value if approval else "expire",
        approvers=tuple(approval.approvers) if approval else (),
        decision=decision_of(incident),
        reason=_reason(incident, kind),
        pull_request=pull_request_link(incident),
        trigger=trigger_of(incident),
        **_shadow_fields(incident, policy),
    )


def pull_request_link(incident: Incident) -> PullRequestLink | None:
    """The incident's pull request once it is open (pull-request mode), else None."""
    pull = incident.pull_request
    if not pull.get("number") or not pull.get("url"):
        return None
    return PullRequestLink(int(pull["number"]), str(pull["url"]), str(pull.get("forge") or "forge"))


def _expiry(incident: Incident) -> datetime | None:
    """When an open decision lapses; in pull-request mode ``not_before`` is the next look at the pull request."""
    if not incident.pull_request:
        return incident.not_before
    deadline = incident.pull_request.get("deadline")
    return datetime.fromisoformat(str(deadline)) if deadline else None


def _shadow_fields(incident: Incident, policy: Policy | None) -> dict[str, Any]:
    """What the message says about a live shadow of the incident (nothing when none is live)."""
    spec = policy.spec.shadow if policy else None
    until = shadow_off_due(incident.events, spec.ttl) if spec else None
    if spec is None or until is None:
        return {}
    match = ", ".join(f"{name}={value}" for name, value in (spec.match or {}).items())
    which = f"requests with {match}" if match else "requests"
    text = f"{spec.percent:g}% of {which} mirrored to {spec.sandbox.namespace}/{spec.sandbox.name}"
    return {"shadow": text, "shadow_until": until}


def _reason(incident: Incident, kind: MessageKind) -> str:
    if kind is MessageKind.proposal:
        # A policy in propose mode explains itself; an automatic rollback held back for a person says why.
        proposed = next((e.detail for e in incident.events if e.state is S.awaiting_approval), "")
        return "" if incident.mode == "propose" else proposed
    if kind is MessageKind.decided and incident.state is not S.failed:
        return ""  # the decision line says who decided
    return incident.reason if incident.state.terminal else _last_detail(incident)


def decision_of(incident: Incident) -> Decision | None:
    """How the proposal was closed (approved, rejected, expired, failed), if it was."""
    proposed = False
    for event in incident.events:
        if event.state is S.awaiting_approval:
            proposed = True
        elif proposed and event.state in (S.approved, S.rejected, S.expired, S.failed):
            if event.state is S.expired or event.state is S.failed or incident.approved_by is None:
                return Decision(event.state.value, event.at)
            name, user_id = split_approver(incident.approved_by)
            return Decision(event.state.value, event.at, name, user_id)
    return None


def split_approver(approved_by: str) -> tuple[str, str | None]:
    """``"Dana Ops U012ABC"`` → ``("Dana Ops", "U012ABC")``; anything else has no user id."""
    name, _, last = approved_by.rpartition(" ")
    if name and USER_ID.fullmatch(last):
        return name, last
    return approved_by, None


def _release(tag: Mapping[str, Any] | None, name: str, revision: str | None) -> Release:
    trailers = dict(tag.get("trailers", {})) if tag else {}
    return Release(
        tag=name,
        revision=revision,
        model_digest=trailers.get("Model-Digest"),
        data_version=trailers.get("Data-Version"),
    )


def _from_tag(incident: Incident) -> str:
    return incident.from_ref.tag or f"untagged@{(incident.from_ref.revision or '')[:12]}"


def _branch(incident: Incident) -> str:
    return str(incident.plan.get("branch", "the deploy branch"))


def _last_detail(incident: Incident) -> str:
    return incident.events[-1].detail if incident.events else ""


def _rolled_back_text(incident: Incident) -> str:
    started = next((e.at for e in incident.events if e.state is S.rolling_back), incident.created_at)
    seconds = (incident.events[-1].at - started).total_seconds()
    return f"Rolled back to {incident.to_ref.tag} in {seconds:.1f} s: {_last_detail(incident)}"


# --- plain text: how a person reads the message without Slack (demo, logs, fallback) -----------

_TITLES = {
    MessageKind.proposal: "Rollback proposed",
    MessageKind.rollback: "Rolling back",
    MessageKind.notify: "Alert (notify only, nothing changes)",
    MessageKind.needs_human: "No rollback: a person must act",
    MessageKind.failure: "Rollback failed",
}


def title_of(message: IncidentMessage) -> str:
    """One line: what happened to which app."""
    if message.kind is MessageKind.decided and message.decision:
        verb = {"approved": "Rollback approved", "rejected": "Rollback rejected", "expired": "Proposal expired"}
        return f"{verb.get(message.decision.verb, 'Proposal closed')}: {message.app}"
    return f"{_TITLES.get(message.kind, 'Incident')}: {message.app}"


def decision_line(decision: Decision) -> str:
    """``approved by Dana Ops (U012ABC) at 2026-11-25 12:01:00 UTC`` and the like."""
    who = f" by {decision.by}" + (f" ({decision.user_id})" if decision.user_id else "") if decision.by else ""
    return f"{decision.verb}{who} at {utc(decision.at)}"


def utc(at: datetime) -> str:
    """A timestamp as people read it in an incident channel."""
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def release_line(release: Release) -> str:
    """``tag  Model-Digest …  Data-Version …``."""
    parts = [release.tag]
    parts += [f"Model-Digest {release.model_digest}"] if release.model_digest else []
    parts += [f"Data-Version {release.data_version}"] if release.data_version else []
    return "  ".join(parts)


def as_text(message: IncidentMessage) -> str:
    """The whole message as plain text, in the order a person reads it."""
    lines = [f"{title_of(message)}   (incident {message.incident_id})"]
    if message.decision:
        lines.append(f"Decision:  {decision_line(message.decision)}")
    lines.append(f"Alert:     {message.alert_name}  severity {message.severity}  started {utc(message.started_at)}")
    lines += [f"           {message.summary}"] if message.summary else []
    lines += [f"           {message.generator_url}"] if message.generator_url else []
    lines.append(f"App:       {message.app}  (policy {message.policy}, mode {message.mode})")
    lines += [f"From:      {release_line(message.from_release)}"] if message.from_release else []
    lines += [f"To:        {release_line(message.to_release)}"] if message.to_release else []
    for index, stat in enumerate(message.diff_stat.strip("\n").splitlines()):
        lines.append(f"{'Diff:' if index == 0 else '':<11}{stat.strip()}")
    lines += [f"Trigger:   {message.trigger.line}"] if message.trigger else []
    lines += [f"Evidence:  {message.evidence_url}"] if message.evidence_url else []
    if message.pull_request:
        lines.append(f"Pull req.: #{message.pull_request.number} {message.pull_request.url} (approving merges it)")
    lines += [f"Incident:  {message.page_url}"] if message.page_url else []
    if message.reason:
        lines.append(f"Reason:    {message.reason}")
    if message.expires_at:
        then = "rolls back anyway" if message.on_timeout == "rollback" else "nothing changes"
        lines.append(f"Expires:   {utc(message.expires_at)} (then {then})")
    lines += [f"Approvers: {', '.join(message.approvers)}"] if message.asks_for_decision and message.approvers else []
    lines += ["           [ Approve ]  [ Reject ]"] if message.asks_for_decision else []
    return "\n".join(lines)
