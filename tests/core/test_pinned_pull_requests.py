"""Pull-request rules (core/pull_requests.py): the cases ``make mutation`` found unpinned.

The pull request's text is what a reviewer reads before merging a rollback, and the labels are
what teams filter on, so both are pinned exactly.
"""

from __future__ import annotations

import hashlib
import hmac

from rollbackbot.core.model import ReleaseTag, RollbackPlan
from rollbackbot.core.policy import AutoMerge
from rollbackbot.core.pull_requests import (
    LABELS,
    Progress,
    PullRequest,
    Review,
    github_signature_valid,
    gitlab_token_valid,
    judge,
    pull_request_text,
)

HEAD = "b" * 40
D_NEW, D_OLD = "sha256:" + "9" * 64, "sha256:" + "1" * 64
PLAN = RollbackPlan(
    app="fraud-llm",
    branch="main",
    head="c" * 40,
    current=ReleaseTag("fraud-llm/v2.0.0", "c" * 40, {"Model-Digest": D_NEW}),
    target=ReleaseTag("fraud-llm/v1.0.0", "a" * 40, {"Model-Digest": D_OLD}),
    diff_stat=" apps/fraud-llm/model.yaml | 2 +-\n 1 file changed\n",
)
INTRO = (
    "rollbackbot restores the app's paths to the prior verified release. Merging this pull request"
    " deploys it; closing it unmerged rejects the rollback."
)


def text(plan: RollbackPlan, evidence: str | None) -> tuple[str, str]:
    return pull_request_text(
        incident_id="inc-1", app="fraud-llm", policy="p", alert="A/3f2a", plan=plan, evidence_url=evidence
    )


def test_the_pull_request_names_incident_alert_policy_releases_evidence_and_diff() -> None:
    title, body = text(PLAN, "s3://evidence/inc-1")
    assert title == "rollback(fraud-llm): fraud-llm/v2.0.0 -> fraud-llm/v1.0.0"
    assert body == "\n".join(
        [
            INTRO,
            "",
            "| | |",
            "|---|---|",
            "| incident | `inc-1` |",
            "| alert | `A/3f2a` |",
            "| policy | `p` |",
            f"| from | `fraud-llm/v2.0.0` ({D_NEW}) |",
            f"| to | `fraud-llm/v1.0.0` ({D_OLD}) |",
            "| signature | release tag ssh signature verified against the allowed signers |",
            "| evidence | s3://evidence/inc-1 |",
            "",
            "```",
            "apps/fraud-llm/model.yaml | 2 +-\n 1 file changed",
            "```",
            "",
        ]
    )


def test_an_untagged_head_no_target_no_evidence_and_no_diff() -> None:
    bare = RollbackPlan("fraud-llm", "main", "c" * 40, None, None, diff_stat="  \n")
    title, body = text(bare, None)
    assert title == f"rollback(fraud-llm): untagged@{'c' * 12} -> ?"
    assert f"| from | `untagged@{'c' * 12}` |" in body.splitlines()
    assert "| to | none |" in body.splitlines()
    assert "| evidence | not captured |" in body.splitlines()
    assert "```" not in body and body.endswith("|\n")
    plain = RollbackPlan("fraud-llm", "main", "c" * 40, ReleaseTag("fraud-llm/v2.0.0", "c" * 40, {}), None)
    assert "| from | `fraud-llm/v2.0.0` |" in text(plain, "")[1].splitlines()


def test_pull_requests_carry_the_rollback_labels() -> None:
    assert LABELS == ("rollback", "rollbackbot")


def test_a_pull_request_known_only_by_number_has_no_node_id() -> None:
    assert PullRequest(7, "u", "open", False, HEAD, "main").node_id == ""


def test_a_merge_without_a_known_merger_names_nobody() -> None:
    merged = PullRequest(7, "u", "closed", True, HEAD, "main")
    verdict = judge(merged, approvers=(), auto_merge=AutoMerge.never, forge="github")
    assert (verdict.progress, verdict.detail) == (Progress.merged, "pull request #7 merged")


def test_reviews_by_people_who_may_not_approve_are_named_and_allowed_ones_are_not() -> None:
    reviews = (
        Review("mallory", "APPROVED", HEAD),
        Review("Ana", "APPROVED", "a" * 40),  # allowed, but on an older head
        Review("eve", "COMMENTED", HEAD),
    )
    pull = PullRequest(7, "u", "open", False, HEAD, "main", reviews=reviews)
    verdict = judge(pull, approvers=("ana",), auto_merge=AutoMerge.after_approval, forge="github")
    assert verdict.progress is Progress.waiting
    assert verdict.detail == "reviews by eve, mallory do not count (not an allowed approver)"


def test_webhook_checks_answer_true_or_false() -> None:
    body = b'{"action":"closed"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert github_signature_valid("s3cret", body, good) is True
    assert github_signature_valid("s3cret", body, good.removeprefix("sha256=")) is False
    assert github_signature_valid("s3cret", body, None) is False
    empty_key = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
    assert github_signature_valid("", body, empty_key) is False  # no secret configured: nothing verifies
    assert gitlab_token_valid("s3cret", "s3cret") is True
    assert gitlab_token_valid("", "") is False
    assert gitlab_token_valid("s3cret", None) is False
