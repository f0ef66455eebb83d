"""The plan made beside the fetch (on the head fetched before) stands only when the fetch changed
nothing it rests on; any change to the app's files, the quarantine file, its tags or the branch's
history makes the adapter plan again on the new head, as if there had been no early plan."""

from __future__ import annotations

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.core.model import RollbackPlan
from rollbackbot.core.releases import QUARANTINE_PATH
from rollbackbot.testing.gitops import GitOpsSandbox, run_git
from tests.adapters.conftest import FRAUD, MakeRepo

DIGEST = "sha256:" + "cd" * 32


def _warm(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> GitOpsRepository:
    repo = make_repo(sandbox, background_refresh=False)
    repo.plan(FRAUD)  # cloned and fetched: the next plan has a head to plan on early
    return repo


def test_a_commit_elsewhere_keeps_the_early_plan_on_the_new_head(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    repo = _warm(sandbox, make_repo)
    moved = sandbox.commit_paths({"platform/ingress.yaml": "replicas: 3\n"}, "platform change")
    plan = repo.plan(FRAUD)
    assert "replanned" not in repo.timings  # nothing the plan rests on changed
    assert plan.head == moved  # recorded at the head it is valid on
    assert plan.current is not None and plan.current.name == "fraud-llm/v2.3.0"
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.0"
    assert plan == _fresh(sandbox, make_repo)
    result = repo.commit_rollback(_request(plan))
    assert sandbox.git("rev-parse", f"{result.commit}^") == moved + "\n"


def test_a_quarantine_edit_since_the_last_fetch_is_honoured(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    repo = _warm(sandbox, make_repo)
    entry = "quarantined:\n  - {tag: fraud-llm/v2.2.0, incident: inc-manual}\n"
    sandbox.commit_paths({QUARANTINE_PATH: entry}, "quarantine 2.2.0 by hand")
    plan = repo.plan(FRAUD)
    assert repo.timings.get("replanned") == 1.0
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.1.0"
    assert any(s.name == "fraud-llm/v2.2.0" and "quarantined" in s.reason for s in plan.skipped)
    assert plan == _fresh(sandbox, make_repo)


def test_a_change_to_the_apps_files_since_the_last_fetch_plans_again(
    sandbox: GitOpsSandbox, make_repo: MakeRepo
) -> None:
    repo = _warm(sandbox, make_repo)
    edited = sandbox.commit_paths({"apps/fraud-llm/config.yaml": "threshold: 0.9\n"}, "hand edit of the app")
    plan = repo.plan(FRAUD)
    assert repo.timings.get("replanned") == 1.0
    assert plan.head == edited
    assert plan.current is None  # the head no longer matches any release: untagged
    assert plan == _fresh(sandbox, make_repo)


def test_rewritten_history_plans_again(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    repo = _warm(sandbox, make_repo)
    old = sandbox.head()
    run_git(["fetch", "-q", "origin", sandbox.branch], sandbox.work)
    run_git(["reset", "-q", "--hard", f"{old}~1"], sandbox.work)  # the 2.3.0 release commit is dropped
    (sandbox.work / "platform" / "note.txt").parent.mkdir(parents=True, exist_ok=True)
    (sandbox.work / "platform" / "note.txt").write_text("rewritten\n")
    run_git(["add", "-A"], sandbox.work)
    run_git(["commit", "-q", "-m", "rewrite"], sandbox.work)
    run_git(["push", "-q", "--force", "origin", f"HEAD:refs/heads/{sandbox.branch}"], sandbox.work)
    plan = repo.plan(FRAUD)
    assert repo.timings.get("replanned") == 1.0
    assert plan.current is not None and plan.current.name == "fraud-llm/v2.2.0"
    assert plan == _fresh(sandbox, make_repo)


def test_a_release_merged_without_touching_the_apps_files_plans_again(
    sandbox: GitOpsSandbox, make_repo: MakeRepo
) -> None:
    """A merge that keeps the branch's files (``-s ours``) touches no path, yet brings a release tag onto it."""
    repo = _warm(sandbox, make_repo)
    side = sandbox.commit_paths({"apps/fraud-llm/config.yaml": "threshold: 0.42\n"}, "2.2.5 hotfix", branch="hotfix")
    sandbox.sign_tag("fraud-llm/v2.2.5", side, {"Model-Digest": DIGEST, "Data-Version": "ds-9"})
    before = repo.plan(FRAUD)  # the tag is fetched; its commit is not on the deploy branch
    assert before.target is not None and before.target.name == "fraud-llm/v2.2.0"
    run_git(["fetch", "-q", "origin", sandbox.branch], sandbox.work)
    run_git(["reset", "-q", "--hard", "FETCH_HEAD"], sandbox.work)
    ident = {"GIT_AUTHOR_NAME": "Human", "GIT_AUTHOR_EMAIL": "h@example.com"}
    ident |= {"GIT_COMMITTER_NAME": "Human", "GIT_COMMITTER_EMAIL": "h@example.com"}
    run_git(["merge", "-q", "-s", "ours", "--no-edit", side], sandbox.work, env=ident)
    run_git(["push", "-q", "origin", f"HEAD:refs/heads/{sandbox.branch}"], sandbox.work)
    plan = repo.plan(FRAUD)
    assert repo.timings.get("replanned") == 1.0
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.5"  # now on the branch
    assert plan == _fresh(sandbox, make_repo)


def _fresh(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> RollbackPlan:
    """The plan of an adapter that never planned before: what every early plan must equal."""
    return make_repo(sandbox, background_refresh=False).plan(FRAUD)


def _request(plan):  # type: ignore[no-untyped-def]
    from tests.adapters.test_git_repo import request_for

    return request_for(plan)
