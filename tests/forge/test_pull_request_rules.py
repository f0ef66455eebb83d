"""The pure pull-request rules: who counts as an approver, stale approvals, branch names, signatures."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from rollbackbot.core.policy import AutoMerge
from rollbackbot.core.pull_requests import (
    Progress,
    PullRequest,
    Review,
    branch_name,
    github_signature_valid,
    gitlab_token_valid,
    incident_of_branch,
    judge,
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
