"""What the incident pages show, computed from incidents alone (no I/O): timeline, decision, plan, outcome.

Every text that reaches a template comes from here or from ``sources``; the templates escape it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.messages import decision_line, decision_of
from rollbackbot.ports import IncidentPage

S = IncidentState
# Characters that reorder or hide text (bidi overrides and isolates, zero-width marks) and C0/C1 controls.
_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"']+@")
_URL_QUERY = re.compile(r"(https?://[^\s\"'?#]+)\?[^\s\"'#]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_FIELD = re.compile(
    r"(?i)([\"']?(?:api[_-]?key|token|secret|password|authorization)[\"']?\s*[:=]\s*[\"']?)[^\"'\s,}]+"
)
STATE_TONE = {
    S.rolled_back: "ok",
    S.notified: "info",
    S.suppressed: "muted",
    S.rejected: "muted",
    S.expired: "muted",
    S.failed: "bad",
    S.awaiting_approval: "warn",
    S.approved: "warn",
    S.received: "info",
    S.rolling_back: "warn",
    S.syncing: "warn",
}


def visible(text: str) -> str:
    """``text`` with invisible and reordering characters shown as ``<U+202E>`` instead of acting."""
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def redact(text: str) -> str:
    """A line of evidence with URL credentials and query strings, bearer tokens and secret fields blanked."""
    text = _URL_USERINFO.sub("***@", text)
    text = _URL_QUERY.sub(r"\1?***", text)
    text = _BEARER.sub(r"\1***", text)
    return _SECRET_FIELD.sub(r"\1***", text)


def seconds_between(start: datetime, end: datetime) -> float:
    """``end - start`` in seconds."""
    return (end - start).total_seconds()


def relative(seconds: float) -> str:
    """``+1.234 s``, ``+2 min 03 s``, ``-0.500 s`` (before the alert)."""
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.3f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{sign}{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours} h {minutes:02d} min"


def duration(seconds: float | None) -> str:
    """A duration as a person reads it."""
    if seconds is None:
        return "—"
    return relative(seconds).lstrip("+")


@dataclass(frozen=True)
class TimelineEntry:
    """One state change or event, with its time relative to the alert."""

    at: datetime
    offset: str
    state: str
    tone: str
    detail: str
    kind: str  # state | event


def timeline(incident: Incident) -> list[TimelineEntry]:
    """Every event in the order it happened, the alert's start first."""
    start = incident.alert.starts_at
    entries = [TimelineEntry(start, relative(0), "alert", "bad", f"{incident.alert.name} started firing", "alert")]
    previous: IncidentState | None = None
    for event in sorted(incident.events, key=lambda e: e.at):
        kind = "state" if event.state is not previous else "event"
        previous = event.state
        entries.append(
            TimelineEntry(
                at=event.at,
                offset=relative(seconds_between(start, event.at)),
                state=event.state.value,
                tone=STATE_TONE.get(event.state, "info"),
                detail=event.detail,
                kind=kind,
            )
        )
    return entries


@dataclass(frozen=True)
class Milestones:
    """Reaction times of one incident, in seconds after the alert started."""

    incident_id: str
    app: str
    pushed: float | None
    healthy: float | None


def milestones(incident: Incident) -> Milestones:
    """When the rollback commit was pushed (entered syncing) and when the app was healthy again."""
    start = incident.alert.starts_at
    pushed = next((e.at for e in incident.events if e.state is S.syncing), None)
    healthy = next((e.at for e in incident.events if e.state is S.rolled_back), None)
    return Milestones(
        incident.id,
        incident.app,
        seconds_between(start, pushed) if pushed else None,
        seconds_between(start, healthy) if healthy else None,
    )


def total_seconds(incident: Incident) -> float | None:
    """From the alert to the last recorded event (the incident's duration so far)."""
    if not incident.events:
        return None
    return seconds_between(incident.alert.starts_at, max(e.at for e in incident.events))


@dataclass(frozen=True)
class DecisionView:
    """What the bot decided, the rule behind it, and who decided when a person did."""

    outcome: str
    rule: str
    mode: str
    policy: str
    person: str | None
    slack_message: str | None


_VERBS = {
    S.rolling_back: "roll back now",
    S.awaiting_approval: "propose the rollback to a person",
    S.suppressed: "do nothing (suppressed)",
    S.notified: "notify only",
    S.failed: "none: failed before deciding",
}


def _first_move(incident: Incident) -> str:
    """``"roll back now: a/v2 -> a/v1 (policy mode is auto)"``; ``"waiting"`` while nothing was decided."""
    for event in incident.events:
        if event.state is not S.received:
            return f"{_VERBS.get(event.state, event.state.value)}: {event.detail}"
    return "not decided yet"


# How decide() and the service word each rule at the start of an event (rollbackbot/core/decide.py).
_RULES = (
    ("debounce:", "debounce"),
    ("duplicate:", "duplicate"),
    ("cooldown:", "cooldown"),
    ("budget", "budget"),
    ("stale alert", "stale alert"),
    ("alert resolved before", "resolved before acting"),
    ("no verified target", "no verified target"),
    ("policy mode is ", "policy mode"),
)


def rules_applied(incident: Incident) -> list[str]:
    """The rules that decided, in the order they did: e.g. ``["debounce", "policy mode auto"]``."""
    found: list[str] = []
    for text in [e.detail for e in incident.events] + [incident.reason]:
        lowered = text.lower()
        for prefix, rule in _RULES:
            if prefix in lowered:
                name = (
                    f"policy mode {lowered.split(prefix, 1)[1].split()[0].strip('()')}"
                    if rule == "policy mode"
                    else rule
                )
                if name not in found:
                    found.append(name)
    return found or [f"policy mode {incident.mode}"]


