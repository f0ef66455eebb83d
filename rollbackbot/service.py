"""The one place core meets the ports: receive → decide → persist → act.

Every step reads the incident from the store, decides with pure core code, persists the new state
(compare-and-set) and only then acts, so a crash at any point resumes without acting twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rollbackbot.clock import Clock
from rollbackbot.core.alerts import Alert, AlertmanagerPayload
from rollbackbot.core.incidents import AlertRef, Incident, IncidentState, new_incident
from rollbackbot.core.model import target_to_dict
from rollbackbot.core.policy import Policy
from rollbackbot.core.policy_select import resolve_target, select_policy
from rollbackbot.errors import AlertRefused
from rollbackbot.intake import app_missing
from rollbackbot.logs import current_incident
from rollbackbot.metrics import INCIDENT_TRANSITIONS, REACTION_SECONDS
from rollbackbot.ports import ArgoCD, Chat, EvidenceSink, GitOpsRepo, IncidentStore, StaleIncident, Verdict
from rollbackbot.steps import Steps
from rollbackbot.workflow import Workflow, append_event

log = logging.getLogger("rollbackbot.service")
S = IncidentState


@dataclass(frozen=True)
class Received:
    """What the webhook answers: the incident ids the payload maps to."""

    incidents: list[str]
    created: int
    ignored: int
    unknown_apps: int = 0  # alerts refused because their app is not in the GitOps repo


class Service:
    """Receives alerts, drives each incident through its states, and takes human decisions."""

    def __init__(
        self,
        *,
        store: IncidentStore,
        git: GitOpsRepo,
        argocd: ArgoCD,
        policies: Sequence[Policy],
        clock: Clock,
        evidence: EvidenceSink | None = None,
        chat: Chat | None = None,
        max_concurrency: int = 8,
    ) -> None:
        self.store = store
        self.clock = clock
        self.chat = chat
        self.policies = list(policies)
        self._git = git
        self.workflow = Workflow(
            store=store,
            steps=Steps(git=git, argocd=argocd, clock=clock, evidence=evidence),
            policies={p.name: p for p in self.policies},
            clock=clock,
        )
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._holding: set[str] = set()  # incidents whose worker holds a slot right now
        self._stopping = False

    # ---- intake: fast, synchronous, no external calls but the store ----

    def receive(self, payload: AlertmanagerPayload) -> Received:
        """Map each alert to its incident (creating it once, in one transaction) and schedule the work."""
        ids: list[str] = []
        fresh: list[Incident] = []
        ignored = unknown = 0
        for alert in payload.alerts:
            policy = select_policy(self.policies, alert.labels)
            if policy is None:
                ignored += 1
                continue
            ended = alert.ends_at is not None and alert.ends_at <= self.clock.now()
            if not alert.firing or ended:  # a "firing" alert whose end lies in the past is over too
                ids.extend(self._record_resolution(alert))
                continue
            if app_missing(self._git, policy, alert.labels):
                unknown += 1  # junk: no incident, no metrics series, no git work
                continue
            incident = self._incident_for(alert, policy)
            ids.append(incident.id)
            fresh.append(incident)
        inserted = self.store.create_many(fresh)
        for incident in {i.id: i for i in fresh if i.id in inserted}.values():
            log.info("incident opened", extra={"incident_id": incident.id, "app": incident.app})
            INCIDENT_TRANSITIONS.labels(incident.app, incident.state.value).inc()
            if incident.state.terminal:
                self._tell(incident, None)
            else:
                self.schedule(incident.id)
        if unknown:
            log.info("alerts refused: their app is not in the GitOps repo", extra={"refused": unknown})
        return Received(list(dict.fromkeys(ids)), len(inserted), ignored, unknown)

    def _incident_for(self, alert: Alert, policy: Policy) -> Incident:
        ref = AlertRef(
            name=alert.name,
            fingerprint=alert.fingerprint,
            starts_at=alert.starts_at,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            generator_url=alert.generator_url,
        )
        now, mode = self.clock.now(), policy.spec.mode.value
        try:
            target = resolve_target(policy, alert.labels)
        except AlertRefused as exc:
            # Recorded, never acted on: a label that fails the name check is a red flag in itself.
            refused = new_incident(app="unresolved", policy=policy.name, mode=mode, alert=ref, target={}, now=now)
            return refused.with_state(S.suppressed, now, f"alert refused: {exc}")
        return new_incident(
            app=target.app, policy=policy.name, mode=mode, alert=ref, target=target_to_dict(target), now=now
        )

    def _record_resolution(self, alert: Alert) -> list[str]:
        ids = []
        for incident in self.store.find_by_alert(alert.fingerprint, alert.starts_at):
            ids.append(incident.id)
            if self.store.mark_resolved(incident.id, alert.ends_at or self.clock.now()):
                append_event(self.store, incident.id, self.clock.now(), "alert resolved")
                self.wake(incident.id)  # debounce or verification may be waiting for exactly this
        return ids

    # ---- human decisions (Slack buttons, CLI) ----

    def approve(self, incident_id: str, approver: str) -> Verdict:
        """awaiting_approval → approved, once: a second click or replica gets acted=False."""
        return self._decide_by_human(incident_id, S.approved, approver)

    def reject(self, incident_id: str, approver: str) -> Verdict:
        """awaiting_approval → rejected, once."""
        return self._decide_by_human(incident_id, S.rejected, approver)

    def record_event(self, incident_id: str, detail: str) -> None:
        """Note something on the incident without changing its state (e.g. a refused click)."""
        append_event(self.store, incident_id, self.clock.now(), detail)

    def _decide_by_human(self, incident_id: str, to: IncidentState, approver: str) -> Verdict:
        incident = self.store.get(incident_id)
        if incident is None:
            return Verdict(False, None, f"no incident {incident_id}")
        if incident.state is not S.awaiting_approval:
            return Verdict(False, incident, _already_decided(incident))
        verb = "approved" if to is S.approved else "rejected"
        updated = incident.with_approver(approver).with_state(to, self.clock.now(), f"{verb} by {approver}")
        try:
            self.store.save(updated, S.awaiting_approval)
        except StaleIncident:
            latest = self.store.get(incident_id)
            return Verdict(False, latest, _already_decided(latest) if latest else "gone")
        self._after_save(incident, updated)
        self.wake(incident_id)
        self.schedule(incident_id)
        return Verdict(True, updated, f"{verb} by {approver}")

    # ---- work: one task per incident, resumable ----

    def schedule(self, incident_id: str) -> None:
        """Drive the incident in the background unless that is already happening here."""
        if self._stopping or incident_id in self._running:
            return
        task = asyncio.get_running_loop().create_task(self._drive(incident_id))
        self._running[incident_id] = task
        task.add_done_callback(lambda _t: self._running.pop(incident_id, None))

    def wake(self, incident_id: str) -> None:
        """Cut short a wait (debounce, approval deadline, verification) so the incident is looked at now."""
        if event := self._wake.pop(incident_id, None):
            event.set()  # popped: until the worker runs again it counts as busy, not asleep (idle())

    async def start(self) -> None:
        """Resume every unfinished incident and pending verification (after a restart or crash)."""
        for incident in self.store.unfinished():
            log.info("resuming incident", extra={"incident_id": incident.id, "state": incident.state.value})
            self.schedule(incident.id)
        for incident in self.store.recent(500):
            if incident.state is S.rolled_back and incident.verify_by and not incident.verification:
                self.schedule(incident.id)

    async def stop(self) -> None:
        self._stopping = True
        tasks = [*self._running.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until every incident is done or waiting on a timer, and no message is in flight (tests)."""
        while self._background or any(i not in self._wake for i in self._running):
            await asyncio.sleep(0.005)

    async def _drive(self, incident_id: str) -> None:
        token = current_incident.set(incident_id)
        try:
            await self._slots.acquire()
            self._holding.add(incident_id)
            try:
                await self.run_incident(incident_id)
            finally:
                if incident_id in self._holding:
                    self._holding.discard(incident_id)
                    self._slots.release()
        except Exception:
            log.exception("incident worker crashed; it resumes at the next start")
        finally:
            current_incident.reset(token)

    async def run_incident(self, incident_id: str, *, follow_verification: bool = True) -> Incident | None:
        """Advance the incident step by step until it is terminal or waits for a human."""
        while True:
            incident = self.store.get(incident_id)
            if incident is None:
                return None
            if incident.state.terminal and not follow_verification:
                return incident
            wait_until = self.workflow.wait_until(incident)
            if wait_until is None:
                return incident
            if wait_until > self.clock.now():
                await self._sleep_until(incident_id, wait_until)
                continue
            updated = await self.workflow.step(incident)
            if updated is incident:
                return incident
            try:
                self.store.save(updated, incident.state)
            except StaleIncident:
                log.info("another worker or a human moved the incident; re-reading")
                continue
            self._after_save(incident, updated)
            await asyncio.sleep(0)  # let webhook requests in between steps: answering fast comes first

    def _after_save(self, before: Incident, after: Incident) -> None:
        self.workflow.saved(before, after)
        if after.state is not before.state:
            INCIDENT_TRANSITIONS.labels(after.app, after.state.value).inc()
            elapsed = (self.clock.now() - after.created_at).total_seconds()
            if after.state is S.syncing:
                REACTION_SECONDS.labels("pushed").observe(elapsed)
            elif after.state is S.rolled_back:
                REACTION_SECONDS.labels("healthy").observe(elapsed)
            log.info(
                f"{before.state.value} -> {after.state.value}",
                extra={"incident_id": after.id, "state": after.state.value, "detail": after.events[-1].detail},
            )
            self._tell(after, before.state)
        elif after.verification != before.verification and after.verification == "still firing":
            self._tell(after, before.state)

    def _tell(self, incident: Incident, previous: IncidentState | None) -> None:
        if self.chat is None or self._stopping:
            return
        # Fire and forget: a chat outage must never delay a rollback.
        task = asyncio.get_running_loop().create_task(self._send(incident, previous))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send(self, incident: Incident, previous: IncidentState | None) -> None:
        assert self.chat is not None
        try:
            await self.chat.incident_changed(incident, previous)
        except Exception:
            log.exception("chat notification failed", extra={"incident_id": incident.id})

    async def _sleep_until(self, incident_id: str, when: datetime) -> None:
        event = self._wake.setdefault(incident_id, asyncio.Event())
        event.clear()
        seconds = max(0.0, (when - self.clock.now()).total_seconds())
        # A waiting incident (debounce, approval deadline, verification window) gives its slot back,
        # else eight of them would starve every new rollback.
        holding = incident_id in self._holding
        if holding:
            self._holding.discard(incident_id)
            self._slots.release()
        try:
            await asyncio.wait_for(event.wait(), timeout=seconds)
        except TimeoutError:
            pass
        finally:
            self._wake.pop(incident_id, None)
            if holding:
                await self._slots.acquire()
                self._holding.add(incident_id)


def _already_decided(incident: Incident) -> str:
    last = incident.events[-1]
    who = f" by {incident.approved_by}" if incident.approved_by else ""
    return f"already {incident.state.value}{who} at {last.at:%Y-%m-%d %H:%M:%S}Z"
