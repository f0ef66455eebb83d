"""GitLab's merge-request API v4 (``Forge``) for one project (``group/project``).

Calls: ``GET/POST /projects/:id/merge_requests``, ``GET /projects/:id/merge_requests/:iid`` and
``…/approvals``, ``PUT …/merge`` with ``sha`` (409: the source branch moved; 405/422: not mergeable),
``PUT …/merge_requests/:iid`` with ``add_labels``; ``auto_merge`` for ``autoMerge: platform``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from rollbackbot.adapters.forge.http import ForgeHTTP, Reply, message_of
from rollbackbot.core.pull_requests import PullRequest, Review
from rollbackbot.errors import HeadMoved, NotMergeable, PermanentError

_COMPUTING = {"checking", "unchecked", "preparing"}


class GitLabForge:
    """``Forge`` over GitLab REST v4 for ``repository`` (``group/project``; the API base ends in ``/api/v4``)."""

    def __init__(
        self,
        api_url: str,
        token: SecretStr,
        repository: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = 4,
        wait_max: float = 8.0,
    ) -> None:
        self.repository = repository
        self._project = f"projects/{quote(repository, safe='')}"
        headers = {"PRIVATE-TOKEN": token.get_secret_value()}
        self.http = ForgeHTTP(
            api_url, headers, forge="gitlab", transport=transport, attempts=attempts, wait_max=wait_max
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def find_pull_request(self, branch: str, base: str) -> PullRequest | None:
        params = {"source_branch": branch, "target_branch": base, "state": "all", "per_page": "10"}
        found = _ok(await self.http.call("GET", f"{self._project}/merge_requests", params=params), "list").body
        return _merge_request(found[0]) if found else None

    async def open_pull_request(self, branch: str, base: str, title: str, body: str) -> PullRequest:
        payload = {"source_branch": branch, "target_branch": base, "title": title, "description": body}
        reply = await self.http.call("POST", f"{self._project}/merge_requests", body=payload)
        if reply.status == 409:  # "Another open merge request already exists for this source branch"
            existing = await self.find_pull_request(branch, base)
            if existing is not None:
                return existing
        return _merge_request(_ok(reply, "open merge request").body)

    async def pull_request(self, number: int) -> PullRequest:
        path = f"{self._project}/merge_requests/{number}"
        data = _ok(await self.http.call("GET", path), "read merge request").body
        approvals = _ok(await self.http.call("GET", f"{path}/approvals"), "read approvals").body
        return _merge_request(data, approvals)

    async def merge(self, number: int, sha: str, method: str) -> str:
        body: dict[str, Any] = {"sha": sha, "squash": method == "squash"}
        reply = await self.http.call("PUT", f"{self._project}/merge_requests/{number}/merge", body=body)
        if reply.status == 409:
            raise HeadMoved(f"gitlab: merge request !{number} source is no longer {sha[:12]}: {message_of(reply)}")
        if reply.status in (405, 406, 422):
            raise NotMergeable(f"gitlab: merge request !{number} not mergeable: {message_of(reply)}")
        data = _ok(reply, "merge").body
        return str(data.get("merge_commit_sha") or data.get("squash_commit_sha") or data.get("sha"))

    async def add_labels(self, number: int, labels: Sequence[str]) -> None:
        path = f"{self._project}/merge_requests/{number}"
        _ok(await self.http.call("PUT", path, body={"add_labels": ",".join(labels)}), "label")

    async def enable_auto_merge(self, pull: PullRequest, method: str) -> bool:
        body = {"sha": pull.head_sha, "auto_merge": True, "squash": method == "squash"}
        reply = await self.http.call("PUT", f"{self._project}/merge_requests/{pull.number}/merge", body=body)
        return reply.status < 300


def _ok(reply: Reply, what: str) -> Reply:
    if reply.status >= 400:
        raise PermanentError(f"gitlab: {what}: HTTP {reply.status}: {message_of(reply)}")
    return reply


def _merge_request(data: dict[str, Any], approvals: dict[str, Any] | None = None) -> PullRequest:
    state = str(data["state"])
    status = str(data.get("detailed_merge_status") or data.get("merge_status") or "")
    mergeable = None if status in _COMPUTING else not bool(data.get("has_conflicts"))
    merged_by = data.get("merged_by") or data.get("merge_user") or {}
    head = str(data.get("sha") or "")
    # GitLab approvals carry no commit: by default a push to the source branch resets them, so they are
    # taken as approvals of the current head.
    reviews = tuple(
        Review(author=str(a["user"]["username"]), state="APPROVED", commit=head)
        for a in (approvals or {}).get("approved_by", [])
    )
    return PullRequest(
        number=int(data["iid"]),
        url=str(data.get("web_url") or ""),
        state="open" if state in ("opened", "locked") else "closed",
        merged=state == "merged",
        head_sha=head,
        base=str(data["target_branch"]),
        merge_commit=(data.get("merge_commit_sha") or data.get("squash_commit_sha")) if state == "merged" else None,
        merged_by=merged_by.get("username"),
        mergeable=mergeable,
        reviews=reviews,
        node_id=str(data["iid"]),
    )
