"""Which paths exist at the deploy branch head: an in-memory listing refreshed after each fetch.

The webhook asks it for every alert ("does this app exist in the GitOps repo?"), so the answer
must cost no git process: one ``git ls-tree`` runs after each fetch, lookups are set membership.
"""

from __future__ import annotations

from rollbackbot.adapters.git.plumbing import Plumbing


def list_paths(plumbing: Plumbing, ref: str) -> frozenset[str]:
    """Every file and directory path in the tree of ``ref`` (a local ref; no network)."""
    listing = plumbing.run("ls-tree", "-r", "-t", "-z", "--name-only", f"{ref}^{{tree}}")
    return frozenset(path for path in listing.split("\0") if path)
