"""GitHub's pull-request REST API (``Forge``) for one repository.

Calls: ``GET/POST /repos/{o}/{r}/pulls``, ``GET /repos/{o}/{r}/pulls/{n}`` and ``…/reviews``,
``PUT …/merge`` with ``sha`` (409: the head moved; 405: not mergeable), ``POST /issues/{n}/labels``, and
GraphQL ``enablePullRequestAutoMerge`` for ``autoMerge: platform``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from rollbackbot.adapters.forge.http import ForgeHTTP, Reply, message_of
from rollbackbot.core.pull_requests import PullRequest, Review
from rollbackbot.errors import HeadMoved, NotMergeable, PermanentError

API_VERSION = "2022-11-28"


class GitHubForge:
    """``Forge`` over GitHub REST for ``repository`` (``owner/name``)."""

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
        self.owner = repository.split("/", maxsplit=1)[0]
        self._graphql = api_url.rstrip("/") + "/graphql"
        headers = {
            "Authorization": f"Bearer {token.get_secret_value()}",
            "X-GitHub-Api-Version": API_VERSION,
            "Accept": "application/vnd.github+json",
        }
        self.http = ForgeHTTP(
            api_url, headers, forge="github", transport=transport, attempts=attempts, wait_max=wait_max
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def _path(self, rest: str) -> str:
        return f"repos/{self.repository}/{rest}"

    async def find_pull_request(self, branch: str, base: str) -> PullRequest | None:
        params = {"state": "all", "head": f"{self.owner}:{branch}", "base": base, "per_page": "10"}
        reply = _ok(await self.http.call("GET", self._path("pulls"), params=params), "list pull requests")
        pulls = [p for p in reply.body if p["head"]["ref"] == branch]
        return _pull(pulls[0]) if pulls else None

    async def open_pull_request(self, branch: str, base: str, title: str, body: str) -> PullRequest:
        payload = {"title": title, "head": branch, "base": base, "body": body, "maintainer_can_modify": False}
        reply = await self.http.call("POST", self._path("pulls"), body=payload)
        if reply.status == 422 and "already exists" in str(reply.body):
            found = await self.find_pull_request(branch, base)  # a crash after create, or a race: adopt it
            if found is not None:
                return found
        return _pull(_ok(reply, "open pull request").body)

    async def pull_request(self, number: int) -> PullRequest:
        pull = _ok(await self.http.call("GET", self._path(f"pulls/{number}")), "read pull request").body
        reviews = _ok(
            await self.http.call("GET", self._path(f"pulls/{number}/reviews"), params={"per_page": "100"}),
            "read reviews",
        ).body
        return _pull(pull, reviews)

    async def merge(self, number: int, sha: str, method: str) -> str:
        reply = await self.http.call(
            "PUT", self._path(f"pulls/{number}/merge"), body={"sha": sha, "merge_method": method}
        )
        if reply.status == 409:
            raise HeadMoved(f"github: pull request #{number} head is no longer {sha[:12]}: {message_of(reply)}")
        if reply.status == 405:
            raise NotMergeable(f"github: pull request #{number} not mergeable: {message_of(reply)}")
        return str(_ok(reply, "merge pull request").body["sha"])

    async def add_labels(self, number: int, labels: Sequence[str]) -> None:
        _ok(await self.http.call("POST", self._path(f"issues/{number}/labels"), body={"labels": list(labels)}), "label")

    async def enable_auto_merge(self, pull: PullRequest, method: str) -> bool:
        query = (
            "mutation($id: ID!, $method: PullRequestMergeMethod!) {"
            " enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: $method})"
            " { pullRequest { number } } }"
        )
        reply = await self.http.call(
            "POST", self._graphql, body={"query": query, "variables": {"id": pull.node_id, "method": method.upper()}}
        )
        errors = reply.body.get("errors") if isinstance(reply.body, dict) else None
        # "Pull request is in clean status" (already mergeable) or still computing: the caller merges itself.
        return reply.status == 200 and not errors


def _ok(reply: Reply, what: str) -> Reply:
    if reply.status >= 400:
        raise PermanentError(f"github: {what}: HTTP {reply.status}: {message_of(reply)}")
    return reply


def _pull(data: dict[str, Any], reviews: Sequence[dict[str, Any]] = ()) -> PullRequest:
    merged_by = data.get("merged_by") or {}
    return PullRequest(
        number=int(data["number"]),
        url=str(data.get("html_url") or data.get("url") or ""),
        state=str(data["state"]),
        merged=bool(data.get("merged")) or bool(data.get("merged_at")),
        head_sha=str(data["head"]["sha"] or ""),
        base=str(data["base"]["ref"]),
        merge_commit=data.get("merge_commit_sha") if data.get("merged") or data.get("merged_at") else None,
        merged_by=merged_by.get("login"),
        mergeable=data.get("mergeable"),
        node_id=str(data.get("node_id") or ""),
        reviews=tuple(_review(r) for r in reviews),
    )


def _review(data: dict[str, Any]) -> Review:
    author = str((data.get("user") or {}).get("login", ""))
    return Review(author=author, state=str(data["state"]), commit=str(data.get("commit_id") or ""))
