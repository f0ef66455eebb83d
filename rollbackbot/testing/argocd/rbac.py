"""``GET /api/v1/account/can-i/{resource}/{action}/{subresource}`` as Argo CD's AccountService answers it.

The real server checks the action and resource against its fixed lists (400, gRPC code 3, before any
policy is read), then asks the Casbin enforcer and answers ``{"value": "yes"}`` or ``{"value": "no"}``:
never 403 or 404, also for an application that does not exist. Project-scoped subresources are
``<project>/<name>``; a slash inside a path variable travels percent-encoded (``ml-prod%2Fdocsum-llm``).

The fake's policy: the configured token may do everything except what ``FakeArgoConfig.denied`` lists
(``resource/action/subresource`` globs, settable at runtime with ``POST /_fake/rbac``); a project-role
token (``proj:<project>:<role>``) may act only on subresources of its own project.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from rollbackbot.testing.argocd.decode import ArgoError

# util/rbac in Argo CD v3.5: the lists CanI validates against, in the order its error message prints them.
ACTIONS = ("get", "create", "update", "delete", "sync", "override", "action", "invoke")
RESOURCES = (
    "clusters",
    "projects",
    "applications",
    "applicationsets",
    "repositories",
    "write-repositories",
    "certificates",
    "accounts",
    "gpgkeys",
    "logs",
    "exec",
    "extensions",
)
PROJECT_SCOPED = frozenset({"applications", "applicationsets", "logs", "exec"})


def can_i(resource: str, action: str, subresource: str, *, caller_project: str | None, denied: list[str]) -> str:
    """``"yes"`` or ``"no"``; ArgoError(3) for an action or resource Argo CD does not know."""
    if action not in ACTIONS:
        raise ArgoError(3, f"[{' '.join(ACTIONS)}] does not contain {action}")
    if resource not in RESOURCES:
        raise ArgoError(3, f"[{' '.join(RESOURCES)}] does not contain {resource}")
    if caller_project is not None:
        project = subresource.split("/", 1)[0] if resource in PROJECT_SCOPED else ""
        if project != caller_project:
            return "no"
    request = f"{resource}/{action}/{subresource}"
    return "no" if any(fnmatchcase(request, rule) for rule in denied) else "yes"
