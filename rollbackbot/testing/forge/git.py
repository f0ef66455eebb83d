"""Merges in a real bare repository, the way a forge does them server-side.

``git merge-tree --write-tree`` computes the merged tree without a work tree (git >= 2.38), ``commit-tree``
writes the merge (or squash) commit, and ``update-ref NEW OLD`` moves the base branch only if nobody
moved it meanwhile: a compare-and-set, like the forge's own ref update.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from rollbackbot.testing.gitops import run_git

MERGER = {
    "GIT_AUTHOR_NAME": "GitHub",
    "GIT_AUTHOR_EMAIL": "noreply@github.com",
    "GIT_COMMITTER_NAME": "GitHub",
    "GIT_COMMITTER_EMAIL": "noreply@github.com",
}


@dataclass(frozen=True)
class MergeTree:
    clean: bool
    tree: str | None  # the merged tree when clean


class BareRepo:
    """The forge's copy of the repository (the remote rollbackbot pushes to)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        return run_git(args, self.path, env=env)

    def branch(self, name: str) -> str | None:
        """The commit ``refs/heads/<name>`` points to, or None."""
        try:
            return self.git("rev-parse", "--verify", "-q", f"refs/heads/{name}^{{commit}}").strip() or None
        except subprocess.CalledProcessError:
            return None

    def merge_tree(self, base: str, head: str) -> MergeTree:
        """The tree of merging ``head`` into ``base``; not clean when they conflict."""
        done = subprocess.run(
            ["git", "merge-tree", "--write-tree", "--no-messages", base, head],
            cwd=self.path,
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            return MergeTree(True, done.stdout.decode().split()[0])
        if done.returncode == 1:
            return MergeTree(False, None)
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)

    def commit(self, tree: str, parents: list[str], message: str) -> str:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self.git(*args, "-m", message, env=MERGER).strip()

    def message(self, commit: str) -> str:
        return self.git("log", "-1", "--format=%B", commit)

    def tree_of(self, commit: str) -> str:
        return self.git("rev-parse", f"{commit}^{{tree}}").strip()

    def move(self, branch: str, new: str, old: str) -> bool:
        """Compare-and-set ``refs/heads/<branch>`` from ``old`` to ``new``."""
        try:
            self.git("update-ref", f"refs/heads/{branch}", new, old)
            return True
        except subprocess.CalledProcessError:
            return False

    def delete_branch(self, branch: str) -> None:
        self.git("update-ref", "-d", f"refs/heads/{branch}")

    def merged(self, base: str, head: str, method: str, title: str) -> str | None:
        """The commit that merges ``head`` into ``base`` by ``method``; None when they conflict."""
        result = self.merge_tree(base, head)
        if not result.clean or result.tree is None:
            return None
        if method == "merge":
            return self.commit(result.tree, [base, head], title)
        # squash and rebase (of a one-commit branch) both leave one new commit on the base
        return self.commit(result.tree, [base], title if method == "squash" else self.message(head).strip())
