"""Refusing junk alerts at the door: an app that does not exist in the GitOps repo costs nothing.

A policy with ``${labels.app}`` serves any app an alert names, so a flood of alerts for made-up
apps would otherwise each open an incident, a metrics series and a git plan queued ahead of real
rollbacks. The check is set membership against the adapter's listing of the branch head (refreshed
with each fetch): no git process, no store write. Before the first fetch nothing is refused.
"""

from __future__ import annotations

from rollbackbot.core.alert_plan import AppKnown
from rollbackbot.core.model import ResolvedTarget
from rollbackbot.ports import GitOpsRepo


def known_apps(git: GitOpsRepo) -> AppKnown:
    """Whether a target's paths are all at the deploy branch head, as of the last fetch (all, before one)."""
    listing = git.head_paths()
    if listing is None:
        return lambda _target: True  # not fetched yet: let the incident try, its plan will tell

    def known(target: ResolvedTarget) -> bool:
        return all(path.strip("/") in listing for path in target.paths)

    return known
