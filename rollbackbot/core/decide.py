"""decide(): what to do about a matched alert. Purely computational, no side effects.

The service gathers the facts (policy rules, the app's history from the store, the plan from git)
and acts on the returned Decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum, auto

from rollbackbot.core.model import RollbackPlan
from rollbackbot.core.policy import Policy


class Mode(StrEnum):
    auto = "auto"
    propose = "propose"
    notify = "notify"


class Action(Enum):
    """What the service does next. Compared by identity only: it is never stored or sent."""

    wait = auto()  # debounce: look again at Decision.not_before
    suppress = auto()
    notify = auto()
    propose = auto()
    rollback = auto()


@dataclass(frozen=True)
class Rules:
    """The parts of a policy that decide() reads."""

    mode: Mode
    debounce: timedelta = timedelta(0)
    cooldown: timedelta = timedelta(minutes=30)
    budget_max: int = 3
    budget_per: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class OtherIncident:
    """Another unfinished incident of the same app, as far as deciding about this one goes."""

    id: str
    opened_before: bool  # opened before the incident being decided (ties broken by id)
    waiting_until: datetime | None = None  # only waiting out its debounce until then: not acting yet
    acting: bool = False  # past its decision (planned, proposed, rolling back): it acts, whenever it opened


@dataclass(frozen=True)
class AppHistory:
    """What the store knows about recent work on the app."""

    other_active_incident: str | None = None  # the oldest unfinished one opened before (when others is empty)
    last_rollback_at: datetime | None = None
    rollbacks_in_budget_window: int = 0
    others: tuple[OtherIncident, ...] = ()  # every other unfinished incident of the app, oldest first
    last_rollback_incident: str | None = None


def blocking_incident(history: AppHistory, now: datetime) -> str | None:
    """The incident this one defers to: one acting, or one opened before that is not merely waiting.

    An incident only waiting out its debounce never holds back an alert that is ready: the ready
    one acts, and the waiting one, once its debounce ends, finds it acting and attaches to it.
    """
    if not history.others:
        return history.other_active_incident
    for other in history.others:
        waiting = other.waiting_until is not None and other.waiting_until > now
        if other.acting or (other.opened_before and not waiting):
            return other.id
    return None


CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)


def clock_skew_seconds(starts_at: datetime, received_at: datetime) -> float | None:
    """How far ``startsAt`` lies in the future of when the alert arrived, if beyond the tolerance."""
    ahead = (starts_at - received_at).total_seconds()
    return ahead if ahead > CLOCK_SKEW_TOLERANCE.total_seconds() else None


def effective_start(starts_at: datetime, received_at: datetime) -> datetime:
    """``startsAt``, or the arrival time when a skewed clock put ``startsAt`` minutes in the future."""
    return received_at if clock_skew_seconds(starts_at, received_at) is not None else starts_at


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    not_before: datetime | None = None


STALE_AFTER = timedelta(hours=24)  # an alert older than this when first seen is history, not an emergency


def decide(
    rules: Rules, *, alert_firing: bool, alert_started: datetime, now: datetime, history: AppHistory
) -> Decision:
    """Decide before planning: debounce, duplicates, cooldown, budget, mode."""
    if not alert_firing:
        return Decision(Action.suppress, "alert resolved before rollbackbot acted")
    if now - alert_started > STALE_AFTER:
        return Decision(Action.suppress, f"stale alert: it started {alert_started:%Y-%m-%dT%H:%M:%SZ}")
    if active := blocking_incident(history, now):
        return Decision(Action.suppress, f"duplicate: incident {active} is active")
    fire_until = alert_started + rules.debounce
    if now < fire_until:
        return Decision(Action.wait, f"debounce: waiting until the alert has fired {rules.debounce}", fire_until)
    if rules.mode is Mode.notify:
        return Decision(Action.notify, "policy mode is notify")
    if history.last_rollback_at is not None and now < history.last_rollback_at + rules.cooldown:
        return Decision(
            Action.suppress,
            f"cooldown: app rolled back at {history.last_rollback_at:%Y-%m-%dT%H:%M:%SZ}, cooldown {rules.cooldown}",
        )
    if rules.mode is Mode.propose:
        return Decision(Action.propose, "policy mode is propose")
    if history.rollbacks_in_budget_window >= rules.budget_max:
        return Decision(
            Action.propose,
            f"budget spent: {history.rollbacks_in_budget_window} rollbacks in {rules.budget_per}",
        )
    return Decision(Action.rollback, "policy mode is auto")


def decide_with_plan(decision: Decision, plan: RollbackPlan) -> Decision:
    """Refine a rollback/propose decision once the target is known."""
    if decision.action not in (Action.rollback, Action.propose):
        return decision
    if plan.target is None:
        return Decision(Action.suppress, f"no verified target: {plan.no_target_reason or 'none found'}")
    if plan.head_is_rollback and decision.action is Action.rollback:
        # Walking further back on our own could stack rollbacks; a human must decide.
        return Decision(Action.propose, "the branch head is already a rollbackbot rollback")
    return decision


def rules_of(policy: Policy) -> Rules:
    """The decision rules a policy carries."""
    spec = policy.spec
    return Rules(
        mode=Mode(spec.mode.value),
        debounce=spec.debounce,
        cooldown=spec.cooldown,
        budget_max=spec.budget.max,
        budget_per=spec.budget.per,
    )
