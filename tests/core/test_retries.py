"""Retrying transient faults within a budget (core/retries.py): backoff, giving up, re-opening."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollbackbot.core.incidents import AlertRef, Event, Incident, IncidentState, new_incident
from rollbackbot.core.policy import Policy
from rollbackbot.core.retries import (
    GAVE_UP,
    RETRYING,
    RetryBudget,
    after_transient,
    attempt_number,
    backoff_delay,
    budget_for,
    reopen,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
S = IncidentState


class Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def incident(state: IncidentState = S.rolling_back) -> Incident:
    base = new_incident(app="a", policy="p", mode="auto", alert=AlertRef("A", "ff", NOW, {}), target={}, now=NOW)
    return base.with_state(S.rolling_back, NOW) if state is S.rolling_back else replace(base, state=state)


def policy(**spec: Any) -> Policy:
    body: dict[str, Any] = {
        "matchers": ['app = "a"'],
        "target": {"argocdApps": ["a"], "project": "p", "paths": ["apps/a"], "tags": "v*"},
        "mode": "auto",
    }
    body.update(spec)
    return Policy.from_document(
        {"apiVersion": "rollbackbot/v1", "kind": "RollbackPolicy", "metadata": {"name": "p"}, "spec": body}
    )


def test_default_budget() -> None:
    assert RetryBudget() == RetryBudget(seconds=600.0, attempts=3, backoff=1.0, backoff_max=60.0)


def test_a_policy_overrides_the_budget_field_by_field() -> None:
    default = RetryBudget()
    assert budget_for(default, None) is default
    assert budget_for(default, policy()) is default
    assert budget_for(default, policy(retry={"budget": "2m"})) == replace(default, seconds=120.0)
    assert budget_for(default, policy(retry={"attempts": 5})) == replace(default, attempts=5)
    both = budget_for(default, policy(retry={"budget": "90s", "attempts": 1}))
    assert (both.seconds, both.attempts, both.backoff, both.backoff_max) == (90.0, 1, 1.0, 60.0)


@pytest.mark.parametrize(
    ("number", "jitter", "delay"),
    [(1, 0.0, 0.5), (1, 1.0, 1.0), (2, 0.5, 1.5), (3, 1.0, 4.0), (7, 1.0, 60.0), (7, 0.0, 30.0), (10_000, 1.0, 60.0)],
)
def test_backoff_doubles_with_jitter_and_a_cap(number: int, jitter: float, delay: float) -> None:
    assert backoff_delay(number, RetryBudget(), Fixed(jitter)) == delay


def test_retries_until_the_budget_is_spent_then_fails() -> None:
    budget = RetryBudget(seconds=10.0)
    first = after_transient(incident(), "connection reset", budget, NOW, Fixed(1.0))
    assert first.delay == 1.0
    assert first.incident.events[-1].detail == f"{RETRYING} 1 in 1.0s: connection reset"
    second = after_transient(first.incident, "502", budget, NOW + timedelta(seconds=9), Fixed(1.0))
    assert second.delay == 1.0 and second.incident.events[-1].detail.startswith(f"{RETRYING} 2 in 1.0s")
    capped = after_transient(first.incident, "502", budget, NOW + timedelta(seconds=9.5), Fixed(1.0))
    assert capped.delay == 0.5  # never sleeps past the budget
    spent = after_transient(second.incident, "502", budget, NOW + timedelta(seconds=10), Fixed(1.0))
    assert spent.delay is None
    assert spent.incident.state is S.failed
    assert spent.incident.reason == f"{GAVE_UP} (3 tries in 10s, attempt 1 of 3): 502"


def test_a_terminal_incident_only_records_that_it_gave_up() -> None:
    done = incident().with_state(S.syncing, NOW).with_state(S.rolled_back, NOW)
    done = done.with_verification(NOW + timedelta(minutes=5), "still firing")
    outcome = after_transient(done, "timeout", RetryBudget(), NOW, Fixed(0.0))
    assert outcome.delay is None
    assert outcome.incident.state is S.rolled_back
    assert (outcome.incident.verify_by, outcome.incident.verification) == (None, "still firing")
    assert outcome.incident.events[-1].detail.startswith(f"{GAVE_UP} (1 tries in 0s, attempt 1 of 3)")


def gave_up(at: datetime = NOW) -> Incident:
    return after_transient(incident(), "502", RetryBudget(seconds=0.0), at).incident


def test_a_failed_attempt_reopens_in_the_state_it_failed_in_until_attempts_run_out() -> None:
    budget = RetryBudget(seconds=0.0, attempts=3)
    failed = gave_up()
    assert attempt_number(failed) == 1
    second = reopen(failed, budget, NOW + timedelta(minutes=1))
    assert second is not None
    assert (second.state, second.reason, attempt_number(second)) == (S.rolling_back, "", 2)
    assert second.events[-1].detail.startswith("attempt 2 of 3: the alert is still firing; before: gave up")
    third = reopen(after_transient(second, "502", budget, NOW).incident, budget, NOW)
    assert third is not None and attempt_number(third) == 3
    assert reopen(after_transient(third, "502", budget, NOW).incident, budget, NOW) is None


def test_only_incidents_failed_on_transients_with_a_firing_alert_reopen() -> None:
    budget = RetryBudget()
    assert reopen(incident(), budget, NOW) is None  # not failed
    other = incident().with_state(S.failed, NOW, "signature does not verify")
    assert reopen(other, budget, NOW) is None
    assert reopen(gave_up().with_resolved(NOW), budget, NOW) is None
    assert reopen(gave_up(), RetryBudget(attempts=1), NOW) is None


def test_the_attempt_of_the_current_retry_window_only() -> None:
    """Retries before a re-opening do not count against the new attempt's budget."""
    budget = RetryBudget(seconds=10.0)
    old = after_transient(incident(), "502", budget, NOW).incident
    failed = after_transient(old, "502", budget, NOW + timedelta(seconds=20)).incident
    again = reopen(failed, budget, NOW + timedelta(seconds=30))
    assert again is not None
    retry = after_transient(again, "502", budget, NOW + timedelta(seconds=31), Fixed(1.0))
    assert retry.delay == 1.0 and retry.incident.events[-1].detail.startswith(f"{RETRYING} 1 in")


