"""decide(): table-driven, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollbackbot.core.decide import Action, AppHistory, Decision, Mode, Rules, decide, decide_with_plan
from rollbackbot.core.model import ReleaseTag, RollbackPlan

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

CASES = [
    # id, rules, firing, started, history, expected action, reason fragment
    ("auto acts", Rules(Mode.auto), True, NOW - MIN, AppHistory(), Action.rollback, "auto"),
    ("resolved never acts", Rules(Mode.auto), False, NOW - MIN, AppHistory(), Action.suppress, "resolved"),
    (
        "debounce waits",
        Rules(Mode.auto, debounce=5 * MIN),
        True,
        NOW - MIN,
        AppHistory(),
        Action.wait,
        "debounce",
    ),
    (
        "debounce elapsed",
        Rules(Mode.auto, debounce=MIN),
        True,
        NOW - MIN,
        AppHistory(),
        Action.rollback,
        "auto",
    ),
    (
        "duplicate",
        Rules(Mode.auto),
        True,
        NOW - MIN,
        AppHistory(other_active_incident="inc-1"),
        Action.suppress,
        "inc-1",
    ),
    (
        "cooldown",
        Rules(Mode.auto, cooldown=30 * MIN),
        True,
        NOW,
        AppHistory(last_rollback_at=NOW - 10 * MIN),
        Action.suppress,
        "cooldown",
    ),
    (
        "cooldown over",
        Rules(Mode.auto, cooldown=30 * MIN),
        True,
        NOW,
        AppHistory(last_rollback_at=NOW - 31 * MIN),
        Action.rollback,
        "auto",
    ),
    (
        "budget spent turns auto into propose",
        Rules(Mode.auto, budget_max=2),
        True,
        NOW,
        AppHistory(rollbacks_in_budget_window=2),
        Action.propose,
        "budget",
    ),
    (
        "stale alert never acts",
        Rules(Mode.auto),
        True,
        NOW - timedelta(hours=25),
        AppHistory(),
        Action.suppress,
        "stale",
    ),
    ("propose", Rules(Mode.propose), True, NOW, AppHistory(), Action.propose, "propose"),
    ("notify", Rules(Mode.notify), True, NOW, AppHistory(last_rollback_at=NOW), Action.notify, "notify"),
]


@pytest.mark.parametrize(
    ("rules", "firing", "started", "history", "action", "fragment"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    rules: Rules, firing: bool, started: datetime, history: AppHistory, action: Action, fragment: str
) -> None:
    decision = decide(rules, alert_firing=firing, alert_started=started, now=NOW, history=history)
    assert decision.action is action
    assert fragment in decision.reason


def test_debounce_says_when_to_look_again() -> None:
    decision = decide(
        Rules(Mode.auto, debounce=5 * MIN),
        alert_firing=True,
        alert_started=NOW - MIN,
        now=NOW,
        history=AppHistory(),
    )
    assert decision.not_before == NOW + 4 * MIN


def _plan(target: bool, head_is_rollback: bool = False) -> RollbackPlan:
    tag = ReleaseTag("app/v1.0.0", "a" * 40, {}) if target else None
    return RollbackPlan(
        app="app",
        branch="main",
        head="b" * 40,
        current=None,
        target=tag,
        no_target_reason=None if target else "all candidates failed verification",
        head_is_rollback=head_is_rollback,
    )


@pytest.mark.parametrize(
    ("action", "plan", "expected"),
    [
        (Action.rollback, _plan(True), Action.rollback),
        (Action.rollback, _plan(False), Action.suppress),
        (Action.propose, _plan(False), Action.suppress),
        (Action.rollback, _plan(True, head_is_rollback=True), Action.propose),
        (Action.propose, _plan(True, head_is_rollback=True), Action.propose),
        (Action.notify, _plan(False), Action.notify),
    ],
)
def test_decide_with_plan(action: Action, plan: RollbackPlan, expected: Action) -> None:
    assert decide_with_plan(Decision(action, "x"), plan).action is expected


def test_no_target_reason_is_carried() -> None:
    decision = decide_with_plan(Decision(Action.rollback, "x"), _plan(False))
    assert "all candidates failed verification" in decision.reason