def decision(incident: Incident, slack_message: str | None) -> DecisionView:
    """The decision and its rule (debounce, cooldown, budget, policy mode) and the Slack decision."""
    closed = decision_of(incident)
    return DecisionView(
        outcome=_first_move(incident),
        rule=" → ".join(rules_applied(incident)),
        mode=incident.mode,
        policy=incident.policy,
        person=decision_line(closed) if closed else None,
        slack_message=slack_message,
    )


@dataclass(frozen=True)
class ReleaseView:
    """One side of the plan: a release tag and what it ships."""

    tag: str
    revision: str
    model_digest: str
    data_version: str
    signature: str


def _release(
    tag: Mapping[str, Any] | None, fallback_tag: str | None, revision: str | None, verdict: str
) -> ReleaseView:
    trailers = dict(tag.get("trailers", {})) if tag else {}
    return ReleaseView(
        tag=str(tag.get("name")) if tag else (fallback_tag or "untagged"),
        revision=str(tag.get("commit")) if tag else (revision or ""),
        model_digest=str(trailers.get("Model-Digest", "—")),
        data_version=str(trailers.get("Data-Version", "—")),
        signature=verdict,
    )


@dataclass(frozen=True)
class PlanView:
    """The plan acted on: current and target release, every skipped tag and why."""

    branch: str
    head: str
    current: ReleaseView
    target: ReleaseView | None
    skipped: tuple[tuple[str, str], ...]
    diff_stat: str
    no_target_reason: str


def plan(incident: Incident) -> PlanView | None:
    """The plan view, or None when the incident never planned (suppressed early, notify mode)."""
    data = incident.plan
    if not data:
        return None
    current = data.get("current")
    target = data.get("target")
    return PlanView(
        branch=str(data.get("branch", "")),
        head=str(data.get("head", "")),
        current=_release(current, incident.from_ref.tag, incident.from_ref.revision, "deployed (not re-verified)"),
        target=_release(target, incident.to_ref.tag, incident.to_ref.revision, "verified: ssh signature good")
        if target
        else None,
        skipped=tuple((str(s.get("name", "")), str(s.get("reason", ""))) for s in data.get("skipped", ())),
        diff_stat=str(data.get("diff_stat", "")),
        no_target_reason=str(data.get("no_target_reason") or ""),
    )


@dataclass(frozen=True)
class ArgoView:
    """The Argo CD outcome: the revision synced, health as last reported, how long the sync took."""

    revision: str
    health: str
    seconds: float | None
    detail: str


def argo_outcome(incident: Incident) -> ArgoView | None:
    """None until the bot asked Argo CD to sync."""
    syncing = next((e for e in incident.events if e.state is S.syncing), None)
    if syncing is None:
        return None
    final = next((e for e in incident.events if e.state in (S.rolled_back, S.failed)), None)
    health = "in progress"
    if final is not None:
        health = "Healthy" if final.state is S.rolled_back else "not healthy"
    return ArgoView(
        revision=incident.rollback_commit or "",
        health=health,
        seconds=seconds_between(syncing.at, final.at) if final else None,
        detail=final.detail if final else syncing.detail,
    )


def verification(incident: Incident) -> str:
    """The verification after the rollback: the alert cleared, is still firing, or is being watched."""
    if incident.verification == "cleared":
        return "cleared: the alert resolved after the rollback"
    if incident.verification == "still firing":
        return "failed: the alert is still firing after the rollback"
    if incident.state is S.rolled_back and incident.verify_by:
        return f"watching: the alert must resolve by {incident.verify_by:%Y-%m-%d %H:%M:%S} UTC"
    return "not applicable" if incident.state is not S.rolled_back else "not checked"


@dataclass(frozen=True)
class ListFilter:
    """The list page's filters; empty fields match everything. The store filters app, state and
    since (like ``GET /api/incidents``); the policy is checked on the incidents it returns."""

    app: str = ""
    state: str = ""
    policy: str = ""
    since: datetime | None = None

    def keeps(self, incident: Incident) -> bool:
        """Whether ``incident`` passes the filter the store cannot apply (the policy)."""
        return not self.policy or incident.policy == self.policy


FetchPage = Callable[[int, "tuple[datetime, str] | None"], IncidentPage]


def filtered_page(
    fetch: FetchPage, chosen: ListFilter, after: tuple[datetime, str] | None, limit: int, scan: int
) -> tuple[list[Incident], tuple[datetime, str] | None]:
    """Up to ``limit`` incidents after ``after`` that ``chosen`` keeps, and where the next page starts.

    Keyset pages from the store, newest first, as the API pages; at most ``scan`` incidents are read
    for one page, so a rare policy cannot make one request read the whole table (the next page then
    starts where the scan stopped, possibly with fewer rows on this one).
    """
    found: list[Incident] = []
    read = 0
    while read < scan:
        page = fetch(min(max(limit, 50), scan - read), after)
        read += len(page.incidents)
        for incident in page.incidents:
            after = (incident.created_at, incident.id)
            if chosen.keeps(incident):
                found.append(incident)
                if len(found) == limit:
                    more = incident is not page.incidents[-1] or page.next_after is not None
                    return found, (after if more else None)
        if page.next_after is None:
            return found, None
        after = page.next_after
    return found, after


def distinct(values: Iterable[str]) -> list[str]:
    """Sorted distinct non-empty values, for filter choices."""
    return sorted({v for v in values if v})
