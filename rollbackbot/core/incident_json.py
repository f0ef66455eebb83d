"""Incidents to and from plain JSON: the store's record and the API's answer (docs/http-api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rollbackbot.core.incidents import AlertRef, Event, Incident, IncidentState, TagRef


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _public_pull_request(pull: dict[str, Any]) -> dict[str, Any] | None:
    """The pull request as the API shows it (pull-request mode only; null otherwise)."""
    if not pull:
        return None
    keys = ("forge", "repository", "number", "url", "branch", "head_sha", "merge_commit")
    return {key: pull.get(key) for key in keys}


def incident_to_api(incident: Incident) -> dict[str, Any]:
    """The public incident JSON of docs/http-api.md."""
    return {
        "id": incident.id,
        "app": incident.app,
        "policy": incident.policy,
        "mode": incident.mode,
        "state": incident.state.value,
        "reason": incident.reason,
        "created_at": _iso(incident.created_at),
        "alert": {
            "name": incident.alert.name,
            "fingerprint": incident.alert.fingerprint,
            "startsAt": _iso(incident.alert.starts_at),
            "labels": dict(incident.alert.labels),
        },
        "from": {"tag": incident.from_ref.tag, "revision": incident.from_ref.revision},
        "to": {"tag": incident.to_ref.tag, "revision": incident.to_ref.revision},
        "rollback_commit": incident.rollback_commit,
        "evidence_url": incident.evidence_url or None,
        "evidence_missing": list(incident.evidence_missing),
        "approved_by": incident.approved_by,
        "verification": incident.verification or None,
        "pull_request": _public_pull_request(incident.pull_request),
        "events": [{"at": _iso(e.at), "state": e.state.value, "detail": e.detail} for e in incident.events],
    }


def incident_to_record(incident: Incident) -> dict[str, Any]:
    """Everything needed to rebuild the incident after a restart."""
    record = incident_to_api(incident)
    record["alert"]["annotations"] = dict(incident.alert.annotations)
    record["alert"]["generatorURL"] = incident.alert.generator_url
    record["target"] = incident.target
    record["not_before"] = _iso(incident.not_before)
    record["resolved_at"] = _iso(incident.resolved_at)
    record["verify_by"] = _iso(incident.verify_by)
    record["plan"] = incident.plan
    record["evidence_url"] = incident.evidence_url
    record["policy_document"] = incident.policy_document
    record["pull_request"] = incident.pull_request
    return record


def incident_from_record(record: dict[str, Any]) -> Incident:
    """Inverse of incident_to_record."""
    alert = record["alert"]
    starts_at = _dt(alert["startsAt"])
    created_at = _dt(record["created_at"])
    assert starts_at is not None and created_at is not None
    return Incident(
        id=record["id"],
        app=record["app"],
        policy=record["policy"],
        mode=record["mode"],
        state=IncidentState(record["state"]),
        reason=record.get("reason", ""),
        alert=AlertRef(
            name=alert["name"],
            fingerprint=alert["fingerprint"],
            starts_at=starts_at,
            labels=dict(alert.get("labels", {})),
            annotations=dict(alert.get("annotations", {})),
            generator_url=alert.get("generatorURL", ""),
        ),
        created_at=created_at,
        target=dict(record.get("target") or {}),
        from_ref=TagRef(**record["from"]),
        to_ref=TagRef(**record["to"]),
        rollback_commit=record.get("rollback_commit"),
        evidence_url=record.get("evidence_url"),
        approved_by=record.get("approved_by"),
        not_before=_dt(record.get("not_before")),
        resolved_at=_dt(record.get("resolved_at")),
        verify_by=_dt(record.get("verify_by")),
        verification=record.get("verification") or "",
        evidence_missing=tuple(record.get("evidence_missing") or ()),
        plan=dict(record.get("plan") or {}),
        policy_document=dict(record.get("policy_document") or {}),
        pull_request=dict(record.get("pull_request") or {}),
        events=tuple(
            Event(at=_dt(e["at"]) or created_at, state=IncidentState(e["state"]), detail=e["detail"])
            for e in record.get("events", [])
        ),
    )
