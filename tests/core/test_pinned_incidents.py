"""Incidents and their JSON: the cases ``make mutation`` found unpinned in ``core/incidents.py``
and ``core/incident_json.py`` (every field set and read back, the exact stored shape)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from rollbackbot.core.incident_json import incident_from_record, incident_to_api, incident_to_record
from rollbackbot.core.incidents import (
    AlertRef,
    Event,
    Incident,
    IncidentState,
    TagRef,
    incident_id,
    incident_policy,
    new_incident,
)
from rollbackbot.core.policy import Policy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
S = IncidentState


def full_incident() -> Incident:
    """An incident with every field away from its default."""
    alert = AlertRef(
        "PromptInjectionSpike",
        "a509e5702057cd45",
        NOW - timedelta(minutes=2),
        {"app": "docsum-llm"},
        {"summary": "spike"},
        "http://prometheus/graph?g0.expr=x",
    )
    incident = new_incident(
        app="docsum-llm", policy="p", mode="propose", alert=alert, target={"apps": ["docsum-llm"]}, now=NOW
    )
    return Incident(
        **{
            **incident.__dict__,
            "from_ref": TagRef("docsum-llm/v1.2.0", "d" * 40),
            "to_ref": TagRef("docsum-llm/v1.1.0", "e" * 40),
            "rollback_commit": "f" * 40,
            "evidence_url": "s3://bucket/inc/evidence.json",
            "approved_by": "U012ABC",
            "reason": "superseded by 1234",
            "state": S.failed,
            "not_before": NOW + timedelta(minutes=5),
            "resolved_at": NOW + timedelta(minutes=9),
            "plan": {"app": "docsum-llm"},
            "evidence_missing": ("requests",),
            "verify_by": NOW + timedelta(minutes=15),
            "verification": "still firing",
            "policy_document": {"kind": "RollbackPolicy"},
        }
    )


def test_every_field_survives_the_record() -> None:
    incident = full_incident()
    assert incident_from_record(incident_to_record(incident)) == incident


def test_the_stored_record_shape() -> None:
    record = incident_to_record(full_incident())
    assert record["alert"] == {
        "name": "PromptInjectionSpike",
        "fingerprint": "a509e5702057cd45",
        "startsAt": "2026-11-25T11:58:00Z",
        "labels": {"app": "docsum-llm"},
        "annotations": {"summary": "spike"},
        "generatorURL": "http://prometheus/graph?g0.expr=x",
    }
    assert {k: record[k] for k in ("reason", "not_before", "verify_by", "resolved_at", "evidence_url")} == {
        "reason": "superseded by 1234",
        "not_before": "2026-11-25T12:05:00Z",
        "verify_by": "2026-11-25T12:15:00Z",
        "resolved_at": "2026-11-25T12:09:00Z",
        "evidence_url": "s3://bucket/inc/evidence.json",
    }
    assert (record["verification"], record["evidence_missing"]) == ("still firing", ["requests"])


def test_a_minimal_record_reads_with_defaults() -> None:
    record = incident_to_record(full_incident())
    for key in ("reason", "target", "rollback_commit", "evidence_url", "approved_by", "not_before", "resolved_at"):
        record.pop(key)
    for key in ("verify_by", "verification", "evidence_missing", "plan", "policy_document", "events"):
        record.pop(key)
    for key in ("labels", "annotations", "generatorURL"):
        record["alert"].pop(key)
    back = incident_from_record(record)
    assert (back.reason, back.target, back.rollback_commit, back.evidence_url, back.approved_by) == (
        "",
        {},
        None,
        None,
        None,
    )
    assert (back.not_before, back.resolved_at, back.verify_by, back.verification) == (None, None, None, "")
    assert (back.evidence_missing, back.plan, back.policy_document, back.events) == ((), {}, {}, ())
    assert (back.alert.labels, back.alert.annotations, back.alert.generator_url) == ({}, {}, "")


def test_the_api_answer_shows_absent_evidence_and_verification_as_null() -> None:
    incident = full_incident()
    empty = Incident(**{**incident.__dict__, "evidence_url": "", "verification": ""})
    api = incident_to_api(empty)
    assert (api["evidence_url"], api["verification"]) == (None, None)
    assert incident_to_api(incident)["verification"] == "still firing"
    assert incident_to_api(incident)["reason"] == "superseded by 1234"


def test_with_helpers_change_only_their_fields() -> None:
    base = new_incident(
        app="a",
        policy="p",
        mode="auto",
        alert=AlertRef("A", "ff", NOW, {}),
        target={},
        now=NOW,
    )
    at = NOW + timedelta(minutes=1)
    assert base.with_verification(at, "cleared").__dict__ == {
        **base.__dict__,
        "verify_by": at,
        "verification": "cleared",
    }
    evidence = base.with_evidence("file:///e.json", ("snapshot",))
    assert evidence.__dict__ == {**base.__dict__, "evidence_url": "file:///e.json", "evidence_missing": ("snapshot",)}
    assert base.with_evidence("").evidence_missing == ()
    assert base.with_approver("U1").__dict__ == {**base.__dict__, "approved_by": "U1"}
    assert base.with_commit("c" * 40).__dict__ == {**base.__dict__, "rollback_commit": "c" * 40}
    resolved = base.with_resolved(at)
    assert resolved.resolved_at == at and resolved.events[-1].detail == "alert resolved"
    assert resolved.events[:-1] == base.events


def test_incident_ids_are_inc_and_16_hex() -> None:
    key = f"a\x00ff\x00{NOW.isoformat()}"
    assert incident_id("a", "ff", NOW) == "inc-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def test_a_new_incident_records_its_target_and_first_event() -> None:
    alert = AlertRef("A", "ff", NOW - timedelta(seconds=5), {})
    incident = new_incident(app="a", policy="p", mode="auto", alert=alert, target={"apps": ["a"]}, now=NOW)
    assert incident.target == {"apps": ["a"]}
    assert incident.policy == "p"
    assert [(e.at, e.state, e.detail) for e in incident.events] == [(NOW, S.received, "alert A fired at 11:59:55Z")]


def test_state_names_are_the_stored_and_published_vocabulary() -> None:
    """Records in the store and the API carry these strings; renaming one strands old incidents."""
    assert [s.value for s in S] == [
        "received",
        "suppressed",
        "awaiting_approval",
        "approved",
        "rejected",
        "expired",
        "rolling_back",
        "syncing",
        "rolled_back",
        "failed",
        "notified",
    ]
    assert {s.value for s in S if s.terminal} == {
        "suppressed",
        "rejected",
        "expired",
        "rolled_back",
        "failed",
        "notified",
    }
    assert Event(NOW, S.received).detail == ""


def test_an_incident_built_from_its_required_fields_starts_empty() -> None:
    # What the store and the workflow assume of an incident nothing has happened to yet.
    alert = AlertRef("A", "ab", NOW)
    assert (alert.labels, alert.annotations, alert.generator_url) == ({}, {}, "")
    incident = Incident("inc-1", "docsum-llm", "p", "auto", S.received, alert, NOW)
    assert (incident.target, incident.plan, incident.policy_document) == ({}, {}, {})
    assert (incident.reason, incident.verification, incident.events) == ("", "", ())
    assert incident.from_ref == incident.to_ref == TagRef(None, None)


def test_a_state_change_without_detail_records_an_empty_detail() -> None:
    incident = full_incident()
    received = Incident(**{**incident.__dict__, "state": S.received, "events": ()})
    moved = received.with_state(S.rolling_back, NOW)
    assert moved.events == (Event(NOW, S.rolling_back, ""),)


def test_the_alert_trailer_is_name_slash_fingerprint() -> None:
    assert AlertRef("PromptInjectionSpike", "a509e5702057cd45", NOW).trailer == "PromptInjectionSpike/a509e5702057cd45"


def test_a_stored_policy_is_the_one_acted_on_and_says_where_it_came_from() -> None:
    document = {
        "apiVersion": "rollbackbot/v1",
        "kind": "RollbackPolicy",
        "metadata": {"name": "docsum-llm-injection"},
        "spec": {
            "matchers": ['app = "docsum-llm"'],
            "target": {"argocdApps": ["docsum-llm"], "project": "ml-prod", "paths": ["apps/docsum-llm"], "tags": "v*"},
            "mode": "auto",
        },
    }
    policy = Policy.from_document(document, source="policies/docsum.yaml")
    incident = full_incident().with_policy(policy)
    assert incident.policy == "docsum-llm-injection"  # the incident was opened under "p"
    assert incident.policy_document["spec"]["target"]["argocdApps"] == ["docsum-llm"]  # the YAML keys
    stored = incident_policy(incident, {})
    assert stored is not None and (stored.name, stored.spec) == (policy.name, policy.spec)
    assert stored is not None and stored.source == "(stored with the incident)"
    assert incident_policy(Incident(**{**incident.__dict__, "policy_document": {}}), {}) is None


def test_a_record_keeps_evidence_that_could_not_be_written_apart_from_evidence_not_yet_captured() -> None:
    # "" means the capture ran and wrote nothing; None means it has not run (the workflow captures then).
    for evidence in ("", None):
        incident = Incident(**{**full_incident().__dict__, "evidence_url": evidence})
        assert incident_from_record(incident_to_record(incident)).evidence_url == evidence
    assert incident_to_api(Incident(**{**full_incident().__dict__, "evidence_url": ""}))["evidence_url"] is None


def test_the_pull_request_is_kept_whole_in_the_record_and_shown_in_part_by_the_api() -> None:
    pull = {
        "forge": "github",
        "repository": "acme/gitops",
        "number": 42,
        "url": "https://github.example/acme/gitops/pull/42",
        "branch": "rollbackbot/docsum-llm/inc-0123456789abcdef",
        "head_sha": "a" * 40,
        "merge_commit": None,
        "node_id": "PR_kwDO",  # for the forge adapter only
    }
    incident = full_incident().with_pull_request(**pull)
    assert incident.with_pull_request(merge_commit="b" * 40).pull_request == {**pull, "merge_commit": "b" * 40}
    assert incident_to_record(incident)["pull_request"] == pull
    assert incident_from_record(incident_to_record(incident)).pull_request == pull
    assert incident_to_api(incident)["pull_request"] == {k: v for k, v in pull.items() if k != "node_id"}
    without = Incident(**{**incident.__dict__, "pull_request": {}})
    assert incident_to_api(without)["pull_request"] is None
    assert incident_from_record(incident_to_record(without)).pull_request == {}
    record = incident_to_record(without)
    record["pull_request"] = None  # written before pull-request mode existed
    assert incident_from_record(record).pull_request == {}
