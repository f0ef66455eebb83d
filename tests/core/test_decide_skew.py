"""Pure rules for clock skew and for which other incident of the app holds this one back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollbackbot.core.decide import (
    Action,
    AppHistory,
    Mode,
    OtherIncident,
    Rules,
    blocking_incident,
    clock_skew_seconds,
    decide,
    effective_start,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("ahead", "skew", "start"),
    [(0, None, NOW), (300, None, NOW + timedelta(seconds=300)), (301, 301.0, NOW), (3600, 3600.0, NOW)],
)
def test_clock_skew_beyond_five_minutes_counts_from_arrival(ahead: int, skew: float | None, start: datetime) -> None:
    starts_at = NOW + timedelta(seconds=ahead)
    assert clock_skew_seconds(starts_at, NOW) == skew
    assert effective_start(starts_at, NOW) == start


@pytest.mark.parametrize(
    ("others", "blocking"),
    [
        ((), None),
        ((OtherIncident("waiting", True, waiting_until=LATER),), None),  # only waiting: holds nobody back
        ((OtherIncident("ready", True),), "ready"),  # opened before and ready: it goes first
        ((OtherIncident("newer", False),), None),  # opened after, still deciding: it defers to us
        ((OtherIncident("newer-acting", False, acting=True),), "newer-acting"),  # already acting
        ((OtherIncident("waiting", True, waiting_until=LATER), OtherIncident("acting", False, acting=True)), "acting"),
        ((OtherIncident("done-waiting", True, waiting_until=NOW),), "done-waiting"),  # its debounce just ended
    ],
)
def test_blocking_incident(others: tuple[OtherIncident, ...], blocking: str | None) -> None:
    assert blocking_incident(AppHistory(others=others), NOW) == blocking


def test_a_waiting_incident_does_not_make_a_ready_alert_a_duplicate() -> None:
    history = AppHistory(other_active_incident="waiting", others=(OtherIncident("waiting", True, waiting_until=LATER),))
    decision = decide(
        Rules(mode=Mode.auto), alert_firing=True, alert_started=NOW - timedelta(minutes=5), now=NOW, history=history
    )
    assert decision.action is Action.rollback
