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
# The forge's own rules still hold the merge back (required checks or reviews): merging now would be refused,
# so an approved pull request waits in review instead of spending the retry budget on refusals.
# GitHub mergeable_state; GitLab detailed_merge_status.
BLOCKED_STATES = frozenset({"blocked", "not_approved", "ci_must_pass", "ci_still_running", "external_status_checks"})
# The head branch must be brought up to date with the base before the forge merges it (GitHub "require branches
# to be up to date", GitLab fast-forward or semi-linear merges): rebuild the rollback on the new base.
REBUILD_STATES = frozenset({"behind", "need_rebase"})
# The forge is still computing whether it would merge (after any push to either branch): read it once more.
COMPUTING_STATES = frozenset({"unknown", "checking", "unchecked", "preparing"})
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
    merge_state: str = ""  # the forge's word for why it would (not) merge now: GitHub mergeable_state, GitLab status

    @property
    def needs_rebuild(self) -> bool:
        """It conflicts with its base, or the forge wants it up to date with the base first."""
        return self.mergeable is False or self.merge_state in REBUILD_STATES


class AutoMergeOutcome(StrEnum):
    """What the forge said to "enable your own auto-merge" (``autoMerge: platform``), and what follows."""

    enabled = "enabled"  # the forge merges once its own rules (reviews, checks) are met
    merged = "merged"  # nothing was pending: the forge merged at once (GitLab)
    clean = (
        "clean"  # refused as already mergeable (GitHub "clean status"): rollbackbot merges, head SHA as precondition
    )
    pending = "pending"  # refused while mergeability is still being computed: asked again at the next look
    refused = "refused"  # refused for another reason (auto-merge off for the repository, a conflict): a person merges


@dataclass(frozen=True)
class AutoMergeAnswer:
    outcome: AutoMergeOutcome
    detail: str


_STATUS = re.compile(r"is in (\w+) status", re.IGNORECASE)


def github_auto_merge_refusal(message: str) -> AutoMergeOutcome:
    """What a GraphQL ``enablePullRequestAutoMerge`` error means.

    GitHub refuses a pull request that could be merged right now ("Pull request is in clean status"), and
    one whose merge state is not settled yet: right after it opens, while ``mergeStateStatus`` is still
    UNKNOWN, it answers "… is in unstable status" (or "unknown"). Anything else is a refusal for good.
    """
    found = _STATUS.search(message)
    status = found.group(1).lower() if found else ""
    if status == "clean":
        return AutoMergeOutcome.clean
    if status in ("unstable", "unknown"):
        return AutoMergeOutcome.pending
    return AutoMergeOutcome.refused


def needs_auto_merge(pull: PullRequest, outcome: str | None) -> bool:
    """Whether to ask the forge for its auto-merge (again): an open pull request not yet enabled or refused."""
    return pull.state == "open" and not pull.merged and outcome in (None, "", AutoMergeOutcome.pending.value)


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


def judge(
    pull: PullRequest, *, approvers: Iterable[str], auto_merge: AutoMerge, forge: str, platform: str | None = None
) -> Judgement:
    """Merged, closed unmerged, approved by an allowed reviewer on the current head, or still waiting.

    An approval counts only from a login in ``approvers``, only for the head it reviewed (a push after
    the review makes it stale), and not while an allowed reviewer's change request stands. With
    ``autoMerge: platform`` the forge merges; ``platform`` is its last answer (``AutoMergeOutcome``).
    """
    if pull.merged:
        who = f" by {forge}:{pull.merged_by}" if pull.merged_by else ""
        return Judgement(Progress.merged, f"pull request #{pull.number} merged{who}", f"{forge}:{pull.merged_by}")
    if pull.state != "open":
        return Judgement(Progress.closed, f"pull request #{pull.number} closed without merge")
    if auto_merge is AutoMerge.platform:
        return _platform(pull, forge, platform)
    if auto_merge is not AutoMerge.after_approval:
        return Judgement(Progress.waiting, f"pull request #{pull.number} open; waiting for a person to merge it")
    allowed = {a.lower() for a in approvers}
    standing = {who: r for who, r in reviewer_verdicts(pull.reviews).items() if who in allowed}
    blocking = sorted(who for who, r in standing.items() if r.state.upper() == "CHANGES_REQUESTED")
    if blocking:
        return Judgement(Progress.waiting, f"changes requested by {', '.join(blocking)}")
    current = sorted(r.author for r in standing.values() if r.state.upper() == "APPROVED" and r.commit == pull.head_sha)
    if current and pull.merge_state in BLOCKED_STATES:
        detail = f"approved in review by {current[0]}; {forge} does not allow the merge yet ({pull.merge_state})"
        return Judgement(Progress.waiting, detail + ": required checks or reviews are pending")
    if current:
        return Judgement(Progress.approved, f"approved in review by {current[0]}", f"{forge}:{current[0]}")
    ignored = sorted({r.author for r in pull.reviews if r.author.lower() not in allowed})
    if ignored:
        return Judgement(Progress.waiting, f"reviews by {', '.join(ignored)} do not count (not an allowed approver)")
    return Judgement(Progress.waiting, f"pull request #{pull.number} open, waiting for approval")


def _platform(pull: PullRequest, forge: str, outcome: str | None) -> Judgement:
    number = f"pull request #{pull.number}"
    if outcome == AutoMergeOutcome.clean.value:
        # The documented fallback: auto-merge is refused because nothing is pending, so merge it now.
        detail = f"{forge} refused auto-merge: {number} is already mergeable (clean); merging it with its head SHA"
        return Judgement(Progress.approved, detail, f"{forge}:auto-merge")
    if outcome == AutoMergeOutcome.enabled.value:
        return Judgement(Progress.waiting, f"{number} open; {forge} auto-merge merges it once its rules are met")
    if outcome == AutoMergeOutcome.refused.value:
        return Judgement(
            Progress.waiting, f"{number} open; {forge} refused auto-merge, waiting for a person to merge it"
        )
    return Judgement(
        Progress.waiting, f"{number} open; {forge} is still computing mergeability, auto-merge asked again"
    )


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
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return bool(secret) and header is not None and hmac.compare_digest(expected.encode(), header.strip().encode())


def gitlab_token_valid(secret: str, header: str | None) -> bool:
    """GitLab's ``X-Gitlab-Token``: the shared secret itself, compared in constant time."""
    return bool(secret) and header is not None and hmac.compare_digest(secret.encode(), header.encode())
