"""Refusing junk alerts at the door: an app that does not exist in the GitOps repo costs nothing.

A policy with ``${labels.app}`` serves any app an alert names, so a flood of alerts for made-up
apps would otherwise each open an incident, a metrics series and a git plan queued ahead of real
rollbacks. The check is set membership against the adapter's listing of the branch head (refreshed
with each fetch): no git process, no store write. Before the first fetch nothing is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from rollbackbot.core.policy import Policy
from rollbackbot.core.policy_select import resolve_target
from rollbackbot.errors import AlertRefused
from rollbackbot.ports import GitOpsRepo


def app_missing(git: GitOpsRepo, policy: Policy, labels: Mapping[str, str]) -> bool:
    """True when the alert's app has a policy path that is not at the deploy branch head."""
    listing = git.head_paths()
    if listing is None:
        return False  # not fetched yet: let the incident try, its plan will tell
    try:
        target = resolve_target(policy, labels)
    except AlertRefused:
        return False  # recorded as refused by the usual path
    return any(path.strip("/") not in listing for path in target.paths)
