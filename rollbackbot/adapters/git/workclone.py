"""Self-repair of the work clone: a deleted or damaged clone is set aside and cloned again.

The work clone (ROLLBACKBOT_GIT_WORKDIR) is a cache of the remote; losing it must not lose a
rollback. ``SelfRepairingRepo`` wraps ``GitOpsRepository``: before each call it checks cheaply
that the clone is still there, and when a call fails it asks ``git fsck`` whether the clone is the
cause. A damaged clone is renamed to ``<workdir>.damaged`` (the previous one replaced), a fresh
repository object clones again, and the call is made once more.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import git

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.core.argo_status import Lineage
from rollbackbot.core.model import ReleaseTag, ResolvedTarget, RollbackPlan, RollbackRequest, RollbackResult
from rollbackbot.errors import AdapterError, ConflictError, NoTargetError, Superseded

log = logging.getLogger("rollbackbot.git")
T = TypeVar("T")
FSCK_TIMEOUT_SECONDS = 120.0


def clone_missing(workdir: Path) -> str | None:
    """Cheap check: the files every bare clone has; a problem, or None."""
    for name in ("HEAD", "config", "objects", "refs"):
        if not (workdir / name).exists():
            return f"{workdir / name} is missing"
    if _has_refs(workdir) and not _has_objects(workdir / "objects"):
        # A fetch into such a clone may quietly download everything again, hiding the damage.
        return f"{workdir / 'objects'} holds no objects but refs point into it"
    return None


def _has_refs(workdir: Path) -> bool:
    packed = workdir / "packed-refs"
    if packed.is_file() and packed.stat().st_size > 0:
        return True
    remotes = workdir / "refs" / "remotes"
    return remotes.is_dir() and any(path.is_file() for path in remotes.rglob("*"))


def _has_objects(objects: Path) -> bool:
    try:
        loose = any(len(entry.name) == 2 for entry in os.scandir(objects))
        packs = (objects / "pack").is_dir() and any(p.endswith(".pack") for p in os.listdir(objects / "pack"))
    except OSError:
        return False
    return loose or packs


def clone_damaged(workdir: Path) -> str | None:
    """Thorough check after a failure: the cheap one, then ``git fsck --connectivity-only``."""
    missing = clone_missing(workdir)
    if missing:
        return missing
    try:
        result = subprocess.run(
            ["git", "--git-dir", str(workdir), "fsck", "--connectivity-only", "--no-progress", "--no-dangling"],
            capture_output=True,
            text=True,
            timeout=FSCK_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"git fsck could not run: {type(exc).__name__}"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return f"git fsck: {lines[0][:200] if lines else f'exit {result.returncode}'}"
    return None


class SelfRepairingRepo:
    """``GitOpsRepo`` that clones again when its work clone was deleted or damaged."""

    def __init__(self, make: Callable[[], GitOpsRepository], workdir: Path) -> None:
        self._make = make
        self.workdir = workdir
        self.inner = make()
        self._lock = threading.Lock()
        self._cloned = False  # once the clone exists, its absence is damage, not a first start
        self.repairs = 0

    def ensure_clone(self) -> None:
        """Create or repair the clone and fetch (at start-up, and from the readiness check)."""
        self._call(lambda repo: repo.ensure_clone())

    def head(self) -> str:
        """The deploy branch head as of the last fetch."""
        return self._call(lambda repo: repo.head())

    def plan(self, target: ResolvedTarget) -> RollbackPlan:
        """Fetch, then compute current and target release for the target's paths."""
        return self._call(lambda repo: repo.plan(target))

    def plan_to(self, target: ResolvedTarget, tag_name: str) -> RollbackPlan:
        """Like ``plan`` but towards ``tag_name``."""
        return self._call(lambda repo: repo.plan_to(target, tag_name))

    def describe_tag(self, name: str) -> ReleaseTag:
        """The release tag ``name`` with its peeled commit and trailers."""
        return self._call(lambda repo: repo.describe_tag(name))

    def find_rollback(self, incident_id: str) -> str | None:
        """The commit on the deploy branch carrying ``Rollback-Incident: <id>``, if any."""
        return self._call(lambda repo: repo.find_rollback(incident_id))

    def commit_rollback(self, request: RollbackRequest) -> RollbackResult:
        """Write and push the rollback commit; exactly once per incident, never forced."""
        return self._call(lambda repo: repo.commit_rollback(request))

    def push_rollback_branch(self, request: RollbackRequest, branch: str) -> RollbackResult:
        """The rollback commit pushed to a pull request's head ``branch`` (pull-request mode)."""
        return self._call(lambda repo: repo.push_rollback_branch(request, branch))

    def lineage(self, commit: str, paths: Sequence[str], revision: str | None = None) -> Lineage:
        """How ``revision`` (default: the branch head, fetched now) relates to ``commit`` for ``paths``."""
        return self._call(lambda repo: repo.lineage(commit, paths, revision))

    def head_paths(self) -> frozenset[str] | None:
        """Every path at the branch head as of the last fetch (in memory: no clone needed)."""
        with self._lock:
            return self.inner.head_paths()

    def _call(self, work: Callable[[GitOpsRepository], T]) -> T:
        repo = self._checked()
        try:
            result = work(repo)
        except (ConflictError, NoTargetError, Superseded):
            raise  # answers about the repository's content, never about the clone
        except (AdapterError, git.GitError, OSError) as exc:
            problem = clone_damaged(self.workdir)
            if problem is None:
                raise
            log.warning("work clone damaged; cloning again", extra={"problem": problem, "error": type(exc).__name__})
            result = work(self._repaired(repo, problem))
        self._cloned = True
        return result

    def _checked(self) -> GitOpsRepository:
        """The repository, repaired first if its clone vanished since it was last used."""
        with self._lock:
            repo = self.inner
        problem = clone_missing(self.workdir)
        if problem and (self._cloned or self.workdir.exists()):
            log.warning("work clone gone; cloning again", extra={"problem": problem})
            return self._repaired(repo, problem)
        return repo

    def _repaired(self, broken: GitOpsRepository, problem: str) -> GitOpsRepository:
        with self._lock:
            if self.inner is not broken:
                return self.inner  # another thread repaired it meanwhile
            self._set_aside()
            self.inner = self._make()
            self.repairs += 1
            log.warning("work clone set aside and cloned again", extra={"problem": problem, "repairs": self.repairs})
            return self.inner

    def _set_aside(self) -> None:
        if not self.workdir.exists():
            return
        aside = self.workdir.with_name(f"{self.workdir.name}.damaged")
        shutil.rmtree(aside, ignore_errors=True)
        self.workdir.rename(aside)
