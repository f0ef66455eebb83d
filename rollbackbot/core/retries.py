"""Retrying transient faults within a budget. Purely computational: the service sleeps and saves.

A step that raises a transient error (connection reset, 502, timeout) is retried with exponential
backoff and jitter. Each *attempt* of an incident may retry for up to ``RetryBudget.seconds``
(from its first transient error); past that the incident ends ``failed`` with a reason starting
``GAVE_UP``. If the alert is still firing when Alertmanager delivers it again, the failed incident
is re-opened as a new attempt in the state it failed in, up to ``RetryBudget.attempts`` attempts
in all. Everything is derived from the incident's events, so restarts and replicas agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime

from rollbackbot.core.incidents import Event, Incident, IncidentState
from rollbackbot.core.policy import Policy

RETRYING = "transient error, retry"  # event: "transient error, retry 2 in 1.7s: <error>"
GAVE_UP = "gave up after transient errors"  # reason of an incident failed on a transient error
NEW_ATTEMPT = "attempt"  # event: "attempt 2 of 3: the alert is still firing, retrying after ..."


@dataclass(frozen=True)
class RetryBudget:
    """How long one attempt may retry transient errors, how many attempts an incident gets, backoff."""

    seconds: float = 600.0
    attempts: int = 3
    backoff: float = 1.0  # first delay; doubles each retry
    backoff_max: float = 60.0


@dataclass(frozen=True)
class RetryOutcome:
    """What to do after a transient error: save ``incident``; sleep ``delay`` seconds unless it failed."""

    incident: Incident
    delay: float | None


def budget_for(default: RetryBudget, policy: Policy | None) -> RetryBudget:
    """The service-wide budget, with the policy's ``retry`` block (if any) taking precedence."""
    override = policy.spec.retry if policy is not None else None
    if override is None:
        return default
    seconds = override.budget.total_seconds() if override.budget is not None else default.seconds
    return replace(default, seconds=seconds, attempts=override.attempts or default.attempts)


def attempt_number(incident: Incident) -> int:
    """1 for the first attempt, +1 for every re-opening after a transient failure."""
    return 1 + sum(1 for e in incident.events if e.detail.startswith(f"{NEW_ATTEMPT} "))


def _current_attempt(events: tuple[Event, ...]) -> tuple[Event, ...]:
    """The events from the latest re-opening (its ``attempt N of M`` event) on, or all of them."""
    starts = [index for index, event in enumerate(events) if event.detail.startswith(f"{NEW_ATTEMPT} ")]
    return events[starts[-1] :] if starts else events


def after_transient(
    incident: Incident, error: str, budget: RetryBudget, now: datetime, rng: random.Random | None = None
) -> RetryOutcome:
    """Record a retry with its backoff delay, or fail the incident once the attempt's budget is spent."""
    retries = [e for e in _current_attempt(incident.events) if e.detail.startswith(RETRYING)]
    first = retries[0].at if retries else now
    spent = (now - first).total_seconds()
    remaining = budget.seconds - spent
    if remaining <= 0 or incident.state.terminal:
        attempt = attempt_number(incident)
        reason = (
            f"{GAVE_UP} ({len(retries) + 1} tries in {spent:.0f}s, attempt {attempt} of {budget.attempts}): {error}"
        )
        if incident.state.terminal:
            return RetryOutcome(incident.with_verification(None, incident.verification).with_event(now, reason), None)
        return RetryOutcome(incident.with_state(IncidentState.failed, now, reason), None)
    number = len(retries) + 1
    delay = backoff_delay(number, budget, rng)
    delay = min(delay, remaining)
    return RetryOutcome(incident.with_event(now, f"{RETRYING} {number} in {delay:.1f}s: {error}"), delay)


def backoff_delay(number: int, budget: RetryBudget, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: between half and all of ``backoff * 2**(number-1)``, capped."""
    # The exponent's cap only keeps 2.0**n from overflowing: any cap past log2(backoff_max/backoff)
    # gives the same delays.
    exponent = min(number - 1, 30)  # pragma: no mutate (overflow guard, see above)
    ceiling: float = min(budget.backoff_max, budget.backoff * 2.0**exponent)
    jitter: float = (rng or random).random()
    return ceiling * (0.5 + 0.5 * jitter)


def reopen(incident: Incident, budget: RetryBudget, now: datetime) -> Incident | None:
    """A failed-on-transient incident whose alert is still firing, as a new attempt; None if not allowed."""
    if incident.state is not IncidentState.failed or not incident.reason.startswith(GAVE_UP):
        return None
    if incident.resolved_at is not None:
        return None
    attempt = attempt_number(incident) + 1
    if attempt > budget.attempts:
        return None
    resume = _state_before_failure(incident)
    detail = f"{NEW_ATTEMPT} {attempt} of {budget.attempts}: the alert is still firing; before: {incident.reason}"
    event = Event(now, resume, detail[:500])
    # Not a with_state(): failed is terminal for every other path; only this re-opening leaves it.
    return replace(incident, state=resume, reason="", events=(*incident.events, event))


def _state_before_failure(incident: Incident) -> IncidentState:
    for event in reversed(incident.events):
        if not event.state.terminal:
            return event.state
    return IncidentState.received
