"""Redaction on intake: PII, secrets and the canary become keyed placeholders such as ``<EMAIL#a1b2c3d4>``.

The tag is an HMAC-SHA256 of the value under a per-deployment key
(``ROLLBACKBOT_OBSERVER_REDACTION_KEY``), so the same value gets the same tag across requests and
restarts (repeats correlate) while the value itself is never stored. Texts are size-capped after
redaction. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from rollbackbot.observer.rules import OUTPUT_SCAN_CHARS, Finding, find_sensitive

TAG_HEX_CHARS = 8
TRUNCATED_MARK = "…[truncated]"


@dataclass(frozen=True)
class Redactor:
    """Replaces sensitive values with ``<TYPE#hmac>`` placeholders keyed by ``key``."""

    key: bytes
    canary: str | None = None

    def tag(self, kind: str, value: str) -> str:
        """The placeholder of one value."""
        digest = hmac.new(self.key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"<{kind.upper()}#{digest[:TAG_HEX_CHARS]}>"

    def redact(self, text: str, limit: int) -> tuple[str, list[dict[str, object]]]:
        """``text`` with every finding replaced and cut to ``limit`` characters; plus the findings' metadata."""
        text = text[: min(limit, OUTPUT_SCAN_CHARS // 2) + 256]  # only what is scanned can be kept
        findings = find_sensitive(text)
        if self.canary:
            start = text.find(self.canary)
            while start != -1:
                findings.append(Finding("canary", start, start + len(self.canary)))
                start = text.find(self.canary, start + len(self.canary))
            findings.sort(key=lambda finding: (finding.start, -finding.end))
        parts: list[str] = []
        metadata: list[dict[str, object]] = []
        cursor = 0
        for finding in findings:
            if finding.start < cursor:  # overlaps one already replaced
                continue
            placeholder = self.tag(finding.type, text[finding.start : finding.end])
            parts.append(text[cursor : finding.start])
            parts.append(placeholder)
            metadata.append({"type": finding.type, "start": finding.start, "end": finding.end, "tag": placeholder})
            cursor = finding.end
        parts.append(text[cursor:])
        redacted = "".join(parts)
        if len(redacted) > limit:
            redacted = redacted[:limit] + TRUNCATED_MARK
        return redacted, metadata
