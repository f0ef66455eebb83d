"""decide() and rules_of(): the boundaries and the policy-to-rules mapping, pinned.

Written against the survivors of ``make mutation`` (docs/development.md): each test fails when
one comparison, default or keyword of ``rollbackbot/core/decide.py`` changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollbackbot.core.decide import STALE_AFTER, Action, AppHistory, Mode, Rules, decide, rules_of
from rollbackbot.core.policy import Policy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def policy(**spec: Any) -> Policy:
    body: dict[str, Any] = {
        "matchers": ['app = "fraud-llm"'],
        "target": {"argocdApps": ["fraud-llm"], "project": "ml-prod", "paths": ["apps/fraud-llm"], "tags": "v*"},
        "mode": "auto",
    }
    body.update(spec)
    return Policy.from_document(
        {"apiVersion": "rollbackbot/v1", "kind": "RollbackPolicy", "metadata": {"name": "p"}, "spec": body}
    )


@pytest.mark.parametrize("mode", ["auto", "propose", "notify"])
def test_rules_of_carries_every_rule_of_the_policy(mode: str) -> None:
    extra: dict[str, Any] = {"approval": {"channel": "C1X", "approvers": ["U1X"]}} if mode == "propose" else {}
    rules = rules_of(
        policy(mode=mode, debounce="2m", cooldown="2h", budget={"max": 5, "per": "12h"}, **extra),
    )
    assert rules == Rules(
        mode=Mode(mode),
        debounce=timedelta(minutes=2),
        cooldown=timedelta(hours=2),
        budget_max=5,
        budget_per=timedelta(hours=12),
    )


def test_rules_defaults_are_the_policy_defaults() -> None:
    assert Rules(Mode.auto) == rules_of(policy())


def test_policy_cooldown_holds_back_a_second_rollback() -> None:
    """End to end through rules_of: a 2 h cooldown still suppresses 90 minutes after the last rollback."""
    rules = rules_of(policy(cooldown="2h"))
    history = AppHistory(last_rollback_at=NOW - timedelta(minutes=90))
    assert decide(rules, alert_firing=True, alert_started=NOW, now=NOW, history=history).action is Action.suppress


def test_policy_budget_sends_the_sixth_rollback_to_a_human() -> None:
    rules = rules_of(policy(budget={"max": 6, "per": "1h"}))
    five = AppHistory(rollbacks_in_budget_window=5)
    six = AppHistory(rollbacks_in_budget_window=6)
    assert decide(rules, alert_firing=True, alert_started=NOW, now=NOW, history=five).action is Action.rollback
    decision = decide(rules, alert_firing=True, alert_started=NOW, now=NOW, history=six)
    assert decision.action is Action.propose
    assert "in 1:00:00" in decision.reason


@pytest.mark.parametrize(
    ("age", "expected"),
    [(STALE_AFTER - SECOND, Action.rollback), (STALE_AFTER, Action.rollback), (STALE_AFTER + SECOND, Action.suppress)],
)
def test_an_alert_exactly_24_hours_old_is_still_acted_on(age: timedelta, expected: Action) -> None:
    assert STALE_AFTER == timedelta(hours=24)
    decision = decide(Rules(Mode.auto), alert_firing=True, alert_started=NOW - age, now=NOW, history=AppHistory())
    assert decision.action is expected


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (timedelta(minutes=30) - SECOND, Action.suppress),
        (timedelta(minutes=30), Action.rollback),  # the cooldown has ended at its last instant
        (timedelta(minutes=30) + SECOND, Action.rollback),
    ],
)
def test_the_cooldown_ends_exactly_after_its_duration(since: timedelta, expected: Action) -> None:
    history = AppHistory(last_rollback_at=NOW - since)
    rules = Rules(Mode.auto, cooldown=timedelta(minutes=30))
    assert decide(rules, alert_firing=True, alert_started=NOW, now=NOW, history=history).action is expected


def test_default_rules_cooldown_is_30_minutes_and_budget_3_per_day() -> None:
    rules = Rules(Mode.auto)
    assert (rules.cooldown, rules.budget_max, rules.budget_per) == (timedelta(minutes=30), 3, timedelta(hours=24))


def test_a_fresh_app_has_spent_no_budget() -> None:
    """AppHistory() means no rollbacks yet: even a budget of one allows the first."""
    rules = Rules(Mode.auto, budget_max=1)
    decision = decide(rules, alert_firing=True, alert_started=NOW, now=NOW, history=AppHistory())
    assert decision.action is Action.rollback
