"""The one place core meets the ports: receive → decide → persist → act.

Every step reads the incident from the store, decides with pure core code, persists the new state
(compare-and-set) and only then acts, so a crash at any point resumes without acting twice.

Never stuck: every error a step raises ends in a recorded outcome (``errors.classify``).
- The store unavailable (SQLite locked by another process, disk full, connection lost): the worker
  waits with capped exponential backoff until the store answers again, then carries on.
- A transient error (connection reset, 5xx, timeout) in plan, evidence, commit or sync: retried
  with backoff and jitter within the incident's retry budget (``core.retries``), each retry an
  event; past the budget the incident fails, and a re-delivery of the still-firing alert re-opens
  it as a new attempt (ROLLBACKBOT_RETRY_BUDGET_SECONDS, ROLLBACKBOT_RETRY_ATTEMPTS, policy ``retry``).
- Anything else: the incident ends ``failed`` with "unexpected error: <Class>: <message>".
- A watchdog re-drives every unfinished incident that is due but has no worker (another replica
  died, a worker was lost) and exports their count as ``rollbackbot_incidents_stalled``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from rollbackbot.adapters.http_fetch import fetch_capped
from rollbackbot.canary import CanaryRollout, canary_quiet_seconds
from rollbackbot.clock import Clock
from rollbackbot.core.alert_plan import AlertPlanner, answer_ids
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incidents import Incident, IncidentState, incident_policy
from rollbackbot.core.overdue import overdue_by_state
from rollbackbot.core.policy import Policy
from rollbackbot.core.retries import RetryBudget, after_transient, backoff_delay, budget_for
from rollbackbot.core.shadow import END_REQUESTED, shadow_on_since
from rollbackbot.errors import Fault, classify, describe
from rollbackbot.forensics import Fetch
from rollbackbot.inbox import Inbox
from rollbackbot.intake import known_apps
from rollbackbot.leasing import DEFAULT_LEASE_SECONDS, Leases
from rollbackbot.logs import current_incident
from rollbackbot.metrics import INCIDENT_TRANSITIONS, INCIDENTS_STALLED, REACTION_SECONDS
from rollbackbot.ports import (
    ArgoCD,
    Chat,
    EvidenceSink,
    GitOpsRepo,
    InboxRow,
    InboxRows,
    IncidentStore,
    Lease,
    LeaseLost,
    StaleIncident,
    Verdict,
)
from rollbackbot.prmode import PullRequestMode
from rollbackbot.receiving import AlertIntake, Decided, Received
from rollbackbot.steps import Steps
from rollbackbot.workflow import Workflow, append_event

log = logging.getLogger("rollbackbot.service")
T = TypeVar("T")
S = IncidentState
MAX_WAITING_FOR_SLOT = 64  # tasks waiting for a worker slot; incidents scheduled beyond wait in a queue of ids


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
        retry: RetryBudget | None = None,
        watchdog_seconds: float | None = 30.0,
        watchdog_grace: float = 120.0,
        store_backoff_max: float = 30.0,
        canary: CanaryRollout | None = None,
        replica: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        pull_requests: PullRequestMode | None = None,
        fetch: Fetch = fetch_capped,
        inbox_rows: InboxRows | None = None,
    ) -> None:
        """``inbox_rows``: the durable inbox's table; by default the store's own (``store.inbox``), if it has one."""
        self.store = store
        self.leases = Leases(store, replica, lease_seconds)
        self.retry = retry or RetryBudget()
        self.watchdog_seconds = watchdog_seconds
        self.watchdog_grace = watchdog_grace
        self.store_backoff_max = store_backoff_max
        self.clock = clock
        self.chat = chat
        self.policies = list(policies)
        self._git = git
        self.workflow = Workflow(
            store=store,
            steps=Steps(git=git, argocd=argocd, clock=clock, evidence=evidence, fetch=fetch, canary=canary),
            policies={p.name: p for p in self.policies},
            clock=clock,
            pull_requests=pull_requests,
        )
        self.workflow.noted = self._noted  # canary steps reach the Slack thread as they happen
        self.workflow.store_call = self._store_call
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._holding: set[str] = set()  # incidents whose worker holds a slot right now
        self._starting: set[str] = set()  # tasks created, waiting for their first slot
        self._queued: dict[str, None] = {}  # scheduled, no task yet (more than MAX_WAITING_FOR_SLOT waiting)
        self._stopping = False
        self._draining = False  # shutdown began: no new work, steps in flight finish (drain())
        self._rng = random.Random()
        self._store_waits: set[str] = set()  # incidents whose worker waits for the store to come back
        self._retrying: set[str] = set()  # incidents backing off before a retry
        self._watchdog: asyncio.Task[None] | None = None
        self.planner = AlertPlanner(self.policies)
        self.intake = AlertIntake(
            store,
            workflow=self.workflow,
            clock=clock,
            retry=self.retry,
            schedule=self.schedule,
            wake=self.wake,
            opened_terminal=lambda incident: self._tell(incident, None),
            after_save=self._after_save,
        )
        rows = inbox_rows if inbox_rows is not None else getattr(store, "inbox", None)
        self.inbox = (
            (
                Inbox(rows, self._decide_rows, self.intake.act, now=clock.now, replica=self.leases.owner)
                if rows is not None
                else None
            )
            if rows is not None
            else None
        )

    # ---- intake: fast, synchronous, no external calls but the store ----

    def receive(self, payload: AlertmanagerPayload) -> Received:
        """Map each alert to its incident (creating it once, in one transaction) and schedule the work, now.

        The webhook does not call this: it appends to the inbox and the drainer decides
        (``rollbackbot.inbox``); the CLI, the demo and tests use it directly.
        """
        now = self.clock.now()
        decided = self.intake.decide(self.planner.plan_all(payload.alerts, now, known_apps(self._git)), now)
        self.intake.act(decided)
        return decided.received

    async def accept(self, payload: AlertmanagerPayload, body: bytes) -> list[str]:
        """The webhook's intake: the incident ids ``payload`` maps to, once its ``body`` is durably in the inbox.

        Raises StoreUnavailable when it could not be stored (nothing was). Without an inbox, decides now.
        """
        if self.inbox is None:
            return self.receive(payload).incidents
        now = self.clock.now()
        answer = answer_ids(self.planner.plan_all(payload.alerts, now, known_apps(self._git)))
        await self.inbox.append(now, body, answer)
        return answer

    def _decide_rows(self, rows: Sequence[InboxRow]) -> Decided:
        """The drainer's half of intake (its thread): the same plans the webhooks were answered with, stored."""
        webhooks = []
        for row in rows:
            payload = AlertmanagerPayload.model_validate_json(row.body)
            plans = self.planner.plan_all(payload.alerts, row.accepted_at)  # unknown apps: not in row.answer
            webhooks.append((plans, row.accepted_at, set(row.answer)))
        return self.intake.decide_many(webhooks)

    async def caught_up(self) -> bool:
        """Read-your-writes: every webhook this process accepted before the call is decided (bounded wait)."""
        return True if self.inbox is None else await self.inbox.caught_up()

    def overdue_by_state(self, grace: timedelta) -> dict[str, int]:
        """Non-terminal incidents past their deadline, by state (gauge ``rollbackbot_incidents_overdue``)."""
        sync_timeouts = {name: policy.spec.sync.timeout for name, policy in self.workflow.policies.items()}
        return overdue_by_state(self.store.unfinished(), sync_timeouts, now=self.clock.now(), grace=grace)

    # ---- human decisions (Slack buttons, CLI) ----

    def approve(self, incident_id: str, approver: str) -> Verdict:
        """awaiting_approval → approved, once: a second click or replica gets acted=False."""
        return self._decide_by_human(incident_id, S.approved, approver)

    def reject(self, incident_id: str, approver: str) -> Verdict:
        """awaiting_approval → rejected, once."""
        return self._decide_by_human(incident_id, S.rejected, approver)

    def end_shadow(self, incident_id: str, requested_by: str) -> Verdict:
        """A person asks to end the incident's shadow now (Slack *End shadow now*); once per shadow."""
        incident = self.store.get(incident_id)
        if incident is None:
            return Verdict(False, None, f"no incident {incident_id}")
        since = shadow_on_since(incident.events)
        if since is None:
            return Verdict(False, incident, "no shadow is on for this incident; nothing was changed")
        asked = next((e for e in incident.events if e.at >= since and e.detail.startswith(END_REQUESTED)), None)
        if asked is not None:
            return Verdict(False, incident, f"already asked: {asked.detail} at {asked.at:%Y-%m-%d %H:%M:%S}Z")
        append_event(self.store, incident_id, self.clock.now(), f"{END_REQUESTED} {requested_by}")
        self.wake(incident_id)
        self.schedule(incident_id)
        return Verdict(True, self.store.get(incident_id), f"shadow removal asked by {requested_by}")

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
        if self._stopping or self._draining or incident_id in self._running or incident_id in self._queued:
            return
        if len(self._starting) >= MAX_WAITING_FOR_SLOT:
            # An alert storm: thousands of tasks waiting for one of the slots would cost ~5 kB each;
            # an id in a queue costs a hundred bytes. Started in order as slots are taken.
            self._queued[incident_id] = None
            return
        self._start_task(incident_id)

    def _start_task(self, incident_id: str) -> None:
        self._starting.add(incident_id)
        task = asyncio.get_running_loop().create_task(self._drive(incident_id))
        self._running[incident_id] = task
        task.add_done_callback(lambda _t: self._running.pop(incident_id, None))

    def _started(self, incident_id: str) -> None:
        """The incident's task took a slot (or ended without one): start queued ones in its place."""
        self._starting.discard(incident_id)
        while self._queued and len(self._starting) < MAX_WAITING_FOR_SLOT and not (self._stopping or self._draining):
            queued = next(iter(self._queued))
            del self._queued[queued]
            if queued not in self._running:
                self._start_task(queued)

    def look_now(self, incident_id: str) -> None:
        """A forge event arrived for the incident: end its wait and drive it here (``/forge/events``)."""
        self.wake(incident_id)
        self.schedule(incident_id)

    def wake(self, incident_id: str) -> None:
        """Cut short a wait (debounce, approval deadline, verification) so the incident is looked at now."""
        if event := self._wake.pop(incident_id, None):
            event.set()  # popped: until the worker runs again it counts as busy, not asleep (idle())

    async def start(self) -> None:
        """Resume every unfinished incident and pending verification (after a restart or crash)."""
        if dead := self.leases.find_dead_here():  # a crash and a restart on this host: no need to wait out its leases
            log.info("resuming the incidents of an earlier process on this host", extra={"replicas": sorted(dead)})
        for incident in self.store.unfinished():
            log.info("resuming incident", extra={"incident_id": incident.id, "state": incident.state.value})
            self.schedule(incident.id)
        for incident in self.store.recent(500):
            # A pending verification, or a shadow still to be removed at its ttl (core/shadow.py).
            if incident.state is S.rolled_back and self.workflow.wait_until(incident) is not None:
                self.schedule(incident.id)
        if self.watchdog_seconds and self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch(self.watchdog_seconds))
        if self.inbox is not None:
            self.inbox.start()  # webhooks accepted by an earlier process first

    @property
    def accepting(self) -> bool:
        """False once shutdown began (drain()): the webhook refuses new alerts so Alertmanager re-delivers."""
        return not self._draining

    def replace_policies(self, policies: Sequence[Policy]) -> None:
        """Use a reloaded policy set for new alerts; incidents in flight keep the policy stored with them."""
        self.policies = list(policies)
        self.workflow.policies = {p.name: p for p in self.policies}
        self.planner = AlertPlanner(self.policies)

    async def drain(self, grace_seconds: float) -> bool:
        """Take no new work and let each step in flight finish and persist, for at most ``grace_seconds``.

        A waiting incident stops waiting; every incident stops after its current step and resumes from
        that persisted state at the next start. True when all work ended within the grace period.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        self._draining = True  # the webhook answers 503 from now on
        if self.inbox is not None and not await self.inbox.caught_up(grace_seconds):
            log.warning("accepted webhooks not decided within the grace period stay in the inbox for the next start")
        for incident_id in list(self._wake):
            self.wake(incident_id)
        while pending := {*self._running.values(), *self._background}:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        return True

    async def stop(self) -> None:
        self._stopping = True
        self._queued.clear()  # stored as they are; resumed at the next start
        if self.inbox is not None:
            await self.inbox.stop()
        await self.leases.stop()
        tasks = [*self._running.values(), *self._background]
        if self._watchdog is not None:
            tasks.append(self._watchdog)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def working(self) -> bool:
        """An incident is being driven right now (not only waiting on a timer or a human)."""
        return bool(self._queued) or any(i not in self._wake or i in self._retrying for i in self._running)

    async def idle(self) -> None:
        """Wait until every incident is done or waiting on a timer, and no message is in flight (tests)."""
        while self._background or self.working or (self.inbox is not None and self.inbox.pending_here):
            await asyncio.sleep(0.005)

    def adopt_stalled(self) -> int:
        """Drive every stalled incident (``_stalled``) here; set the gauge and return how many there were."""
        return self._adopt(self._find_stalled(self._busy()))

    def _busy(self) -> set[str]:
        return set(self._running) | set(self._queued)

    def _find_stalled(self, busy: set[str]) -> list[Incident]:
        """The stalled incidents not in ``busy``: store reads only, so the watchdog runs it in a thread.

        It reads and parses every unfinished incident: after a storm, thousands, ~100 ms that would
        stall the event loop (and every webhook waiting on it) once per watchdog interval.
        """
        now = self.clock.now()
        stalled = [i for i in self.store.unfinished() if i.id not in busy and self._stalled(i, now)]
        # A replica died or stalled holding the lease: take the incident over now, without the grace.
        orphans = set(self.store.expired_leases()) - busy - {i.id for i in stalled}
        return stalled + [i for i in map(self.store.get, sorted(orphans)) if i is not None]

    def _adopt(self, stalled: list[Incident]) -> int:
        busy = self._busy()  # a worker may have started on one while the store was read
        stalled = [i for i in stalled if i.id not in busy]
        for incident in stalled:
            log.warning(
                "incident stalled with no worker; driving it again",
                extra={"incident_id": incident.id, "state": incident.state.value},
            )
            self.schedule(incident.id)
        INCIDENTS_STALLED.set(len(stalled) + len(self._store_waits))
        return len(stalled)

    def _stalled(self, incident: Incident, now: datetime) -> bool:
        """Due, and nothing recorded on it for longer than the grace (plus the sync timeout while syncing).

        The grace keeps a replica (or ``rollbackbot rollback`` in another process) that is still working
        on an incident from having it adopted; a lost worker is picked up after at most grace + interval.
        """
        due = self.workflow.wait_until(incident)
        if due is None or due > now:
            return False
        grace = self.watchdog_grace
        policy = incident_policy(incident, self.workflow.policies)
        if incident.state is S.syncing and policy is not None:
            grace += policy.spec.sync.timeout.total_seconds()
        if incident.state is S.rolling_back and policy is not None and policy.spec.traffic_router is not None:
            grace += canary_quiet_seconds(policy)  # a canary step records nothing while it syncs and pauses
        quiet_since = incident.events[-1].at if incident.events else incident.created_at
        if incident.not_before is not None and incident.not_before <= now:  # a debounce or deadline that ended
            quiet_since = max(quiet_since, incident.not_before)
        return (now - quiet_since).total_seconds() >= grace

    async def _watch(self, interval: float) -> None:
        """The watchdog: every ``interval`` seconds, adopt stalled incidents (no restart needed)."""
        while not self._stopping:
            await asyncio.sleep(interval)
            try:
                self._adopt(await asyncio.to_thread(self._find_stalled, self._busy()))
            except Exception as exc:  # the store may be down: say so in the gauge, look again later
                INCIDENTS_STALLED.set(len(self._store_waits))
                log.warning("watchdog could not read the store", extra={"error": describe(exc)})

    async def _drive(self, incident_id: str) -> None:
        token = current_incident.set(incident_id)
        try:
            try:
                await self._slots.acquire()
            finally:
                self._started(incident_id)
            self._holding.add(incident_id)
            try:
                await self._drive_through_outages(incident_id)
            finally:
                if incident_id in self._holding:
                    self._holding.discard(incident_id)
                    self._slots.release()
        except Exception:
            log.exception("incident worker crashed; the watchdog drives it again")
        finally:
            current_incident.reset(token)

    async def _drive_through_outages(self, incident_id: str) -> None:
        """Run the incident; while the store is unavailable, wait with backoff and run it again."""
        outages = 0
        try:
            while True:
                try:
                    await self.run_incident(incident_id)
                    return
                except Exception as exc:
                    if classify(exc) is not Fault.store:
                        raise
                    outages += 1
                    self._store_waits.add(incident_id)
                    budget = RetryBudget(backoff=0.05, backoff_max=self.store_backoff_max)
                    delay = backoff_delay(outages, budget)
                    log.warning(
                        "incident store unavailable; waiting for it",
                        extra={"incident_id": incident_id, "error": describe(exc), "retry_in": round(delay, 2)},
                    )
                    await self._pause(incident_id, delay)
        finally:
            self._store_waits.discard(incident_id)

    async def _pause(self, incident_id: str, seconds: float) -> None:
        """Back off before retrying: slot given back, but busy (not waiting on a timer) for ``idle()``."""
        self._retrying.add(incident_id)
        try:
            await self._sleep_until(incident_id, self.clock.now() + timedelta(seconds=seconds))
        finally:
            self._retrying.discard(incident_id)

    async def run_incident(self, incident_id: str, *, follow_verification: bool = True) -> Incident | None:
        """Advance the incident step by step until it is terminal or waits for a human.

        Only under its lease: another replica holding a live one drives it, and this call returns.
        """
        if self.leases.claim(incident_id, self.clock.now()) is None:
            log.debug("another replica holds the incident's lease", extra={"incident_id": incident_id})
            return self.store.get(incident_id)
        try:
            return await self._run_leased(incident_id, follow_verification)
        finally:
            self.leases.release(incident_id)

    async def _run_leased(self, incident_id: str, follow_verification: bool) -> Incident | None:
        while True:
            if self.inbox is not None:
                await self.inbox.intake_first()
            lease = self.leases.held.get(incident_id)
            incident = await self._store_call(self.store.get, incident_id)
            if incident is None or self._draining or lease is None:
                return incident
            if incident.state.terminal and not follow_verification:
                return incident
            wait_until = self.workflow.wait_until(incident)
            if wait_until is None:
                return incident
            if wait_until > self.clock.now():
                if not await self._wait_unleased(incident_id, wait_until):
                    return self.store.get(incident_id)
                continue
            updated, retry_in = await self._step(incident)
            if updated is incident:
                return incident
            if not await self._save_step(incident, updated, lease):
                if incident_id not in self.leases.held:
                    return self.store.get(incident_id)
                continue
            self._after_save(incident, updated)
            if retry_in is not None:
                await self._pause(incident_id, retry_in)
            await asyncio.sleep(0)  # let webhook requests in between steps: answering fast comes first

    async def _store_call(self, call: Callable[..., T], *args: Any) -> T:
        """A store call of an incident step: off the loop while webhooks arrive (``Inbox.store_call``)."""
        return call(*args) if self.inbox is None else await self.inbox.store_call(call, *args)

    async def _save_step(self, before: Incident, after: Incident, lease: Lease) -> bool:
        """Persist a step's outcome under the lease; False when refused (re-read, or stop if the lease is lost)."""
        try:
            await self._store_call(self.store.save, after, before.state, lease)
            return True
        except LeaseLost:
            log.warning("lease lost while a step ran; its outcome is refused", extra={"incident_id": before.id})
            self.leases.lost(before.id)
        except StaleIncident:
            log.info("another worker or a human moved the incident; re-reading")
        return False

    async def _wait_unleased(self, incident_id: str, until: datetime) -> bool:
        """Wait on a timer without the lease (a click on any replica may move the incident meanwhile),
        then take it again; False when another replica holds it by then."""
        self.leases.release(incident_id)
        await self._sleep_until(incident_id, until)
        return self.leases.claim(incident_id, self.clock.now()) is not None

    async def _step(self, incident: Incident) -> tuple[Incident, float | None]:
        """One workflow step; an error becomes a retry (with its delay) or a failure, never a dead worker."""
        try:
            return await self.workflow.step(incident), None
        except Exception as exc:
            fault = classify(exc)
            if fault is Fault.store:
                raise  # nothing can be recorded now: the worker waits for the store (_drive_through_outages)
            now, error = self.clock.now(), describe(exc)
            if fault is Fault.transient:
                budget = budget_for(self.retry, incident_policy(incident, self.workflow.policies))
                log.warning("transient error in a step", extra={"incident_id": incident.id, "error": error})
                outcome = after_transient(incident, error, budget, now, self._rng)
                return outcome.incident, outcome.delay
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            # The traceback's message could carry a URL with credentials: log where, and the redacted error.
            log.error(
                "unexpected error in a step",
                extra={
                    "incident_id": incident.id,
                    "error": error,
                    "where": f"{where.filename}:{where.lineno}" if where else "",
                },
            )
            detail = f"unexpected error: {error}"
            if incident.state.terminal:  # e.g. during verification: record it and stop looking
                return incident.with_verification(None, incident.verification).with_event(now, detail), None
            return incident.with_state(S.failed, now, detail), None

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

    def _noted(self, incident_id: str, detail: str) -> None:
        if self.chat is None or self._stopping:
            return
        task = asyncio.get_running_loop().create_task(self._send_note(incident_id, detail))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_note(self, incident_id: str, detail: str) -> None:
        assert self.chat is not None
        try:
            incident = self.store.get(incident_id)
            if incident is not None:
                await self.chat.incident_noted(incident, detail)
        except Exception:
            log.exception("chat note failed", extra={"incident_id": incident_id})

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
