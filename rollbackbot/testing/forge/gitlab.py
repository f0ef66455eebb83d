"""A stand-in for GitLab's merge-request API v4 over a real bare repository (docs.gitlab.com/api/merge_requests).

What it does like GitLab:

- ``POST /projects/:id/merge_requests`` answers 201; 409 "Another open merge request already exists for
  this source branch" for a second open one; 422 when a branch does not exist.
- ``GET …/merge_requests/:iid``: ``detailed_merge_status`` is ``checking`` on the first read after the
  merge request or its branches changed (GitLab computes it asynchronously), then ``mergeable``,
  ``conflict`` (with ``has_conflicts``) or ``not_approved``.
- ``GET …/approvals`` lists approvals of the current source SHA only ("reset approvals on push").
- ``PUT …/merge`` with ``sha``: 409 "SHA does not match HEAD of source branch"; 405 when it is not open
  or lacks approvals; 406 "Branch cannot be merged" on a conflict; 200 with the merged merge request.
- ``PUT …/merge_requests/:iid`` takes ``add_labels`` and ``state_event: close``.
- Webhooks "Merge Request Hook" with ``X-Gitlab-Event`` and ``X-Gitlab-Token``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rollbackbot.testing.forge.git import BareRepo
from rollbackbot.testing.forge.github import Answer, Hook


@dataclass
class MergeRequest:
    iid: int
    title: str
    description: str
    source: str
    target: str
    author: str
    state: str = "opened"  # opened | closed | merged
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    sha_at_close: str | None = None
    labels: list[str] = field(default_factory=list)
    approvals: list[tuple[str, str]] = field(default_factory=list)  # (username, source sha approved)
    known: tuple[str, str] | None = None


class FakeGitLab:
    """One project ``group/project`` on a fake GitLab, backed by the bare repository at ``path``."""

    def __init__(self, project: str, path: Path, *, users: dict[str, str], required_approvals: int = 0) -> None:
        self.project = project
        self.repo = BareRepo(path)
        self.users = users  # token -> username
        self.required_approvals = required_approvals
        self.merge_requests: dict[int, MergeRequest] = {}
        self.requests: list[dict[str, Any]] = []
        self.hooks: list[Hook] = []
        self.outbox: list[tuple[Hook, dict[str, str], bytes]] = []
        self.drop_webhooks = False
        self._iids = itertools.count(1)

    def handle(self, method: str, path: str, query: dict[str, str], body: Any, token: str | None) -> Answer:
        """Answer one REST request (``path`` below ``/api/v4``)."""
        self.requests.append({"method": method, "path": path, "query": query, "body": body})
        user = self.users.get(token or "")
        if user is None:
            return Answer(401, {"message": "401 Unauthorized"})
        for prefix in (f"/projects/{self.project}/", f"/projects/{quote(self.project, safe='')}/"):
            if path.startswith(prefix):
                return self._route(method, path.removeprefix(prefix).strip("/").split("/"), query, body or {}, user)
        return Answer(404, {"message": "404 Project Not Found"})

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any], user: str) -> Answer:
        found = self.merge_requests.get(int(parts[1])) if len(parts) > 1 and parts[1].isdigit() else None
        match (method, parts[2:] if found else parts):
            case ("GET", ["merge_requests"]):
                return self._list(query)
            case ("POST", ["merge_requests"]):
                return self._create(body, user)
        if found is None:
            return Answer(404, {"message": "404 Not found"})
        match (method, parts[2:]):
            case ("GET", []):
                return Answer(200, self.view(found, compute=True))
            case ("PUT", []):
                return self._update(found, body, user)
            case ("GET", ["approvals"]):
                return Answer(200, self._approvals(found))
            case ("POST", ["approve"]):
                return self.approve(found.iid, user)
            case ("PUT", ["merge"]):
                return self._merge(found, body, user)
        return Answer(404, {"message": "404 Not found"})

    def _list(self, query: dict[str, str]) -> Answer:
        state = query.get("state", "all")
        rows = [
            self.view(mr)
            for mr in sorted(self.merge_requests.values(), key=lambda m: -m.iid)
            if state in ("all", mr.state)
            and query.get("source_branch") in (None, mr.source)
            and query.get("target_branch") in (None, mr.target)
        ]
        return Answer(200, rows)

    def _create(self, body: dict[str, Any], user: str) -> Answer:
        source, target = str(body.get("source_branch", "")), str(body.get("target_branch", ""))
        if self.repo.branch(source) is None or self.repo.branch(target) is None or not body.get("title"):
            return Answer(422, {"message": ["Source branch or target branch does not exist"]})
        if any(m.state == "opened" and m.source == source and m.target == target for m in self.merge_requests.values()):
            iid = next(m.iid for m in self.merge_requests.values() if m.source == source and m.state == "opened")
            return Answer(
                409, {"message": [f"Another open merge request already exists for this source branch: !{iid}"]}
            )
        mr = MergeRequest(
            next(self._iids), str(body["title"]), str(body.get("description") or ""), source, target, user
        )
        self.merge_requests[mr.iid] = mr
        self._event(mr, "open", user)
        return Answer(201, self.view(mr))

    def _update(self, mr: MergeRequest, body: dict[str, Any], user: str) -> Answer:
        for label in filter(None, str(body.get("add_labels") or "").split(",")):
            if label not in mr.labels:
                mr.labels.append(label)
        if body.get("state_event") == "close" and mr.state == "opened":
            self.close(mr.iid, user)
        return Answer(200, self.view(mr))

    def close(self, iid: int, user: str) -> None:
        """Close without merging (a person's decision)."""
        mr = self.merge_requests[iid]
        mr.sha_at_close, mr.state = self.repo.branch(mr.source), "closed"
        self._event(mr, "close", user)

    def approve(self, iid: int, user: str) -> Answer:
        """``POST …/approve`` as ``user``: approves the current source SHA."""
        mr = self.merge_requests[iid]
        mr.approvals.append((user, self.repo.branch(mr.source) or ""))
        self._event(mr, "approved", user)
        return Answer(201, self._approvals(mr))

    def _approvals(self, mr: MergeRequest) -> dict[str, Any]:
        head = self.repo.branch(mr.source)
        users = sorted({u for u, sha in mr.approvals if sha == head})
        return {
            "iid": mr.iid,
            "approved": len(users) >= self.required_approvals,
            "approvals_required": self.required_approvals,
            "approvals_left": max(0, self.required_approvals - len(users)),
            "approved_by": [{"user": {"username": u, "name": u}} for u in users],
        }

    def _merge(self, mr: MergeRequest, body: dict[str, Any], user: str) -> Answer:
        head = self.repo.branch(mr.source)
        if mr.state != "opened" or not self._approvals(mr)["approved"]:
            return Answer(405, {"message": "405 Method Not Allowed"})
        if body.get("sha") and body["sha"] != head:
            return Answer(409, {"message": f"SHA does not match HEAD of source branch: {head}"})
        base = self.repo.branch(mr.target)
        assert base is not None and head is not None
        method = "squash" if body.get("squash") else "merge"
        commit = self.repo.merged(base, head, method, f"Merge branch '{mr.source}' into '{mr.target}'\n\n{mr.title}")
        if commit is None or not self.repo.move(mr.target, commit, base):
            return Answer(406, {"message": "Branch cannot be merged"})
        mr.state, mr.merged_by, mr.merge_commit_sha, mr.sha_at_close = "merged", user, commit, head
        self._event(mr, "merge", user)
        return Answer(200, self.view(mr))

    def view(self, mr: MergeRequest, *, compute: bool = False) -> dict[str, Any]:
        """The merge request object; a single GET starts the asynchronous mergeability check."""
        head = mr.sha_at_close if mr.state != "opened" else self.repo.branch(mr.source)
        base = self.repo.branch(mr.target) or ""
        status, conflicts = "checking", False
        if mr.state == "opened" and mr.known == (base, head):
            conflicts = head is None or not self.repo.merge_tree(base, head).clean
            approved = self._approvals(mr)["approved"]
            status = "conflict" if conflicts else ("mergeable" if approved else "not_approved")
        elif mr.state == "opened" and compute:
            mr.known = (base, head or "")
        elif mr.state != "opened":
            status = "not_open"
        return {
            "id": 500_000 + mr.iid,
            "iid": mr.iid,
            "project_id": 42,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "source_branch": mr.source,
            "target_branch": mr.target,
            "author": {"username": mr.author},
            "labels": list(mr.labels),
            "sha": head,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": None,
            "merged_by": {"username": mr.merged_by} if mr.merged_by else None,
            "merge_user": {"username": mr.merged_by} if mr.merged_by else None,
            "detailed_merge_status": status,
            "has_conflicts": conflicts,
            "web_url": f"https://gitlab.example/{self.project}/-/merge_requests/{mr.iid}",
        }

    def _event(self, mr: MergeRequest, action: str, user: str) -> None:
        if self.drop_webhooks:
            return
        payload = {
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "user": {"username": user},
            "project": {"path_with_namespace": self.project},
            "object_attributes": {**self.view(mr), "action": action},
        }
        for hook in self.hooks:
            headers = {
                "Content-Type": "application/json",
                "X-Gitlab-Event": "Merge Request Hook",
                "X-Gitlab-Token": hook.secret,
            }
            self.outbox.append((hook, headers, json.dumps(payload).encode()))
