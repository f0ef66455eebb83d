"""Trailers of release-tag and commit messages, and the rollback commit message itself.

Every value that reaches a commit message comes from outside (alert labels, tag names, Slack
user names), so each is squeezed onto one clean line first: a newline in an alert name must
never be able to forge an ``Approved-By:`` trailer or start a paragraph of its own.
"""

from __future__ import annotations

import re
import unicodedata

from rollbackbot.core.model import RollbackRequest
from rollbackbot.errors import NoTargetError

_TRAILER = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*):(?:[ \t]+(.*))?")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SIGNATURE_START = re.compile(r"^-----BEGIN (?:SSH|PGP) SIGNATURE-----$", re.MULTILINE)
# Unicode categories never wanted in a message: controls, format characters (bidi overrides,
# zero-width), surrogates, private use, unassigned. Line and paragraph separators (Zl, Zp) need no
# entry: str.split() takes them for whitespace, so one_line collapses them like newlines.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
VALUE_LIMIT = 200


def one_line(value: str, limit: int = VALUE_LIMIT) -> str:
    """``value`` with control/format characters replaced, whitespace collapsed, length bounded."""
    cleaned = "".join(" " if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in value)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def _canonical_key(key: str) -> str:
    # Trailer keys are case-insensitive in git; one spelling keeps lookups simple.
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


def parse_trailers(tag_body: str) -> dict[str, str]:
    """Trailers from the last paragraph of a message body (first occurrence of a key wins).

    The paragraph counts only if every line is ``Key: value`` or an indented continuation,
    as git requires of a trailer block. A signature block, if present, is cut off first.
    """
    signature = _SIGNATURE_START.search(tag_body)
    text = (tag_body[: signature.start()] if signature else tag_body).replace("\r\n", "\n").strip()
    if not text:
        return {}
    trailers: dict[str, str] = {}
    continued: str | None = None  # the key an indented line continues; None after a duplicate
    for number, line in enumerate(_PARAGRAPH_BREAK.split(text)[-1].split("\n")):
        if line[:1] in (" ", "\t") and number > 0:
            if continued is not None:
                trailers[continued] = f"{trailers[continued]} {line.strip()}".strip()
            continue
        match = _TRAILER.fullmatch(line.rstrip())
        if match is None:
            return {}
        key = _canonical_key(match.group(1))
        continued = None if key in trailers else key
        trailers.setdefault(key, (match.group(2) or "").strip())
    return trailers


def parse_commit_trailers(message: str) -> dict[str, str]:
    """Trailers of a full commit message; the subject paragraph never counts as trailers."""
    parts = _PARAGRAPH_BREAK.split(message.replace("\r\n", "\n").strip(), maxsplit=1)
    return parse_trailers(parts[1]) if len(parts) == 2 else {}


def from_ref(request: RollbackRequest) -> str:
    """What the rollback abandons: the current tag, or ``untagged@<12 hex>`` for an untagged head."""
    current = request.plan.current
    return one_line(current.name) if current else f"untagged@{one_line(request.plan.head)[:12]}"


def build_commit_message(request: RollbackRequest) -> str:
    """The rollback commit message: subject, a short body, then the Rollback-* trailers."""
    plan = request.plan
    if plan.target is None:
        raise NoTargetError(plan.no_target_reason or "the plan has no target release")
    app = one_line(request.target.app)
    source = from_ref(request)
    target = one_line(plan.target.name)
    paths = ", ".join(one_line(p) for p in request.target.paths)
    digest = one_line(plan.target.model_digest or "unknown")
    data_version = one_line(plan.target.data_version or "unknown")
    abandoned = (
        f"Abandoned {source}: added to .rollbackbot/quarantine.yaml."
        if plan.current
        else f"Abandoned the untagged change at {source.removeprefix('untagged@')}."
    )
    body = "\n".join(
        [
            f"Restore {paths} to {target}.",
            f"Target Model-Digest {digest}, Data-Version {data_version}.",
            abandoned,
        ]
    )
    trailers = [
        ("Rollback-Incident", one_line(request.incident_id)),
        ("Rollback-From", source),
        ("Rollback-To", target),
        ("Rollback-Alert", one_line(request.alert_ref)),
        ("Rollback-Evidence", one_line(request.evidence_url or "") or "none"),
    ]
    approved_by = one_line(request.approved_by or "")
    if approved_by:
        trailers.append(("Approved-By", approved_by))
    trailer_block = "\n".join(f"{key}: {value or 'unknown'}" for key, value in trailers)
    return f"rollback({app}): {source} -> {target}\n\n{body}\n\n{trailer_block}\n"
