"""When a non-terminal incident counts as stuck (gauge rollbackbot_incidents_overdue)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rollbackbot.core.incidents import AlertRef, Incident, IncidentState, new_incident
from rollbackbot.core.overdue import deadline, entered_state_at, overdue_by_state

S = IncidentState
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=15)
SYNC = timedelta(minutes=5)


def _received(policy: str = "docsum") -> Incident:
    alert = AlertRef("PromptInjectionSpike", "a509e5702057cd45", T0 - timedelta(minutes=1), {"app": "docsum-llm"})
    return new_incident(app="docsum-llm", policy=policy, mode="auto", alert=alert, target={}, now=T0)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_events_that_keep_the_state_do_not_move_its_entry() -> None:
    incident = _received().with_event(_at(1), "plan: ...").with_state(S.rolling_back, _at(2), "go")
    incident = incident.with_event(_at(3), "alert resolved")
    assert entered_state_at(incident) == _at(2)
    assert entered_state_at(_received().with_event(_at(4), "plan")) == T0


def test_deadline_by_state() -> None:
    received = _received()
    assert deadline(received, sync_timeout=SYNC, grace=GRACE) == T0 + GRACE
    debouncing = received.with_not_before(_at(10))
    assert deadline(debouncing, sync_timeout=SYNC, grace=GRACE) == _at(10) + GRACE
    proposed = received.with_state(S.awaiting_approval, _at(1), "propose").with_not_before(_at(31))
    assert deadline(proposed, sync_timeout=SYNC, grace=GRACE) == _at(31) + GRACE  # the approval deadline
    syncing = received.with_state(S.rolling_back, _at(1), "go").with_state(S.syncing, _at(2), "pushed")
    assert deadline(syncing, sync_timeout=SYNC, grace=GRACE) == _at(2) + SYNC + GRACE
    failed = syncing.with_state(S.failed, _at(3), "Argo CD: Degraded")
    assert deadline(failed, sync_timeout=SYNC, grace=GRACE) is None


def test_overdue_counts_only_late_non_terminal_incidents_by_state() -> None:
    syncing = _received().with_state(S.rolling_back, _at(1), "go").with_state(S.syncing, _at(2), "pushed")
    slow_policy = _received("slow-sync").with_state(S.rolling_back, _at(1), "go").with_state(S.syncing, _at(2), "ok")
    waiting = _received().with_state(S.awaiting_approval, _at(1), "propose").with_not_before(_at(120))
    done = syncing.with_state(S.rolled_back, _at(3), "healthy")
    incidents = [syncing, slow_policy, waiting, done]
    timeouts = {"docsum": SYNC, "slow-sync": timedelta(hours=1)}
    now = _at(2) + SYNC + GRACE
    assert overdue_by_state(incidents, timeouts, now=now, grace=GRACE) == {}  # exactly at the deadline
    later = now + timedelta(seconds=1)
    assert overdue_by_state(incidents, timeouts, now=later, grace=GRACE) == {"syncing": 1}
    # An unknown policy (removed since) falls back to the default sync timeout of 5 minutes.
    assert overdue_by_state([syncing], {}, now=later, grace=GRACE) == {"syncing": 1}
    assert overdue_by_state(incidents, timeouts, now=_at(200), grace=GRACE) == {"syncing": 2, "awaiting_approval": 1}
