"""Incident state machine and its JSON round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollbackbot.core.incident_json import incident_from_record, incident_to_api, incident_to_record
from rollbackbot.core.incidents import AlertRef, IncidentState, InvalidTransition, incident_id, new_incident
from rollbackbot.core.model import ReleaseTag, RollbackPlan, SkippedTag, plan_from_dict

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
S = IncidentState


def _incident():  # type: ignore[no-untyped-def]
    alert = AlertRef("PromptInjectionSpike", "a509e5702057cd45", NOW - timedelta(minutes=2), {"app": "docsum-llm"})
    return new_incident(
        app="docsum-llm", policy="p", mode="auto", alert=alert, target={"apps": ["docsum-llm"]}, now=NOW
    )


def test_id_is_deterministic_per_app_fingerprint_and_start() -> None:
    a = incident_id("app", "fp", NOW)
    assert a == incident_id("app", "fp", NOW)
    assert a != incident_id("app", "fp", NOW + timedelta(seconds=1))
    assert a != incident_id("other", "fp", NOW)


def test_happy_path_records_every_transition() -> None:
    inc = _incident()
    for state in (S.rolling_back, S.syncing, S.rolled_back):
        inc = inc.with_state(state, NOW, f"to {state}")
    assert [e.state for e in inc.events] == [S.received, S.rolling_back, S.syncing, S.rolled_back]
    assert inc.state.terminal
    assert inc.reason == "to rolled_back"


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((), S.rolled_back),  # received cannot jump to the end
        ((S.suppressed,), S.rolling_back),  # terminal states never move
        ((S.awaiting_approval,), S.rolling_back),  # a proposal must be approved first
        ((S.awaiting_approval, S.rejected), S.approved),
    ],
)
def test_forbidden_transitions(path: tuple[IncidentState, ...], bad: IncidentState) -> None:
    inc = _incident()
    for state in path:
        inc = inc.with_state(state, NOW)
    with pytest.raises(InvalidTransition):
        inc.with_state(bad, NOW)


def test_record_round_trip_keeps_everything() -> None:
    plan = RollbackPlan(
        app="docsum-llm",
        branch="main",
        head="c" * 40,
        current=ReleaseTag("docsum-llm/v1.2.0", "d" * 40, {"Model-Digest": "sha256:" + "1" * 64}),
        target=ReleaseTag("docsum-llm/v1.1.0", "e" * 40, {"Data-Version": "ds-1"}),
        skipped=(SkippedTag("docsum-llm/v1.1.5", "signature does not verify"),),
        diff_stat=" 1 file changed",
    )
    inc = _incident().with_plan(plan).with_state(S.rolling_back, NOW, "go").with_commit("f" * 40)
    inc = inc.with_resolved(NOW + timedelta(minutes=1))
    trigger = {"detectors": ["instruction_override"], "excerpt": "ignore previous instructions", "flagged_requests": 3}
    inc = inc.with_evidence("file:///ev/x", ("snapshot.bin: timeout",), trigger)
    back = incident_from_record(incident_to_record(inc))
    assert back == inc
    assert plan_from_dict(back.plan) == plan


def test_api_json_has_the_documented_keys() -> None:
    data = incident_to_api(_incident())
    assert set(data) >= {
        "id",
        "app",
        "policy",
        "mode",
        "state",
        "alert",
        "from",
        "to",
        "rollback_commit",
        "evidence_url",
        "approved_by",
        "events",
        "trigger",
    }
    assert set(data["alert"]) == {"name", "fingerprint", "startsAt", "labels"}
    assert data["events"][0]["state"] == "received"
    assert data["alert"]["startsAt"].endswith("Z")
