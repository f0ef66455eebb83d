"""The payload that triggered an incident, as people may see it (docs/live-demo.md, docs/evidence.md).

Purely computational. The input is the observer's ``/forensics/requests`` answer (JSON lines, one
request each, already redacted by the observer on intake); the output is the flagged requests the
evidence bundle lists and the one excerpt the incident API and Slack show: the request with the
most detectors behind it (a leaked canary breaks ties, then the newest), its prompt redacted
again here (the evidence source may be another observer, or an older one), control characters
escaped and cut to ``EXCERPT_CHARS``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

EXCERPT_CHARS = 240
MAX_LISTED = 200  # flagged requests named in the bundle's flagged.json
_MAX_DETECTORS = 16

# Second line of defence only: the observer redacts with its keyed placeholders first.
_SECRETS = (
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "<EMAIL>"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "<SSN>"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "<NUMBER>"),
    (re.compile(r"\b(?:sk|xox[abpr]|ghp|glpat|AKIA)[-_A-Za-z0-9]{8,}"), "<SECRET>"),
    (re.compile(r"(?i)\bbearer\s+[-._~+/A-Za-z0-9]+=*"), "Bearer <SECRET>"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_SPACE = re.compile(r"\s+")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line: secrets and PII replaced, invisible and control characters shown as ``\\uXXXX``, cut."""
    for pattern, placeholder in _SECRETS:
        text = pattern.sub(placeholder, text)
    text = _SPACE.sub(" ", text).strip()
    text = _CONTROL.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_requests(body: bytes) -> list[dict[str, Any]]:
    """The observer's JSON lines; lines that are not JSON objects are skipped (a truncated last line)."""
    entries = []
    for line in body.decode("utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _detectors(entry: Mapping[str, Any]) -> list[str]:
    hits = entry.get("hits")
    return [str(h)[:64] for h in hits][:_MAX_DETECTORS] if isinstance(hits, list) else []


def _flagged(entry: Mapping[str, Any]) -> bool:
    return bool(_detectors(entry)) or entry.get("canary") is True or bool(entry.get("pii"))


def _prompt(entry: Mapping[str, Any]) -> str:
    value = entry.get("input")
    parts = value if isinstance(value, list) else [value]
    return " ".join(str(p) for p in parts if isinstance(p, str))


def flagged_requests(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The flagged requests, newest last, as the bundle's ``flagged.json`` names them."""
    listed = [
        {
            "timestamp": str(entry.get("timestamp", "")),
            "detectors": _detectors(entry),
            "canary": entry.get("canary") is True,
            "pii": [str(p) for p in entry.get("pii") or []][:_MAX_DETECTORS],
            "excerpt": excerpt(_prompt(entry)),
        }
        for entry in entries
        if _flagged(entry)
    ]
    return listed[-MAX_LISTED:]


def top_payload(flagged: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The flagged request to show people, with how many were flagged; None when nothing was."""
    if not flagged:
        return None
    ranked = max(enumerate(flagged), key=lambda item: (len(item[1]["detectors"]), item[1]["canary"], item[0]))[1]
    return {**ranked, "flagged_requests": len(flagged)}
