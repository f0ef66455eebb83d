"""Alertmanager webhook payloads (version 4): what is accepted, normalised and refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from rollbackbot.core.alerts import MAX_LABEL_VALUE, MAX_LABELS, Alert, AlertmanagerPayload

FINGERPRINT = "5f1e0c6a2b3d4e5f"


def alert(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "ModelRefusalRateDrop", "app": "fraud-llm"},
        "annotations": {"summary": "refusals dropped"},
        "startsAt": "2026-11-25T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": FINGERPRINT,
    }
    body.update(changes)
    return body


def payload(*alerts: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"version": "4", "status": "firing", "alerts": list(alerts) or [alert()]}
    body.update(changes)
    return body


def test_a_minimal_payload_takes_the_defaults() -> None:
    parsed = AlertmanagerPayload.model_validate(payload())
    assert (parsed.receiver, parsed.group_key, parsed.external_url, parsed.truncated_alerts) == ("", "", "", 0)
    assert (parsed.group_labels, parsed.common_labels) == ({}, {})
    only = Alert.model_validate(
        {"status": "resolved", "labels": {}, "startsAt": "2026-11-25T12:00:00Z", "fingerprint": "a"}
    )
    assert (only.annotations, only.ends_at, only.generator_url) == ({}, None, "")
    assert (only.name, only.firing, only.summary) == ("", False, "")


def test_wire_names_and_python_names_both_populate() -> None:
    parsed = AlertmanagerPayload.model_validate(
        payload(
            groupKey='{}:{app="x"}',
            truncatedAlerts=2,
            externalURL="http://am",
            groupLabels={"app": "x"},
            commonLabels={"app": "x", "severity": "page"},
        )
    )
    assert (parsed.group_key, parsed.truncated_alerts, parsed.external_url) == ('{}:{app="x"}', 2, "http://am")
    assert (parsed.group_labels, parsed.common_labels) == ({"app": "x"}, {"app": "x", "severity": "page"})
    by_name = Alert(
        status="firing", labels={}, starts_at=datetime(2026, 1, 1, tzinfo=UTC), fingerprint="ab", generator_url="u"
    )
    assert (by_name.generator_url, by_name.starts_at.year) == ("u", 2026)


def test_unknown_fields_are_ignored_and_models_are_frozen() -> None:
    parsed = AlertmanagerPayload.model_validate(payload(alert(newField=1), somethingNew="x"))
    assert not hasattr(parsed, "somethingNew")
    with pytest.raises(ValidationError):
        parsed.receiver = "x"
    with pytest.raises(ValidationError):
        parsed.alerts[0].status = "resolved"


def test_properties() -> None:
    firing = Alert.model_validate(alert())
    assert (firing.name, firing.firing, firing.summary) == ("ModelRefusalRateDrop", True, "refusals dropped")
    described = Alert.model_validate(alert(annotations={"description": "long text"}, status="resolved"))
    assert (described.summary, described.firing) == ("long text", False)
    both = Alert.model_validate(alert(annotations={"summary": "", "description": "fallback"}))
    assert both.summary == "fallback"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T12:00:00Z", datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
        ("2026-11-25T14:00:00+02:00", datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
        ("2026-11-25T12:00:00", datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),  # naive means UTC
    ],
)
def test_times_are_utc(text: str, expected: datetime) -> None:
    parsed = Alert.model_validate(alert(startsAt=text, endsAt=text))
    assert parsed.starts_at == expected and parsed.starts_at.tzinfo is UTC
    assert parsed.ends_at == expected and parsed.ends_at is not None and parsed.ends_at.tzinfo is UTC


def test_a_naive_time_is_utc_whatever_the_hosts_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        parsed = Alert.model_validate(alert(startsAt="2026-11-25T12:00:00"))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert parsed.starts_at == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_an_empty_fingerprint_is_refused() -> None:
    with pytest.raises(ValidationError):
        Alert.model_validate(alert(fingerprint=""))


def test_go_zero_time_means_no_end_but_year_two_is_an_end() -> None:
    assert Alert.model_validate(alert()).ends_at is None
    assert Alert.model_validate(alert(endsAt=None)).ends_at is None
    two = Alert.model_validate(alert(endsAt="0002-01-01T00:00:00Z")).ends_at
    assert two == datetime(2, 1, 1, tzinfo=UTC)
    offset = Alert.model_validate(alert(endsAt=datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))))
    assert offset.ends_at == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("field", ["labels", "annotations"])
def test_at_most_64_labels_or_annotations(field: str) -> None:
    assert MAX_LABELS == 64
    Alert.model_validate(alert(**{field: {f"k{i}": "v" for i in range(64)}}))
    with pytest.raises(ValidationError, match="more than 64 entries"):
        Alert.model_validate(alert(**{field: {f"k{i}": "v" for i in range(65)}}))


def test_label_names_and_values_are_bounded() -> None:
    assert MAX_LABEL_VALUE * 8 == 8192
    Alert.model_validate(alert(labels={"k" * 256: "v" * 8192}))
    with pytest.raises(ValidationError, match=repr("k" * 40)):
        Alert.model_validate(alert(labels={"k" * 257: "v"}))
    with pytest.raises(ValidationError, match="entry 'app' is too long"):
        Alert.model_validate(alert(labels={"app": "v" * 8193}))


@pytest.mark.parametrize(
    ("fingerprint", "valid"),
    [("", False), ("a" * 64, True), ("a" * 65, False), ("0123456789abcdefABCDEF", True), ("xyz", False)],
)
def test_fingerprints_are_hex_up_to_64(fingerprint: str, valid: bool) -> None:
    if valid:
        assert Alert.model_validate(alert(fingerprint=fingerprint)).fingerprint == fingerprint
    else:
        with pytest.raises(ValidationError):
            Alert.model_validate(alert(fingerprint=fingerprint))


def test_generator_url_and_alert_count_are_bounded() -> None:
    Alert.model_validate(alert(generatorURL="u" * 4096))
    with pytest.raises(ValidationError):
        Alert.model_validate(alert(generatorURL="u" * 4097))
    AlertmanagerPayload.model_validate(payload(*[alert()] * 1000))
    with pytest.raises(ValidationError):
        AlertmanagerPayload.model_validate(payload(*[alert()] * 1001))


@pytest.mark.parametrize(("key", "value"), [("version", "3"), ("status", "pending")])
def test_only_version_4_and_known_statuses(key: str, value: str) -> None:
    with pytest.raises(ValidationError):
        AlertmanagerPayload.model_validate(payload(**{key: value}))
    with pytest.raises(ValidationError):
        Alert.model_validate(alert(status="pending"))


def test_the_published_fingerprint_schema() -> None:
    # Part of the webhook body in docs/openapi.json: what senders are told a fingerprint is.
    schema = Alert.model_json_schema()["properties"]["fingerprint"]
    assert schema == {
        "maxLength": 64,
        "minLength": 1,
        "pattern": "^[0-9a-fA-F]+$",
        "title": "Fingerprint",
        "type": "string",
    }
