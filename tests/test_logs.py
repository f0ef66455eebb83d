"""Structured logs: one JSON object per line, the incident id on every line of its work."""

from __future__ import annotations

import json
import logging

from rollbackbot.logs import JsonFormatter, current_incident


def _line(record: logging.LogRecord) -> dict[str, object]:
    return dict(json.loads(JsonFormatter().format(record)))


def test_incident_id_comes_from_the_context() -> None:
    token = current_incident.set("inc-0123456789abcdef")
    try:
        record = logging.LogRecord("rollbackbot.steps", logging.INFO, __file__, 1, "commit pushed", None, None)
        line = _line(record)
    finally:
        current_incident.reset(token)
    assert line["incident_id"] == "inc-0123456789abcdef"
    assert line["message"] == "commit pushed" and line["level"] == "info" and line["logger"] == "rollbackbot.steps"


def test_extra_fields_are_kept_and_framework_noise_dropped() -> None:
    record = logging.LogRecord("rollbackbot.service", logging.WARNING, __file__, 1, "x %s", ("y",), None)
    record.state = "syncing"
    record.color_message = "\x1b[36mx\x1b[0m"
    line = _line(record)
    assert line["message"] == "x y" and line["state"] == "syncing"
    assert "color_message" not in line and "incident_id" not in line
