"""Webhook bodies exactly as Alertmanager 0.25 sends them (see tests/fixtures/alertmanager/*.json)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex fingerprint of a label set (Alertmanager uses a 64-bit hash too)."""
    canonical = "\xff".join(f"{k}\xff{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def alert(
    labels: dict[str, str],
    starts_at: datetime,
    *,
    ends_at: datetime | None = None,
    annotations: dict[str, str] | None = None,
    generator_url: str = "http://prometheus.example/graph?g0.expr=anomaly",
) -> dict[str, Any]:
    """One alert object of a notification."""
    return {
        "status": "resolved" if ends_at else "firing",
        "labels": labels,
        "annotations": annotations or {},
        "startsAt": _ts(starts_at),
        "endsAt": _ts(ends_at) if ends_at else GO_ZERO_TIME,
        "generatorURL": generator_url,
        "fingerprint": fingerprint(labels),
    }


def notification(alerts: list[dict[str, Any]], receiver: str = "rollbackbot") -> dict[str, Any]:
    """A version-4 webhook body grouping ``alerts`` by alertname."""
    common = dict(alerts[0]["labels"])
    for item in alerts[1:]:
        common = {k: v for k, v in common.items() if item["labels"].get(k) == v}
    group = {"alertname": common["alertname"]} if "alertname" in common else {}
    firing = any(a["status"] == "firing" for a in alerts)
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}"
    return {
        "receiver": receiver,
        "status": "firing" if firing else "resolved",
        "alerts": alerts,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }
