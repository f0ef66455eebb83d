"""Where a revision stands relative to our rollback commit, for the app's paths (the git side of
``rollbackbot.core.argo_status.Lineage``).

Argo CD reports the newest revision it compared against, and the deploy branch keeps moving after
our push (other apps, docs, humans). For a revision R that Argo CD names and our commit X:

* R is X                                              → ``same``
* X is an ancestor of R, the app's paths hold the
  same trees at R as at X                             → ``descendant`` (our rollback is what runs)
* X is an ancestor of R, the paths differ             → ``superseded``, with the first commit in
                                                        X..R that touched them and its subject
* R is an ancestor of X                               → ``older`` (Argo CD has not seen X yet)
* otherwise, or R is not in the clone                 → ``unrelated``

"Unchanged" compares the path trees (one ``cat-file --batch-check``), so a change that was made and
reverted again counts as unchanged. Revisions come from Argo CD's answers: anything but a full hex
object id is ``unrelated`` and never reaches git as an argument.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rollbackbot.adapters.git.plumbing import Plumbing
from rollbackbot.core.argo_status import Lineage, Relation
from rollbackbot.core.commit_message import one_line
from rollbackbot.errors import PermanentError

_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def is_object_id(revision: str) -> bool:
    """A full SHA-1 or SHA-256 object id (lower or upper case), nothing git could read as an option."""
    return _OBJECT_ID.fullmatch(revision.strip().lower()) is not None


def has_commit(plumbing: Plumbing, revision: str) -> bool:
    """The clone holds ``revision`` as a commit."""
    if not is_object_id(revision):
        return False
    return plumbing.attempt("cat-file", "-e", f"{revision.strip().lower()}^{{commit}}").status == 0


def is_ancestor(plumbing: Plumbing, ancestor: str, descendant: str) -> bool:
    """``ancestor`` is reachable from ``descendant`` (a commit is its own ancestor)."""
    outcome = plumbing.attempt("merge-base", "--is-ancestor", ancestor, descendant)
    if outcome.status not in (0, 1):
        raise PermanentError(f"git merge-base failed: {one_line(outcome.stderr, 300)}")
    return outcome.status == 0


def paths_unchanged(plumbing: Plumbing, commit: str, revision: str, paths: Sequence[str]) -> bool:
    """Every path holds the same object (or is absent) at ``revision`` as at ``commit``."""
    found = plumbing.objects([f"{rev}:{path}" for rev in (commit, revision) for path in paths])
    before = [found[f"{commit}:{path}"] for path in paths]
    after = [found[f"{revision}:{path}"] for path in paths]
    return [o.oid if o else None for o in before] == [o.oid if o else None for o in after]


def first_change(plumbing: Plumbing, commit: str, revision: str, paths: Sequence[str]) -> tuple[str, str] | None:
    """The oldest commit in ``commit..revision`` that touched ``paths``: (sha, subject), or None."""
    out = plumbing.run("log", "--reverse", "--format=%H%x00%s", f"{commit}..{revision}", "--", *paths)
    first = next((line for line in out.splitlines() if line), None)
    if first is None:
        return None
    sha, _, subject = first.partition("\x00")
    return sha, one_line(subject, 200)


def relate(plumbing: Plumbing, commit: str, revision: str, paths: Sequence[str]) -> Lineage:
    """The Lineage of ``revision`` relative to our rollback ``commit`` for ``paths`` (both must be fetched)."""
    ours, seen = commit.strip().lower(), revision.strip().lower()
    if ours == seen and is_object_id(seen):
        return Lineage(seen, Relation.same)
    if not (has_commit(plumbing, ours) and has_commit(plumbing, seen)):
        return Lineage(seen if is_object_id(seen) else one_line(revision, 80), Relation.unrelated)
    if is_ancestor(plumbing, ours, seen):
        if paths_unchanged(plumbing, ours, seen, paths):
            return Lineage(seen, Relation.descendant)
        change = first_change(plumbing, ours, seen, paths)
        sha, subject = change if change else (seen, "")
        return Lineage(seen, Relation.superseded, changed_by=sha, subject=subject)
    if is_ancestor(plumbing, seen, ours):
        return Lineage(seen, Relation.older)
    return Lineage(seen, Relation.unrelated)
