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
from rollbackbot.core.decide import Action, decide
from rollbackbot.core.incidents import AlertRef, Incident, IncidentState, new_incident
from rollbackbot.core.model import target_from_dict, target_to_dict
from rollbackbot.core.policy import Policy
from rollbackbot.core.policy_select import resolve_target, select_policy
from rollbackbot.errors import AlertRefused
from rollbackbot.logs import current_incident
from rollbackbot.ports import ArgoCD, EvidenceSink, GitOpsRepo, IncidentStore, StaleIncident
from rollbackbot.steps import Steps, rules_of

log = logging.getLogger("rollbackbot.service")
S = IncidentState


@dataclass(frozen=True)
class Received:
    """What the webhook answers: the incident ids the payload maps to."""

    incidents: list[str]
    created: int
    ignored: int


class Service:
    """Receives alerts and drives each incident through its states."""

    def __init__(
        self,
        *,
        store: IncidentStore,
        git: GitOpsRepo,
        argocd: ArgoCD,
        policies: Sequence[Policy],
        clock: Clock,
        evidence: EvidenceSink | None = None,
        max_concurrency: int = 8,
    ) -> None:
        self.store = store
        self.clock = clock
        self.policies = list(policies)
        self._by_name = {p.name: p for p in self.policies}
        self.steps = Steps(git=git, argocd=argocd, clock=clock, evidence=evidence)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_concurrency)
        self._stopping = False

    # ---- intake: fast, synchronous, no external calls but the store ----

    def receive(self, payload: AlertmanagerPayload) -> Received:
        """Map each alert to its incident (creating it once) and schedule the work."""
        ids: list[str] = []
        created = ignored = 0
        for alert in payload.alerts:
            policy = select_policy(self.policies, alert.labels)
            if policy is None:
                ignored += 1
                continue
            if not alert.firing:
                ids.extend(self._record_resolution(alert))
                continue
            incident = self._incident_for(alert, policy)
            ids.append(incident.id)
            if self.store.create(incident):
                created += 1
                log.info(
                    "incident opened",
                    extra={"incident_id": incident.id, "app": incident.app, "policy": policy.name},
                )
                if not incident.state.terminal:
                    self.schedule(incident.id)
        return Received(incidents=ids, created=created, ignored=ignored)

    def _incident_for(self, alert: Alert, policy: Policy) -> Incident:
        ref = AlertRef(
            name=alert.name,
            fingerprint=alert.fingerprint,
            starts_at=alert.starts_at,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            generator_url=alert.generator_url,
        )
        now = self.clock.now()
        try:
            target = resolve_target(policy, alert.labels)
        except AlertRefused as exc:
            # Recorded, never acted on: a label that fails the name check is a red flag in itself.
            refused = new_incident(
                app="unresolved",
                policy=policy.name,
                mode=policy.spec.mode.value,
                alert=ref,
                target={},
                now=now,
            )
            return refused.with_state(S.suppressed, now, f"alert refused: {exc}")
        return new_incident(
            app=target.app,
            policy=policy.name,
            mode=policy.spec.mode.value,
            alert=ref,
            target=target_to_dict(target),
            now=now,
        )

    def _record_resolution(self, alert: Alert) -> list[str]:
        ids = []
        for incident in self.store.find_by_alert(alert.fingerprint, alert.starts_at):
            ids.append(incident.id)
            if incident.resolved_at is None:
                try:
                    self.store.save(incident.with_resolved(alert.ends_at or self.clock.now()), incident.state)
                except StaleIncident:
                    log.info(
                        "resolution raced a state change; the next step sees it",
                        extra={"incident_id": incident.id},
                    )
        return ids

    # ---- work: one task per incident, resumable ----

    def schedule(self, incident_id: str) -> None:
        """Drive the incident in the background unless that is already happening here."""
        if self._stopping or incident_id in self._running:
            return
        task = asyncio.get_running_loop().create_task(self._drive(incident_id))
        self._running[incident_id] = task
        task.add_done_callback(lambda _t: self._running.pop(incident_id, None))

    async def start(self) -> None:
        """Resume every unfinished incident (after a restart or crash)."""
        for incident in self.store.unfinished():
            log.info("resuming incident", extra={"incident_id": incident.id, "state": incident.state.value})
            self.schedule(incident.id)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until no incident is being driven (tests, CLI)."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def _drive(self, incident_id: str) -> None:
        token = current_incident.set(incident_id)
        try:
            async with self._slots:
                await self.run_incident(incident_id)
        except Exception:
            log.exception("incident worker crashed; it resumes at the next start")
        finally:
            current_incident.reset(token)

    async def run_incident(self, incident_id: str) -> Incident | None:
        """Advance the incident step by step until it is terminal or has to wait."""
        while True:
            incident = self.store.get(incident_id)
            if incident is None or incident.state.terminal:
                return incident
            if incident.state is S.awaiting_approval:
                return incident
            if incident.not_before and incident.not_before > self.clock.now():
                await self._sleep_until(incident.not_before)
                continue
            updated = await self._step(incident)
            try:
                self.store.save(updated, incident.state)
            except StaleIncident:
                log.info("another worker moved the incident; re-reading")
                continue
            if updated.state is not incident.state:
                log.info(
                    f"{incident.state.value} -> {updated.state.value}",
                    extra={"state": updated.state.value, "detail": updated.events[-1].detail},
                )

    async def _sleep_until(self, when: datetime) -> None:
        await asyncio.sleep(max(0.0, (when - self.clock.now()).total_seconds()))

    async def _step(self, incident: Incident) -> Incident:
        now = self.clock.now()
        policy = self._by_name.get(incident.policy)
        if policy is None:
            return incident.with_state(S.failed, now, f"policy {incident.policy!r} is no longer loaded")
        if incident.state is S.received:
            return await self._decide(incident, policy)
        if incident.state is S.approved:
            return incident.with_state(S.rolling_back, now, f"approved by {incident.approved_by}")
        if incident.state is S.rolling_back:
            if incident.evidence_url is None and incident.rollback_commit is None:
                captured = await self.steps.capture_evidence(incident, policy)
                if captured is not incident:
                    return captured  # persisted before the commit is written
            return await self.steps.commit(incident)
        if incident.state is S.syncing:
            return await self.steps.sync(incident, policy)
        raise AssertionError(f"no step for state {incident.state}")

    async def _decide(self, incident: Incident, policy: Policy) -> Incident:
        now = self.clock.now()
        rules = rules_of(policy)
        history = self.store.app_history(incident.app, incident.id, now - rules.budget_per)
        decision = decide(
            rules,
            alert_firing=incident.resolved_at is None,
            alert_started=incident.alert.starts_at,
            now=now,
            history=history,
        )
        if decision.action is Action.wait:
            return incident.with_not_before(decision.not_before).with_event(now, decision.reason)
        if decision.action in (Action.rollback, Action.propose):
            return await self.steps.plan(incident, target_from_dict(incident.target), decision)
        if decision.action is Action.notify:
            return incident.with_state(S.notified, now, decision.reason)
        return incident.with_state(S.suppressed, now, decision.reason)
