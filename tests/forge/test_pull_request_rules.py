"""The pure pull-request rules: who counts as an approver, stale approvals, branch names, signatures."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import pytest

from rollbackbot.core.policy import AutoMerge
from rollbackbot.core.pull_requests import (
    AutoMergeOutcome,
    Progress,
    PullRequest,
    Review,
    branch_name,
    github_auto_merge_refusal,
    github_signature_valid,
    gitlab_token_valid,
    incident_of_branch,
    judge,
    needs_auto_merge,
)

HEAD, OLD = "b" * 40, "a" * 40


def _pull(*reviews: Review, state: str = "open", merged: bool = False) -> PullRequest:
    return PullRequest(1, "u", state, merged, HEAD, "main", reviews=reviews, merged_by="bob" if merged else None)


@pytest.mark.parametrize(
    ("pull", "auto_merge", "progress", "approver"),
    [
        (_pull(Review("alice", "APPROVED", HEAD)), AutoMerge.after_approval, Progress.approved, "github:alice"),
        (_pull(Review("Alice", "APPROVED", HEAD)), AutoMerge.after_approval, Progress.approved, "github:Alice"),
        (_pull(Review("mallory", "APPROVED", HEAD)), AutoMerge.after_approval, Progress.waiting, None),
        (_pull(Review("alice", "APPROVED", OLD)), AutoMerge.after_approval, Progress.waiting, None),  # stale
        (
            _pull(Review("alice", "APPROVED", HEAD), Review("alice", "COMMENTED", HEAD)),
            AutoMerge.after_approval,
            Progress.approved,
            "github:alice",
        ),
        (
            _pull(Review("alice", "APPROVED", HEAD), Review("alice", "CHANGES_REQUESTED", HEAD)),
            AutoMerge.after_approval,
            Progress.waiting,
            None,
        ),
        (
            _pull(Review("alice", "APPROVED", HEAD), Review("carol", "CHANGES_REQUESTED", HEAD)),
            AutoMerge.after_approval,
            Progress.waiting,
            None,
        ),
        (
            _pull(Review("alice", "APPROVED", HEAD), Review("alice", "DISMISSED", HEAD)),
            AutoMerge.after_approval,
            Progress.waiting,
            None,
        ),
        (_pull(Review("alice", "APPROVED", HEAD)), AutoMerge.never, Progress.waiting, None),
        (_pull(state="closed"), AutoMerge.after_approval, Progress.closed, None),
        (_pull(state="closed", merged=True), AutoMerge.never, Progress.merged, "github:bob"),
    ],
)
def test_judge(pull: PullRequest, auto_merge: AutoMerge, progress: Progress, approver: str | None) -> None:
    judgement = judge(pull, approvers=["alice", "carol"], auto_merge=auto_merge, forge="github")
    assert (judgement.progress, judgement.approver) == (progress, approver)


@pytest.mark.parametrize(
    ("merge_state", "progress"),
    [
        ("blocked", Progress.waiting),
        ("clean", Progress.approved),
        ("ci_still_running", Progress.waiting),
        ("not_approved", Progress.waiting),
        ("mergeable", Progress.approved),
    ],
)
def test_an_approval_waits_while_the_forge_still_blocks_the_merge(merge_state: str, progress: Progress) -> None:
    pull = replace(_pull(Review("alice", "APPROVED", HEAD)), merge_state=merge_state)
    judgement = judge(pull, approvers=["alice"], auto_merge=AutoMerge.after_approval, forge="github")
    assert judgement.progress is progress
    assert ("does not allow the merge yet" in judgement.detail) is (progress is Progress.waiting)


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        ("Pull request Pull request is in clean status", AutoMergeOutcome.clean),
        ("Pull request Pull request is in unstable status", AutoMergeOutcome.pending),
        ("Pull request is in unknown status", AutoMergeOutcome.pending),
        ("Pull request Auto merge is not allowed for this repository", AutoMergeOutcome.refused),
        ("Pull request is in dirty status", AutoMergeOutcome.refused),
        ("", AutoMergeOutcome.refused),
    ],
)
def test_github_auto_merge_refusals(message: str, outcome: AutoMergeOutcome) -> None:
    assert github_auto_merge_refusal(message) is outcome


@pytest.mark.parametrize(
    ("platform", "progress", "approver"),
    [
        ("clean", Progress.approved, "github:auto-merge"),  # the fallback: rollbackbot merges, head SHA as precondition
        ("enabled", Progress.waiting, None),  # the forge merges by its own rules
        ("pending", Progress.waiting, None),
        (None, Progress.waiting, None),
        ("refused", Progress.waiting, None),  # a person merges
    ],
)
def test_judge_platform(platform: str | None, progress: Progress, approver: str | None) -> None:
    reviewed = _pull(Review("alice", "APPROVED", HEAD))  # a review never merges in platform mode: the forge decides
    judgement = judge(reviewed, approvers=["alice"], auto_merge=AutoMerge.platform, forge="github", platform=platform)
    assert (judgement.progress, judgement.approver) == (progress, approver)
    merged = judge(_pull(state="closed", merged=True), approvers=[], auto_merge=AutoMerge.platform, forge="github")
    assert merged.progress is Progress.merged


def test_auto_merge_is_asked_again_only_while_pending_on_an_open_pull_request() -> None:
    assert needs_auto_merge(_pull(), None) and needs_auto_merge(_pull(), "pending")
    assert not any(needs_auto_merge(_pull(), done) for done in ("enabled", "clean", "refused", "merged"))
    assert not needs_auto_merge(_pull(state="closed", merged=True), "pending")


def test_branch_names_round_trip_and_foreign_branches_are_not_ours() -> None:
    branch = branch_name("docsum-llm", "inc-0123456789abcdef")
    assert branch == "rollbackbot/docsum-llm/inc-0123456789abcdef"
    assert incident_of_branch(branch) == incident_of_branch(f"refs/heads/{branch}") == "inc-0123456789abcdef"
    for other in ("main", "rollbackbot/x/inc-123", "feature/rollbackbot/a/inc-0123456789abcdef", "rollbackbot/a/../b"):
        assert incident_of_branch(other) is None


def test_webhook_signatures() -> None:
    body = b'{"action":"closed"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert github_signature_valid("s3cret", body, good)
    assert not github_signature_valid("s3cret", body + b" ", good)
    assert not github_signature_valid("other", body, good)
    assert not github_signature_valid("s3cret", body, None)
    assert not github_signature_valid("", body, "sha256=")
    assert gitlab_token_valid("s3cret", "s3cret")
    assert not gitlab_token_valid("s3cret", "s3cre")
    assert not gitlab_token_valid("s3cret", None)


def test_policy_git_block_is_validated() -> None:
    from pydantic import ValidationError

    from tests.forge.rig import pr_policy

    policy = pr_policy()
    assert policy.spec.git.pull_request and policy.spec.git.auto_merge is AutoMerge.after_approval
    for bad in ({"forge": None}, {"repository": "no-slash"}, {"autoMerge": "sometimes"}, {"mergeMethod": "octopus"}):
        with pytest.raises(ValidationError):
            pr_policy(bad)
