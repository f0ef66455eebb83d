"""When a live shadow must be removed (pure): at its ttl, at once when a person asks, later after a failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollbackbot.core.incidents import Event, IncidentState
from rollbackbot.core.shadow import shadow_off_due, shadow_on_since

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(hours=72)


def _events(*entries: tuple[int, str]) -> tuple[Event, ...]:
    """(minutes after T0, detail)"""
    return tuple(Event(T0 + timedelta(minutes=m), IncidentState.rolled_back, d) for m, d in entries)


@pytest.mark.parametrize(
    ("events", "due"),
    [
        pytest.param((), None, id="no shadow"),
        pytest.param(((0, "shadow not started: no Deployment chat-llm-v2"),), None, id="never started"),
        pytest.param(((0, "shadow sandbox: …"), (1, "shadow on: …")), T0 + timedelta(minutes=1) + TTL, id="at ttl"),
        pytest.param(((1, "shadow on: …"), (2, "shadow off: …")), None, id="already off"),
        pytest.param(
            ((1, "shadow on: …"), (30, "shadow end requested by Dana Ops U012ABC")),
            T0 + timedelta(minutes=30),
            id="a person asked",
        ),
        pytest.param(
            ((1, "shadow on: …"), (30, "shadow end requested by Dana"), (31, "shadow not removed: push refused")),
            T0 + timedelta(minutes=36),
            id="failed removal waits before trying again",
        ),
        pytest.param(
            ((1, "shadow on: …"), (2, "shadow end requested by Dana"), (3, "shadow off: …"), (9, "shadow on: …")),
            T0 + timedelta(minutes=9) + TTL,
            id="a request before a later shadow does not count",
        ),
    ],
)
def test_shadow_off_due(events: tuple[tuple[int, str], ...], due: datetime | None) -> None:
    assert shadow_off_due(_events(*events), TTL) == due


def test_a_shadow_is_on_from_its_mirror_commit_until_its_removal() -> None:
    on = _events((0, "shadow sandbox: …"), (1, "shadow on: …"))
    assert shadow_on_since(on) == T0 + timedelta(minutes=1)
    assert shadow_on_since((*on, *_events((5, "shadow off: …")))) is None
