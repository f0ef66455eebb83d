"""Overdue incidents: the cases ``make mutation`` found unpinned in ``core/overdue.py``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rollbackbot.core.incidents import AlertRef, Event, IncidentState, new_incident
from rollbackbot.core.overdue import entered_state_at, overdue_by_state

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
S = IncidentState


def incident(state: IncidentState, *events: tuple[int, IncidentState]):  # type: ignore[no-untyped-def]
    base = new_incident(app="a", policy="p", mode="auto", alert=AlertRef("A", "ff", NOW, {}), target={}, now=NOW)
    return replace(base, state=state, events=tuple(Event(NOW + m * MIN, s) for m, s in events))


def test_a_state_entered_again_counts_from_the_last_entry() -> None:
    """A re-opened attempt is rolling back again: its clock starts at the re-opening, not the first try."""
    again = incident(S.rolling_back, (0, S.received), (1, S.rolling_back), (2, S.failed), (10, S.rolling_back))
    assert entered_state_at(again) == NOW + 10 * MIN


def test_syncing_gets_five_minutes_unless_the_policy_says_otherwise() -> None:
    syncing = incident(S.syncing, (0, S.received), (1, S.rolling_back), (2, S.syncing))
    entered = NOW + 2 * MIN
    assert overdue_by_state([syncing], {}, now=entered + 5 * MIN, grace=timedelta(0)) == {}
    assert overdue_by_state([syncing], {}, now=entered + 5 * MIN + timedelta(seconds=1), grace=timedelta(0)) == {
        "syncing": 1
    }
    assert overdue_by_state([syncing], {"p": 20 * MIN}, now=entered + 19 * MIN, grace=timedelta(0)) == {}
