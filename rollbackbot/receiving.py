"""Deciding what a webhook's alerts become: incidents opened once, resolutions recorded, work scheduled.

Two halves, so the store work can run off the event loop (the inbox drainer runs ``decide`` in a
thread) while scheduling stays on it:

- ``decide`` (store only, thread-safe): inserts the incidents of a payload in one transaction
  (``INSERT ... ON CONFLICT DO NOTHING``: a re-delivery, or the same inbox row decided again
  after a crash, inserts nothing), records resolutions, re-opens a failed incident for a
  re-delivery, and counts.
- ``act`` (on the event loop): schedules the workers, wakes waiting ones, tells the chat.

What each alert maps to is ``core.alert_plan``: the same function gave the webhook its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from rollbackbot.clock import Clock
from rollbackbot.core.alert_plan import REFUSED_APP, AlertKind, AlertPlan
from rollbackbot.core.alerts import Alert
from rollbackbot.core.incidents import (
    AlertRef,
    Incident,
    IncidentState,
    incident_policy,
    new_incident,
    policy_to_document,
)
from rollbackbot.core.model import target_to_dict
from rollbackbot.core.policy import Policy
from rollbackbot.core.retries import RetryBudget, budget_for, reopen
from rollbackbot.metrics import ALERTS_RECEIVED, INCIDENT_TRANSITIONS
from rollbackbot.ports import IncidentStore, StaleIncident
from rollbackbot.workflow import Workflow, append_event

log = logging.getLogger("rollbackbot.service")
INSERT_CHUNK = 25  # incidents per insert transaction while deciding
S = IncidentState


@dataclass(frozen=True)
class Received:
    """What the webhook answers: the incident ids the payload maps to."""

    incidents: list[str]
    created: int
    ignored: int
    unknown_apps: int = 0  # alerts refused because their app is not in the GitOps repo


@dataclass
class Decided:
    """The outcome of ``decide``: what was stored, and what ``act`` has to do about it on the loop."""

    received: Received
    opened: list[Incident] = field(default_factory=list)  # inserted by this call
    reopened: list[tuple[Incident, Incident]] = field(default_factory=list)  # (failed, re-opened)
    resolved: list[tuple[str, bool]] = field(default_factory=list)  # (newly resolved incident, look at it now)


class AlertIntake:
    """``decide`` then ``act`` for one payload's plans."""

    def __init__(
        self,
        store: IncidentStore,
        *,
        workflow: Workflow,
        clock: Clock,
        retry: RetryBudget,
        schedule: Callable[[str], None],
        wake: Callable[[str], None],
        opened_terminal: Callable[[Incident], None],
        after_save: Callable[[Incident, Incident], None],
    ) -> None:
        self.store = store
        self.workflow = workflow
        self.clock = clock
        self.retry = retry
        self._schedule = schedule
        self._wake = wake
        self._opened_terminal = opened_terminal
        self._after_save = after_save
        self._documents: dict[int, tuple[Policy, dict[str, Any]]] = {}  # read only once made: shared by incidents

    def decide(self, plans: list[AlertPlan], accepted_at: datetime, answered: Collection[str] | None = None) -> Decided:
        """Store what ``plans`` say; ``answered``: the ids the webhook answered (others were unknown apps then)."""
        return self.decide_many([(plans, accepted_at, answered)])

    def decide_many(self, webhooks: Sequence[tuple[list[AlertPlan], datetime, Collection[str] | None]]) -> Decided:
        """``decide`` for several webhooks in order, their incidents inserted in as few transactions as order allows.

        A resolution sees every incident of the webhooks before it: the inserts pending then go first.
        """
        ids: list[str] = []
        fresh: dict[str, tuple[Incident, datetime]] = {}  # the first delivery wins, as the database's insert would
        tried: set[str] = set()
        inserted: set[str] = set()
        ignored = unknown = resolutions = 0
        resolved: list[tuple[str, bool]] = []
        for plans, accepted_at, answered in webhooks:
            for plan in plans:
                if plan.kind is AlertKind.unmatched:
                    ignored += 1
                elif plan.kind is AlertKind.resolution:
                    resolutions += 1
                    inserted |= self._insert([i for i, _ in fresh.values() if i.id not in tried], tried)
                    found, marked = self._record_resolution(plan.alert)
                    ids.extend(found)
                    resolved += marked
                elif plan.kind is AlertKind.unknown_app or (answered is not None and plan.incident_id not in answered):
                    unknown += 1  # junk: no incident, no metrics series, no git work
                else:
                    incident = self._incident_for(plan, accepted_at)
                    ids.append(incident.id)
                    fresh.setdefault(incident.id, (incident, accepted_at))
        inserted |= self._insert([i for i, _ in fresh.values() if i.id not in tried], tried)
        opened = [incident for incident, _ in fresh.values() if incident.id in inserted]
        for incident in opened:
            log.info("incident opened", extra={"incident_id": incident.id, "app": incident.app})
            INCIDENT_TRANSITIONS.labels(incident.app, incident.state.value).inc()
        again = sorted((i for i in fresh.values() if i[0].id not in inserted), key=lambda item: item[0].id)
        reopened = [pair for incident, at in again if (pair := self._reopen(incident.id, at)) is not None]
        if unknown:
            log.info("alerts refused: their app is not in the GitOps repo", extra={"refused": unknown})
        ALERTS_RECEIVED.labels("new").inc(len(opened))
        ALERTS_RECEIVED.labels("duplicate").inc(len(again))
        ALERTS_RECEIVED.labels("unmatched").inc(ignored)
        ALERTS_RECEIVED.labels("unknown_app").inc(unknown)
        ALERTS_RECEIVED.labels("resolved").inc(resolutions)
        received = Received(list(dict.fromkeys(ids)), len(opened), ignored, unknown)
        return Decided(received, opened, reopened, resolved)

    def _insert(self, pending: list[Incident], tried: set[str]) -> set[str]:
        """Insert ``pending`` (each id tried once per call of decide_many), ``INSERT_CHUNK`` per transaction.

        SQLite has one write lock: an incident step saving on the event loop waits for the drainer's
        transaction (and SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20, 25 … ms between tries), so a
        transaction of 400 incidents stalled answering for ~100 ms; 25 at a time, a few ms.
        """
        tried.update(incident.id for incident in pending)
        inserted: set[str] = set()
        for start in range(0, len(pending), INSERT_CHUNK):
            inserted |= self.store.create_many(pending[start : start + INSERT_CHUNK])
        return inserted

    def act(self, decided: Decided) -> None:
        """Schedule, wake and tell (on the event loop) what ``decide`` stored."""
        for incident in decided.opened:
            if incident.state.terminal:
                self._opened_terminal(incident)
            else:
                self._schedule(incident.id)
        for stored, reopened in decided.reopened:
            self._after_save(stored, reopened)
            self._schedule(reopened.id)
        for incident_id, look_now in decided.resolved:
            self._wake(incident_id)  # debounce or verification may be waiting for exactly this
            if look_now:
                self._schedule(incident_id)  # its waiting worker may be on another replica: look now

    def _incident_for(self, plan: AlertPlan, now: datetime) -> Incident:
        alert, policy = plan.alert, plan.policy
        assert policy is not None
        ref = AlertRef(
            name=alert.name,
            fingerprint=alert.fingerprint,
            starts_at=alert.starts_at,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            generator_url=alert.generator_url,
        )
        mode = policy.spec.mode.value
        if plan.kind is AlertKind.refused or plan.target is None:
            # Recorded, never acted on: a label that fails the name check is a red flag in itself.
            refused = new_incident(app=REFUSED_APP, policy=policy.name, mode=mode, alert=ref, target={}, now=now)
            return refused.with_state(S.suppressed, now, f"alert refused: {plan.refusal}")
        target = plan.target
        opened = new_incident(
            app=target.app, policy=policy.name, mode=mode, alert=ref, target=target_to_dict(target), now=now
        )
        # Incident.with_policy, with the policy's document made once per policy, not once per alert.
        return replace(opened, policy=policy.name, policy_document=self._document(policy))

    def _document(self, policy: Policy) -> dict[str, Any]:
        kept = self._documents.get(id(policy))
        if kept is None or kept[0] is not policy:
            kept = self._documents[id(policy)] = (policy, policy_to_document(policy))
        return kept[1]

    def _reopen(self, incident_id: str, accepted_at: datetime) -> tuple[Incident, Incident] | None:
        """The alert still fires and its incident failed on a transient error: a new attempt, if budget is left.

        Only for a failure recorded before the webhook was accepted: an inbox row decided a second
        time (after a crash) must not re-open an incident that failed after the delivery it carries.
        """
        stored = self.store.get(incident_id)
        if stored is None or stored.state is not S.failed:
            return None
        failed_at = next((e.at for e in reversed(stored.events) if e.state is S.failed), None)
        if failed_at is not None and failed_at > accepted_at:
            return None
        budget = budget_for(self.retry, incident_policy(stored, self.workflow.policies))
        reopened = reopen(stored, budget, self.clock.now())
        if reopened is None:
            return None
        try:
            self.store.save(reopened, S.failed)
        except StaleIncident:
            return None  # another delivery or replica re-opened it first
        log.info("re-opened after a transient failure", extra={"incident_id": incident_id})
        return stored, reopened

    def _record_resolution(self, alert: Alert) -> tuple[list[str], list[tuple[str, bool]]]:
        """The alert's incidents, and those it newly resolved (with: is a worker waiting on it)."""
        found, marked = [], []
        for incident in self.store.find_by_alert(alert.fingerprint, alert.starts_at):
            found.append(incident.id)
            if self.store.mark_resolved(incident.id, alert.ends_at or self.clock.now()):
                append_event(self.store, incident.id, self.clock.now(), "alert resolved")
                marked.append((incident.id, self.workflow.wait_until(incident) is not None))
        return found, marked