def test_a_long_reason_is_cut_in_the_reopening_event() -> None:
    failed = after_transient(incident(), "x" * 1000, RetryBudget(seconds=0.0), NOW).incident
    again = reopen(failed, RetryBudget(), NOW)
    assert again is not None and len(again.events[-1].detail) == 500


def test_a_failure_without_earlier_states_resumes_as_received() -> None:
    only_failed = replace(gave_up(), events=(Event(NOW, S.failed, "x"),))
    again = reopen(only_failed, RetryBudget(), NOW)
    assert again is not None and again.state is S.received


def test_only_the_latest_of_several_attempts_counts() -> None:
    budget = RetryBudget(seconds=10.0, attempts=4)
    current: Incident | None = incident()
    at = NOW
    for _ in range(3):  # three attempts: a retry each, then giving up 20 s later
        assert current is not None
        retried = after_transient(current, "502", budget, at).incident
        failed = after_transient(retried, "502", budget, at + timedelta(seconds=20)).incident
        assert failed.state is S.failed
        at += timedelta(minutes=1)
        current = reopen(failed, budget, at)
    assert current is not None and attempt_number(current) == 4
    first = after_transient(current, "502", budget, at, Fixed(1.0))
    assert first.delay == 1.0 and first.incident.events[-1].detail.startswith(f"{RETRYING} 1 in")
    second = after_transient(first.incident, "502", budget, at + timedelta(seconds=1), Fixed(1.0))
    assert second.delay == 2.0 and second.incident.events[-1].detail.startswith(f"{RETRYING} 2 in")
