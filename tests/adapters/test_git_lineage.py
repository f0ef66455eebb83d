"""GitOpsRepository.lineage on real git: where a revision Argo CD reports stands relative to our commit."""

from __future__ import annotations

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.core.argo_status import Lineage, Relation
from rollbackbot.testing.gitops import GitOpsSandbox

PATHS = ("apps/fraud-llm", "apps/fraud-llm-features")
OURS = {"apps/fraud-llm/model.yaml": "rolled: back\n"}


def _ours(sandbox: GitOpsSandbox) -> str:
    """Our "rollback" commit X on the remote (any commit to the app's paths will do here)."""
    return sandbox.commit_paths(OURS, "rollback(fraud-llm): 2.3.0 -> 2.2.0", author="rollbackbot <bot@localhost>")


def test_our_own_commit_is_same(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    x = _ours(sandbox)
    assert repo.lineage(x, PATHS, x) == Lineage(x, Relation.same)
    assert repo.lineage(x, PATHS) == Lineage(x, Relation.same), "default: the branch head, fetched now"


def test_unrelated_push_after_ours_is_a_descendant(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    x = _ours(sandbox)
    y = sandbox.commit_paths({"apps/chat/notes.md": "docs\n"}, "chat: notes")
    # y was pushed after the clone's last fetch: looking it up fetches.
    assert repo.lineage(x, PATHS, y) == Lineage(y, Relation.descendant)
    assert repo.lineage(x, PATHS) == Lineage(y, Relation.descendant)


def test_later_change_to_the_paths_supersedes_with_the_first_such_commit(
    sandbox: GitOpsSandbox, repo: GitOpsRepository
) -> None:
    x = _ours(sandbox)
    sandbox.commit_paths({"platform/quota.yaml": "cpu: 4\n"}, "platform: quota")
    z = sandbox.commit_paths({"apps/fraud-llm-features/extra.yaml": "a: 1\n"}, "fraud-llm: hand-tuned features")
    sandbox.commit_paths({"apps/fraud-llm/model.yaml": "again\n"}, "fraud-llm: second change")
    head = sandbox.head()
    assert repo.lineage(x, PATHS) == Lineage(
        head, Relation.superseded, changed_by=z, subject="fraud-llm: hand-tuned features"
    )


def test_change_and_revert_of_the_paths_leaves_them_unchanged(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    x = _ours(sandbox)
    sandbox.commit_paths({"apps/fraud-llm/model.yaml": "tweak\n"}, "fraud-llm: tweak")
    back = sandbox.commit_paths(OURS, "Revert fraud-llm: tweak")
    assert repo.lineage(x, PATHS, back).relation is Relation.descendant


def test_revision_before_ours_is_older(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    before = sandbox.head()
    x = _ours(sandbox)
    assert repo.lineage(x, PATHS, before) == Lineage(before, Relation.older)


def test_branch_rewritten_behind_our_commit(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    before = sandbox.head()
    x = _ours(sandbox)
    assert repo.lineage(x, PATHS).relation is Relation.same
    sandbox.git("update-ref", f"refs/heads/{sandbox.branch}", before)  # a force-push removed X
    assert repo.lineage(x, PATHS) == Lineage(before, Relation.older)


def test_unknown_or_hostile_revisions_are_unrelated(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    x = _ours(sandbox)
    missing = "0123456789abcdef0123456789abcdef01234567"
    assert repo.lineage(x, PATHS, missing) == Lineage(missing, Relation.unrelated)
    hostile = repo.lineage(x, PATHS, "--output=/tmp/pwned")
    assert hostile.relation is Relation.unrelated
    assert repo.lineage(x, PATHS, "main").relation is Relation.unrelated, "only object ids, never ref names"


def test_sibling_history_is_unrelated(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    base = sandbox.head()
    x = _ours(sandbox)
    sandbox.git("update-ref", f"refs/heads/{sandbox.branch}", base)
    other = sandbox.commit_paths({"apps/chat/x.yaml": "b: 2\n"}, "chat: on a rewritten branch")
    assert repo.lineage(x, PATHS, other) == Lineage(other, Relation.unrelated)
