"""Which releases are on the deploy branch, known incrementally: a head already answered for (by any
adapter of the process, such as the readiness run) is extended by the commits added since, and
anything else is asked again. Every plan must equal the plan of an adapter that knew nothing."""

from __future__ import annotations

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.git.tagindex import ReleaseChecks
from rollbackbot.core.model import RollbackPlan
from rollbackbot.testing.gitops import GitOpsSandbox, run_git
from tests.adapters.conftest import FRAUD, MakeRepo

DIGEST = "sha256:" + "cd" * 32
IDENT = {"GIT_AUTHOR_NAME": "Human", "GIT_AUTHOR_EMAIL": "h@example.com"}
IDENT |= {"GIT_COMMITTER_NAME": "Human", "GIT_COMMITTER_EMAIL": "h@example.com"}


def _pair(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> tuple[GitOpsRepository, GitOpsRepository]:
    """Two adapters on their own clones sharing what they know, as readiness and rollbacks do."""
    checks = ReleaseChecks()
    first = make_repo(sandbox, checks=checks, background_refresh=False)
    first.plan(FRAUD)  # answers for the head of now
    return first, make_repo(sandbox, checks=checks, background_refresh=False)


def _fresh(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> RollbackPlan:
    return make_repo(sandbox, background_refresh=False).plan(FRAUD)


def test_commits_added_elsewhere_keep_the_answer(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    _, second = _pair(sandbox, make_repo)
    sandbox.commit_paths({"platform/ingress.yaml": "replicas: 3\n"}, "platform change")
    plan = second.plan(FRAUD)
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.0"
    assert plan == _fresh(sandbox, make_repo)


def test_a_release_merged_since_is_on_the_branch(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    """A merge that keeps the branch's files (``-s ours``) brings a release onto the branch."""
    first, second = _pair(sandbox, make_repo)
    side = sandbox.commit_paths({"apps/fraud-llm/config.yaml": "threshold: 0.42\n"}, "2.2.5 hotfix", branch="hotfix")
    sandbox.sign_tag("fraud-llm/v2.2.5", side, {"Model-Digest": DIGEST, "Data-Version": "ds-9"})
    before = first.plan(FRAUD)  # the tag is known, its commit is not on the branch
    assert before.target is not None and before.target.name == "fraud-llm/v2.2.0"
    run_git(["fetch", "-q", "origin", sandbox.branch], sandbox.work)
    run_git(["reset", "-q", "--hard", "FETCH_HEAD"], sandbox.work)
    run_git(["merge", "-q", "-s", "ours", "--no-edit", side], sandbox.work, env=IDENT)
    run_git(["push", "-q", "origin", f"HEAD:refs/heads/{sandbox.branch}"], sandbox.work)
    plan = second.plan(FRAUD)
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.5"
    assert plan == _fresh(sandbox, make_repo)


def test_rewritten_history_is_asked_again(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    """History rewritten to drop the 2.2.0 release commit (the 2.3.0 files kept): 2.2.0 is off the branch."""
    first, _ = _pair(sandbox, make_repo)  # its clone holds the old head: the rewrite shows as dropped commits
    run_git(["fetch", "-q", "origin", sandbox.branch], sandbox.work)
    latest = run_git(["rev-parse", "FETCH_HEAD"], sandbox.work).strip()
    run_git(["reset", "-q", "--hard", "FETCH_HEAD~2"], sandbox.work)  # the 2.1.0 release commit
    run_git(["checkout", latest, "--", "apps"], sandbox.work)  # the files of 2.3.0, without 2.2.0's commit
    run_git(["commit", "-q", "-m", "2.3.0 files again, history rewritten"], sandbox.work, env=IDENT)
    run_git(["push", "-q", "--force", "origin", f"HEAD:refs/heads/{sandbox.branch}"], sandbox.work)
    plan = first.plan(FRAUD)
    assert plan.current is not None and plan.current.name == "fraud-llm/v2.3.0"
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.1.0"
    assert any(s.name == "fraud-llm/v2.2.0" and "not on the deploy branch" in s.reason for s in plan.skipped)
    assert plan == _fresh(sandbox, make_repo)
