"""Which policy an alert falls under, and what its target becomes for that alert.

Purely computational. Label values come from whoever can fire an alert, so a value is only
ever substituted after it passed ``SAFE_VALUE``: no ``/``, no ``..``, nothing a shell, git
pathspec or URL would read specially.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rollbackbot.core.model import ResolvedTarget
from rollbackbot.core.policy import SAFE_VALUE, TEMPLATE, Policy, path_problem
from rollbackbot.errors import AlertRefused, PolicyError

_SHOWN_CHARS = 64  # refusals quote the offending value, but not a megabyte of it


def policy_matches(policy: Policy, labels: Mapping[str, str]) -> bool:
    """Whether every matcher of the policy holds for the labels."""
    return all(matcher.matches(labels) for matcher in policy.spec.matchers)


def select_policy(policies: Sequence[Policy], labels: Mapping[str, str]) -> Policy | None:
    """The first matching policy by file name, then position in the file; None if none match."""
    ordered = sorted(policies, key=lambda policy: (policy.source, policy.index))
    return next((policy for policy in ordered if policy_matches(policy, labels)), None)


def resolve_target(policy: Policy, labels: Mapping[str, str]) -> ResolvedTarget:
    """The policy's target with ``${labels.NAME}`` filled in; AlertRefused if a value is unsafe."""
    target = policy.spec.target

    def fill(template: str, field: str) -> str:
        return TEMPLATE.sub(lambda found: _label_value(policy, labels, found, field), template)

    paths = tuple(fill(path, "paths") for path in target.paths)
    for path in paths:
        # Values are safe one by one; this guards the joined result (e.g. "${a}${b}") as well.
        problem = path_problem(path)
        if problem:
            raise AlertRefused(f"policy {policy.name!r}: resolved path {_show(path)} {problem}")
    return ResolvedTarget(
        apps=tuple(fill(app, "argocdApps") for app in target.argocd_apps),
        project=target.project,
        paths=paths,
        tag_pattern=fill(target.tags, "tags"),
        require_trailers=target.require_trailers,
        allow_delete=target.allow_delete,
    )


def _label_value(policy: Policy, labels: Mapping[str, str], found: re.Match[str], field: str) -> str:
    name = found.group(1)
    where = f"policy {policy.name!r}: label {name!r} (used in target.{field})"
    if name not in labels:
        raise AlertRefused(f"{where} is missing from the alert")
    value = labels[name]
    if not SAFE_VALUE.fullmatch(value):
        raise AlertRefused(f"{where} has value {_show(value)}, which does not match {SAFE_VALUE.pattern}")
    if ".." in value:
        raise AlertRefused(f"{where} has value {_show(value)}, which contains '..'")
    return value


def _show(value: str) -> str:
    # repr() escapes control and bidi characters, so a label cannot forge log lines or Slack text.
    if len(value) > _SHOWN_CHARS:
        return repr(value[:_SHOWN_CHARS]) + f"… ({len(value)} chars)"
    return repr(value)


def policy_for_app(policies: Sequence[Policy], app: str) -> tuple[Policy, ResolvedTarget]:
    """The first policy whose ``app`` matchers accept ``app`` and whose target, resolved for it, names it."""
    for policy in policies:
        if not all(m.matches({"app": app}) for m in policy.spec.matchers if m.name == "app"):
            continue
        try:
            target = resolve_target(policy, {"app": app})
        except AlertRefused:
            continue
        if app in target.apps:
            return policy, target
    raise PolicyError(f"no policy targets app {app!r}")
