"""The live demo's timeline: marks at the times their sources recorded, the chain's order checked."""

from __future__ import annotations

from typing import Any

from rollbackbot.demo import timeline as tl


def _timeline() -> tl.Timeline:
    timeline = tl.Timeline(wall_offset=1000.0)  # monotonic = wall - 1000
    timeline.mark(tl.FIRST_ATTACK, 10.0)
    return timeline


def _series(name: str, state: str, *times: float) -> dict[str, Any]:
    return {"metric": {"alertname": name, "alertstate": state}, "values": [[t, "1"] for t in times]}


def test_incident_events_mark_at_their_own_times() -> None:
    timeline = _timeline()
    events = [
        {"at": "1970-01-01T00:16:51.5Z", "state": "received", "detail": "alert ModelCanaryLeak fired"},
        {"at": "1970-01-01T00:16:52Z", "state": "syncing", "detail": "commit pushed"},
        {"at": "1970-01-01T00:16:53Z", "state": "rolled_back", "detail": "alert resolved"},  # not the sync
        {"at": "1970-01-01T00:16:54Z", "state": "rolled_back", "detail": "docsum-llm Synced and Healthy"},
        {"at": "1970-01-01T00:16:59Z", "state": "rolled_back", "detail": "verified: the alert resolved"},
    ]
    timeline.mark_incident({"events": events})
    assert timeline.relative() == {
        tl.FIRST_ATTACK: 0.0,
        tl.WEBHOOK: 1.5,
        tl.COMMIT: 2.0,
        tl.ROLLED_BACK: 4.0,
        tl.VERIFIED: 9.0,
    }


def test_prometheus_samples_give_pending_firing_and_the_resolution_of_the_first_alert() -> None:
    timeline = _timeline()
    timeline.mark_alerts({"ModelCanaryLeak": ("firing", 1012.4)})  # polled: later than the sample says
    timeline.mark(tl.RESOLVED, 30.0)  # polled: the alert is gone
    samples = [
        _series("ModelCanaryLeak", "firing", 1012.0, 1013.0, 1014.0),
        _series("PromptInjectionSpike", "pending", 1013.0),
        _series("PromptInjectionSpike", "firing", 1014.0, 1015.0, 1016.0),
    ]
    timeline.mark_alert_samples(samples, evaluation=1.0)
    marks = timeline.relative()
    assert marks[tl.FIRING] == marks[f"{tl.FIRING}: ModelCanaryLeak"] == 2.0
    assert marks["PromptInjectionSpike pending (Prometheus)"] == 3.0
    assert marks[tl.RESOLVED] == 5.0  # the evaluation after ModelCanaryLeak's last firing sample


def test_the_chain_order_names_what_is_missing_or_late() -> None:
    timeline = {name: float(index) for index, name in enumerate(tl.CHAIN)}
    assert tl.chain_order(timeline) == []
    late = timeline | {tl.FLAGGED: 2.5}
    assert tl.chain_order(late) == [f"{tl.FLAGGED} after {tl.FIRING}"]
    partial = {k: v for k, v in timeline.items() if k != tl.LEAK_STOPPED}
    assert tl.chain_order(partial) == [f"missing: {tl.LEAK_STOPPED}"]


def test_the_breakdown_splits_the_exposure_window() -> None:
    timeline = {tl.FIRING: 1.0, tl.WEBHOOK: 1.25, tl.COMMIT: 1.75, tl.SERVING: 2.5, tl.RESOLVED: 7.5}
    figures = tl.breakdown(timeline)
    assert figures["exposure_seconds (first attack -> safe release serving)"] == 2.5
    assert figures["firing_to_commit_seconds"] == 0.75
    assert figures["argocd_seconds (commit -> safe release serving: sync, health, model reload)"] == 0.75
    assert figures["serving_to_verified_seconds (resolved -> Alertmanager group_interval -> rollbackbot)"] is None
