"""Pull-request mode rules: branch names, the pull request's text, and what a pull request's state means.

Purely computational: the forge adapters turn GitHub and GitLab answers into ``PullRequest`` and
``Review`` values; this module decides what they mean for the incident (merged, closed, approved by
an allowed reviewer, still waiting). Webhook signature checks are here too (stdlib ``hmac``), so the
HTTP route only passes bytes and headers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from rollbackbot.core.model import RollbackPlan
from rollbackbot.core.policy import AutoMerge

BRANCH_PREFIX = "rollbackbot/"
_BRANCH = re.compile(r"(?:refs/heads/)?rollbackbot/[A-Za-z0-9._-]+/(inc-[0-9a-f]{16})")
LABELS = ("rollback", "rollbackbot")
# Review states that change a reviewer's verdict (GitHub); COMMENTED and PENDING leave it as it was.
_VERDICTS = {"APPROVED", "CHANGES_REQUESTED", "DISMISSED"}


def branch_name(app: str, incident_id: str) -> str:
    """The head branch of an incident's pull request: ``rollbackbot/<app>/<incident-id>``."""
    return f"{BRANCH_PREFIX}{app}/{incident_id}"


def incident_of_branch(ref: str) -> str | None:
    """The incident id a head branch (or ``refs/heads/…`` ref) belongs to; None when it is not ours."""
    found = _BRANCH.fullmatch(ref)
    return found.group(1) if found else None


@dataclass(frozen=True)
class Review:
    """One review of a pull request: who, what verdict, on which head commit."""

    author: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED | PENDING
    commit: str


@dataclass(frozen=True)
class PullRequest:
    """What the forge says about a pull request, in the forge-neutral words the rules use."""

    number: int
    url: str
    state: str  # open | closed
    merged: bool
    head_sha: str
    base: str
    merge_commit: str | None = None
    merged_by: str | None = None
    mergeable: bool | None = None  # None: the forge is still computing it
    reviews: tuple[Review, ...] = ()
    node_id: str = ""  # GitHub's GraphQL id (auto-merge); GitLab: the project-scoped iid as text


class Progress(StrEnum):
    """What an open incident's pull request means for it now."""

    merged = "merged"
    closed = "closed"
    approved = "approved"
    waiting = "waiting"


@dataclass(frozen=True)
class Judgement:
    progress: Progress
    detail: str
    approver: str | None = None


def reviewer_verdicts(reviews: Iterable[Review]) -> dict[str, Review]:
    """Each reviewer's standing verdict: their last approving, change-requesting or dismissed review."""
    standing: dict[str, Review] = {}
    for review in reviews:
        if review.state.upper() in _VERDICTS:
            standing[review.author.lower()] = review
    return standing


def judge(pull: PullRequest, *, approvers: Iterable[str], auto_merge: AutoMerge, forge: str) -> Judgement:
    """Merged, closed unmerged, approved by an allowed reviewer on the current head, or still waiting.

    An approval counts only from a login in ``approvers``, only for the head it reviewed (a push after
    the review makes it stale), and not while an allowed reviewer's change request stands.
    """
    if pull.merged:
        who = f" by {forge}:{pull.merged_by}" if pull.merged_by else ""
        return Judgement(Progress.merged, f"pull request #{pull.number} merged{who}", f"{forge}:{pull.merged_by}")
    if pull.state != "open":
        return Judgement(Progress.closed, f"pull request #{pull.number} closed without merge")
    if auto_merge is not AutoMerge.after_approval:
        return Judgement(Progress.waiting, f"pull request #{pull.number} open; waiting for a person to merge it")
    allowed = {a.lower() for a in approvers}
    standing = {who: r for who, r in reviewer_verdicts(pull.reviews).items() if who in allowed}
    blocking = sorted(who for who, r in standing.items() if r.state.upper() == "CHANGES_REQUESTED")
    if blocking:
        return Judgement(Progress.waiting, f"changes requested by {', '.join(blocking)}")
    current = sorted(r.author for r in standing.values() if r.state.upper() == "APPROVED" and r.commit == pull.head_sha)
    if current:
        return Judgement(Progress.approved, f"approved in review by {current[0]}", f"{forge}:{current[0]}")
    ignored = sorted({r.author for r in pull.reviews if r.author.lower() not in allowed})
    if ignored:
        return Judgement(Progress.waiting, f"reviews by {', '.join(ignored)} do not count (not an allowed approver)")
    return Judgement(Progress.waiting, f"pull request #{pull.number} open, waiting for approval")


def pull_request_text(
    *, incident_id: str, app: str, policy: str, alert: str, plan: RollbackPlan, evidence_url: str | None
) -> tuple[str, str]:
    """Title and Markdown body of a rollback pull request."""
    current = plan.current.name if plan.current else f"untagged@{plan.head[:12]}"
    target = plan.target
    title = f"rollback({app}): {current} -> {target.name if target else '?'}"
    rows = [
        ("incident", f"`{incident_id}`"),
        ("alert", f"`{alert}`"),
        ("policy", f"`{policy}`"),
        ("from", _tag_cell(current, plan.current.model_digest if plan.current else None)),
        ("to", _tag_cell(target.name, target.model_digest) if target else "none"),
        ("signature", "release tag ssh signature verified against the allowed signers"),
        ("evidence", evidence_url or "not captured"),
    ]
    lines = [
        "rollbackbot restores the app's paths to the prior verified release. Merging this pull request"
        " deploys it; closing it unmerged rejects the rollback.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in rows),
    ]
    if plan.diff_stat.strip():
        lines += ["", "```", plan.diff_stat.strip(), "```"]
    return title, "\n".join(lines) + "\n"


def _tag_cell(name: str, digest: str | None) -> str:
    return f"`{name}` ({digest})" if digest else f"`{name}`"


def github_signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """GitHub's ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``, compared in constant time."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def gitlab_token_valid(secret: str, header: str | None) -> bool:
    """GitLab's ``X-Gitlab-Token``: the shared secret itself, compared in constant time."""
    if not secret or header is None:
        return False
    return hmac.compare_digest(secret.encode(), header.encode())
