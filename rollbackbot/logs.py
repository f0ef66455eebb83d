"""Structured JSON logs; every line of an incident's work carries its id, URLs in it without credentials."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from rollbackbot.redact import redact_urls

current_incident: contextvars.ContextVar[str | None] = contextvars.ContextVar("incident_id", default=None)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, incident_id and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_urls(record.getMessage()),
        }
        incident = getattr(record, "incident_id", None) or current_incident.get()
        if incident:
            line["incident_id"] = incident
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in line:
                line[key] = value if isinstance(value, (int, float, bool, type(None))) else redact_urls(str(value))
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = redact_urls(f"{record.exc_info[0].__name__}: {record.exc_info[1]}")
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Send rollbackbot's logs to stderr, as JSON lines by default."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs full URLs at INFO; ours are enough, and quieter.
    logging.getLogger("httpx").setLevel(logging.WARNING)
