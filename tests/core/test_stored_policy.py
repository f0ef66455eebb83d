"""The policy stored with an incident: it survives the record round trip and wins over the loaded set."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rollbackbot.core.incident_json import incident_from_record, incident_to_api, incident_to_record
from rollbackbot.core.incidents import AlertRef, Incident, incident_policy, new_incident, policy_to_document
from rollbackbot.core.policy import Policy
from rollbackbot.policy_files import load_policies

SHIPPED = load_policies(Path(__file__).resolve().parents[2] / "policies")
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def _incident(policy: Policy, document: dict[str, Any] | None) -> Incident:
    alert = AlertRef(name="PromptInjectionSpike", fingerprint="f" * 16, starts_at=NOW)
    incident = new_incident(app="docsum-llm", policy=policy.name, mode="auto", alert=alert, target={}, now=NOW)
    return replace(incident, policy_document=document or {})


@pytest.mark.parametrize("policy", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_policy_survives_the_record_round_trip(policy: Policy) -> None:
    incident = _incident(policy, None).with_policy(policy)
    assert incident.policy == policy.name
    record = json.loads(json.dumps(incident_to_record(incident)))  # as the store writes and reads it
    restored = incident_from_record(record)
    assert restored.policy_document == incident.policy_document
    stored = incident_policy(restored, {})
    assert stored is not None
    assert stored.model_dump() == policy.model_dump()


def test_the_stored_policy_wins_over_a_reloaded_one_of_the_same_name() -> None:
    original = SHIPPED[0]
    edited = original.model_copy(update={"spec": original.spec.model_copy(update={"mode": "notify"})})
    incident = _incident(original, policy_to_document(original))
    stored = incident_policy(incident, {original.name: edited})
    assert stored is not None and stored.spec.mode == original.spec.mode


def test_records_without_a_stored_policy_use_the_loaded_one() -> None:
    policy = SHIPPED[0]
    incident = _incident(policy, None)
    assert incident_policy(incident, {policy.name: policy}) is policy
    assert incident_policy(incident, {}) is None


def test_a_stored_document_this_version_cannot_read_falls_back_to_the_loaded_policy() -> None:
    policy = SHIPPED[0]
    document = policy_to_document(policy)
    document["spec"] = {**document["spec"], "fieldOfAFutureVersion": True}
    assert incident_policy(_incident(policy, document), {policy.name: policy}) is policy


def test_the_api_answer_does_not_carry_the_document() -> None:
    policy = SHIPPED[0]
    assert "policy_document" not in incident_to_api(_incident(policy, policy_to_document(policy)))
