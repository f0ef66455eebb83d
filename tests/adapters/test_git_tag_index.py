"""The tag index beside the deploy branch: per-app freshness on the critical path, cached verdicts that a
changed allowed-signers file invalidates, and a deploy repository that never holds tags."""

from __future__ import annotations

import pytest

from rollbackbot.adapters.git import repo as repo_module
from rollbackbot.adapters.git.tagindex import ReleaseChecks, tag_repository
from rollbackbot.testing.gitops import GitOpsSandbox, Release, run_git
from tests.adapters.conftest import FRAUD, MakeRepo, MakeSandbox

DIGEST = "sha256:" + "cd" * 32


def test_changed_allowed_signers_invalidate_cached_verdicts(make_sandbox: MakeSandbox, make_repo: MakeRepo) -> None:
    sb = make_sandbox(Release("2.1.0"), Release("2.2.0"), Release("2.3.0"))
    repo = make_repo(sb)
    first = repo.plan(FRAUD)
    assert first.target is not None and first.target.name == "fraud-llm/v2.2.0"
    # The release key is no longer trusted: only the stranger's key is.
    stranger = sb.wrong_key.with_suffix(".pub").read_text().split()
    sb.allowed_signers.write_text(f"stranger@example.com {stranger[0]} {stranger[1]}\n")
    again = repo.plan(FRAUD)
    assert again.target is None
    assert {s.name for s in again.skipped} >= {"fraud-llm/v2.2.0", "fraud-llm/v2.1.0"}
    assert all("signature does not verify" in s.reason for s in again.skipped if s.name != "fraud-llm/v2.3.0")


def test_a_release_tagged_after_the_clone_is_seen_at_once(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    repo = make_repo(sandbox, background_refresh=False)
    before = repo.plan(FRAUD)
    assert before.current is not None and before.current.name == "fraud-llm/v2.3.0"
    head = sandbox.commit_paths({"apps/fraud-llm/config.yaml": "threshold: 0.7\n"}, "release 2.4.0")
    sandbox.sign_tag("fraud-llm/v2.4.0", head, {"Model-Digest": DIGEST, "Data-Version": "ds-9"})
    after = repo.plan(FRAUD)  # no background refresh ran: the per-app check on the critical path found it
    assert after.current is not None and after.current.name == "fraud-llm/v2.4.0"
    assert after.target is not None and after.target.name == "fraud-llm/v2.3.0"


def test_deploy_repository_holds_the_branch_and_the_index_holds_the_tags(
    sandbox: GitOpsSandbox, make_repo: MakeRepo
) -> None:
    repo = make_repo(sandbox)
    repo.plan(FRAUD)
    assert run_git(["for-each-ref", "--format=%(refname)", "refs/tags"], repo.workdir).strip() == ""
    index = run_git(["for-each-ref", "--format=%(refname:strip=2)", "refs/tags"], tag_repository(repo.workdir))
    assert sorted(index.split()) == sandbox.tag_names()
    assert (repo.workdir / "objects" / "info" / "commit-graphs").is_dir()  # Bloom filters for `log -- <path>`


def test_rollback_objects_written_in_process_are_valid_git(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    from tests.adapters.test_git_repo import request_for

    repo = make_repo(sandbox)
    plan = repo.plan(FRAUD)
    result = repo.commit_rollback(request_for(plan))
    run_git(["fsck", "--strict", "--no-dangling", "--no-progress"], repo.workdir)  # raises on a malformed object
    assert sandbox.git("rev-parse", f"{result.commit}^@").split() == [plan.head]
    for path in FRAUD.paths:
        assert sandbox.tree_id(result.commit, path) == sandbox.tree_id("fraud-llm/v2.2.0", path)
    before = set(sandbox.git("ls-tree", "-r", "--name-only", plan.head).split())
    after = set(sandbox.git("ls-tree", "-r", "--name-only", result.commit).split())
    outside = {p for p in before | after if not p.startswith(tuple(f"{x}/" for x in FRAUD.paths))}
    assert {p for p in outside if p in before} - after == set()  # nothing else lost
    assert after - before <= {".rollbackbot/quarantine.yaml"} | {p for p in after if p.startswith(FRAUD.paths)}


def test_a_release_verified_by_one_adapter_is_not_verified_again_by_another(
    sandbox: GitOpsSandbox, make_repo: MakeRepo
) -> None:
    """Readiness plans on its own clone; sharing what it verified keeps ssh-keygen off a rollback's path."""
    checks = ReleaseChecks()
    readiness = make_repo(sandbox, checks=checks, background_refresh=False)
    readiness.plan(FRAUD)
    assert "verify" in readiness.timings
    rollbacks = make_repo(sandbox, checks=checks, background_refresh=False)
    plan = rollbacks.plan(FRAUD)
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.0"
    assert "verify" not in rollbacks.timings  # the verdict and image pins came from the shared checks
    alone = make_repo(sandbox, background_refresh=False)
    alone.plan(FRAUD)
    assert "verify" in alone.timings  # without sharing, each adapter verifies for itself


def test_packs_from_many_fetches_are_rolled_up_and_nothing_is_lost(
    sandbox: GitOpsSandbox, make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each branch fetch keeps its pack; past a few they are consolidated, keeping every object."""
    monkeypatch.setattr(repo_module, "PACKS_BEFORE_REPACK", 4)
    repo = make_repo(sandbox, background_refresh=False)
    repo.plan(FRAUD)
    for n in range(12):  # the branch moves before every plan: one more pack per fetch
        sandbox.commit_paths({"platform/ingress.yaml": f"replicas: {n}\n"}, f"platform change {n}")
        repo.plan(FRAUD)
    repo.close()  # waits for a repack in flight
    packs = list((repo.workdir / "objects" / "pack").glob("*.pack"))
    assert len(packs) <= 4 + 2, [p.name for p in packs]  # rolled up (12 fetches would leave 13+)
    run_git(["fsck", "--connectivity-only", "--no-progress"], repo.workdir)  # nothing the branch needs is gone
    plan = make_repo(sandbox, background_refresh=False).plan(FRAUD)
    assert repo.head() == sandbox.head() and plan.target is not None
