"""A stand-in for the GitHub REST API's pull-request surface, over a real bare repository.

What it does like GitHub (docs.github.com/rest/pulls, checked in tests/forge/test_github_contract.py
against the vendored OpenAPI description):

- ``POST /repos/{o}/{r}/pulls`` answers 201; 422 "Validation Failed" when the head branch does not exist
  or an open pull request for the same head and base exists ("A pull request already exists for …").
- ``GET /repos/{o}/{r}/pulls`` filters by ``state`` (default open), ``head`` (``owner:branch``), ``base``.
- ``GET /repos/{o}/{r}/pulls/{n}``: ``mergeable`` is computed lazily: ``null`` (``mergeable_state``
  ``unknown``) on the first read after the pull request or its base or head changed, the real answer after.
- ``PUT …/merge`` with ``sha``: 409 "Head branch was modified" when it is not the head; 405 when the pull
  request is not mergeable (conflict, missing approving reviews, already merged or closed); 200 with the
  merge commit's ``sha``. The merge is a real merge commit (``merge``), or one new commit (``squash``,
  ``rebase``), and the base moves only by compare-and-set.
- Reviews are written by the token's user; a user cannot approve their own pull request (422).
- Webhooks ``pull_request`` and ``pull_request_review`` with ``X-GitHub-Event``, ``X-GitHub-Delivery`` and
  ``X-Hub-Signature-256``; ``drop_webhooks`` loses them, as a real network sometimes does.
- ``fail(status, times, headers)`` answers the next requests with 5xx or rate limits (403/429 with
  ``Retry-After`` or ``X-RateLimit-Remaining: 0``); every answer carries ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollbackbot.testing.forge.git import BareRepo

DOCS = "https://docs.github.com/rest/pulls/pulls"
RATE_LIMIT = 5000


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hook:
    url: str
    secret: str


@dataclass
class Pull:
    number: int
    title: str
    body: str
    head: str  # branch name
    base: str
    user: str
    state: str = "open"
    merged: bool = False
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    head_sha_at_close: str | None = None
    labels: list[str] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    known: tuple[str, str] | None = None  # (base sha, head sha) the mergeable answer was computed for
    mergeable: bool | None = None
    auto_merge: dict[str, Any] | None = None


class FakeGitHub:
    """One repository ``owner/name`` on a fake GitHub, backed by the bare repository at ``path``."""

    def __init__(
        self, repository: str, path: Path, *, users: dict[str, str], required_approvals: int = 0, base_url: str = ""
    ) -> None:
        self.repository = repository
        self.repo = BareRepo(path)
        self.users = users  # token -> login
        self.required_approvals = required_approvals
        self.base_url = base_url or "http://github.invalid"
        self.pulls: dict[int, Pull] = {}
        self.requests: list[dict[str, Any]] = []
        self.hooks: list[Hook] = []
        self.outbox: list[tuple[Hook, dict[str, str], bytes]] = []
        self.drop_webhooks = False
        self.faults: list[Answer] = []
        self.remaining = RATE_LIMIT
        self._numbers = itertools.count(1)
        self._deliveries = itertools.count(1)
        self._review_ids = itertools.count(80_000_001)

    # ---- test controls ---------------------------------------------------------------------------

    def fail(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` API requests with ``status`` (5xx, or a 403/429 rate limit)."""
        message = "API rate limit exceeded" if status in (403, 429) else "Server Error"
        self.faults += [Answer(status, {"message": message, "documentation_url": DOCS}, headers or {})] * times

    def calls(self, method: str, pattern: str) -> list[dict[str, Any]]:
        """Recorded requests whose method matches and whose path matches the regex ``pattern``."""
        return [r for r in self.requests if r["method"] == method and re.fullmatch(pattern, r["path"])]

    # ---- dispatch ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any, token: str | None) -> Answer:
        """Answer one REST request (``path`` without the API prefix)."""
        self.requests.append({"method": method, "path": path, "query": query, "body": body})
        user = self.users.get(token or "")
        if user is None:
            return self._limited(Answer(401, {"message": "Bad credentials", "documentation_url": DOCS}))
        if self.faults:
            return self._limited(self.faults.pop(0))
        self.remaining = max(0, self.remaining - 1)
        if method == "POST" and path == "/graphql":
            return self._limited(self._graphql(body or {}, user))
        prefix = f"/repos/{self.repository}/"
        if not path.startswith(prefix):
            return self._limited(_not_found())
        answer = self._route(method, path.removeprefix(prefix).strip("/").split("/"), query, body or {}, user)
        return self._limited(answer)

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: Any, user: str) -> Answer:
        match (method, parts):
            case ("GET", ["pulls"]):
                return self._list(query)
            case ("POST", ["pulls"]):
                return self._create(body, user)
            case ("GET", ["pulls", number]):
                return self._with_pull(number, lambda p: Answer(200, self.view(p, compute=True)))
            case ("PATCH", ["pulls", number]):
                return self._with_pull(number, lambda p: self._update(p, body, user))
            case ("GET", ["pulls", number, "reviews"]):
                return self._with_pull(number, lambda p: Answer(200, p.reviews))
            case ("POST", ["pulls", number, "reviews"]):
                return self._with_pull(number, lambda p: self.review(p.number, user, body))
            case ("PUT", ["pulls", number, "merge"]):
                return self._with_pull(number, lambda p: self._merge(p, body, user))
            case ("POST", ["issues", number, "labels"]):
                return self._with_pull(number, lambda p: self._label(p, body))
            case ("POST", ["issues", number, "comments"]):
                return self._with_pull(number, lambda p: self._comment(p, body, user))
        return _not_found()

    def _with_pull(self, number: str, then: Any) -> Answer:
        pull = self.pulls.get(int(number)) if number.isdigit() else None
        result: Answer = then(pull) if pull else _not_found()
        return result

    def _limited(self, answer: Answer) -> Answer:
        headers = {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Resource": "core",
        }
        return Answer(answer.status, answer.body, {**headers, **answer.headers})

    # ---- pulls ---------------------------------------------------------------------------------------

    def _list(self, query: dict[str, str]) -> Answer:
        state = query.get("state", "open")
        owner = self.repository.split("/")[0]
        head = query.get("head")
        found = [
            self.view(p)
            for p in sorted(self.pulls.values(), key=lambda p: -p.number)
            if state in ("all", p.state)
            and (head is None or head == f"{owner}:{p.head}")
            and (query.get("base") is None or query.get("base") == p.base)
        ]
        return Answer(200, found)

    def _create(self, body: dict[str, Any], user: str) -> Answer:
        head, base = str(body.get("head", "")), str(body.get("base", ""))
        head = head.split(":", 1)[1] if ":" in head else head
        if not body.get("title") or self.repo.branch(head) is None or self.repo.branch(base) is None:
            field_name = "head" if self.repo.branch(head) is None else "base"
            return _invalid({"resource": "PullRequest", "field": field_name, "code": "invalid"})
        if any(p.state == "open" and p.head == head and p.base == base for p in self.pulls.values()):
            owner = self.repository.split("/")[0]
            message = f"A pull request already exists for {owner}:{head}."
            return _invalid({"resource": "PullRequest", "code": "custom", "message": message})
        pull = Pull(next(self._numbers), str(body["title"]), str(body.get("body") or ""), head, base, user)
        self.pulls[pull.number] = pull
        self._event("pull_request", "opened", pull, user)
        return Answer(201, self.view(pull))

    def _update(self, pull: Pull, body: dict[str, Any], user: str) -> Answer:
        if body.get("state") == "closed" and pull.state == "open":
            self.close(pull.number, user)
        return Answer(200, self.view(pull))

    def close(self, number: int, user: str) -> None:
        """Close the pull request without merging (a person's decision)."""
        pull = self.pulls[number]
        pull.head_sha_at_close = self.repo.branch(pull.head)
        pull.state = "closed"
        self._event("pull_request", "closed", pull, user)

    def review(self, number: int, user: str, body: dict[str, Any]) -> Answer:
        """Submit a review as ``user``: ``{"event": "APPROVE"|"REQUEST_CHANGES"|"COMMENT", "commit_id"?}``."""
        pull = self.pulls[number]
        states = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}
        state = states.get(str(body.get("event", "")))
        if state is None:
            return _invalid({"resource": "PullRequestReview", "field": "event", "code": "invalid"})
        if user == pull.user and state != "COMMENTED":
            return Answer(422, {"message": "Unprocessable Entity", "errors": ["Can not approve your own pull request"]})
        review = {
            "id": next(self._review_ids),
            "user": {"login": user, "type": "User"},
            "body": str(body.get("body") or ""),
            "state": state,
            "commit_id": str(body.get("commit_id") or self.repo.branch(pull.head)),
            "submitted_at": "2026-12-01T00:00:00Z",
            "html_url": f"{self._html(pull)}#pullrequestreview-1",
            "author_association": "MEMBER",
        }
        pull.reviews.append(review)
        self._event("pull_request_review", "submitted", pull, user, review=review)
        self._try_auto_merge(pull)
        return Answer(200, review)

    def _label(self, pull: Pull, body: dict[str, Any]) -> Answer:
        for name in body.get("labels", []):
            if name not in pull.labels:
                pull.labels.append(str(name))
        return Answer(200, [_label(n) for n in pull.labels])

    def _comment(self, pull: Pull, body: dict[str, Any], user: str) -> Answer:
        pull.comments.append(str(body.get("body", "")))
        return Answer(201, {"id": len(pull.comments), "body": pull.comments[-1], "user": {"login": user}})

    # ---- merging -------------------------------------------------------------------------------------

    def _blocker(self, pull: Pull) -> str | None:
        """Why GitHub would refuse the merge now, or None."""
        if pull.state != "open":
            return "Pull Request is not mergeable"
        head = self.repo.branch(pull.head)
        approvals = {r["user"]["login"] for r in pull.reviews if r["state"] == "APPROVED" and r["commit_id"] == head}
        if len(approvals) < self.required_approvals:
            n = self.required_approvals
            return (
                f"At least {n} approving review{'s are' if n > 1 else ' is'} required by reviewers with write access."
            )
        if not self._mergeable(pull):
            return "Pull Request is not mergeable"
        return None

    def _mergeable(self, pull: Pull) -> bool:
        base, head = self.repo.branch(pull.base), self.repo.branch(pull.head)
        if base is None or head is None:
            return False
        return self.repo.merge_tree(base, head).clean

    def _merge(self, pull: Pull, body: dict[str, Any], user: str) -> Answer:
        method = str(body.get("merge_method") or "merge")
        if method not in ("merge", "squash", "rebase"):
            return _invalid({"resource": "PullRequest", "field": "merge_method", "code": "invalid"})
        head = self.repo.branch(pull.head)
        if body.get("sha") and pull.state == "open" and body["sha"] != head:
            return _refused(409, "Head branch was modified. Review and try the merge again.")
        blocker = self._blocker(pull)
        if blocker:
            return _refused(405, blocker)
        sha = self.merge_now(pull, user, method, str(body.get("commit_title") or ""))
        if sha is None:
            return _refused(405, "Base branch was modified. Review and try the merge again.")
        return Answer(200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"})

    def merge_now(self, pull: Pull, user: str, method: str = "merge", title: str = "") -> str | None:
        """Merge as ``user`` (also a person's merge in the web UI); None when the base moved meanwhile."""
        base, head = self.repo.branch(pull.base), self.repo.branch(pull.head)
        assert base is not None and head is not None
        title = title or f"Merge pull request #{pull.number} from {self.repository.split('/')[0]}/{pull.head}"
        commit = self.repo.merged(base, head, method, f"{title}\n\n{pull.title}")
        if commit is None or not self.repo.move(pull.base, commit, base):
            return None
        pull.state, pull.merged, pull.merged_by, pull.merge_commit_sha = "closed", True, user, commit
        pull.head_sha_at_close = head
        self._event("pull_request", "closed", pull, user)
        return commit

    def enable_auto_merge(self, number: int, user: str, method: str) -> None:
        """GraphQL ``enablePullRequestAutoMerge``: merge as soon as the protection rules allow."""
        self.pulls[number].auto_merge = {"enabled_by": {"login": user}, "merge_method": method.lower()}

    def _graphql(self, body: dict[str, Any], user: str) -> Answer:
        """Only ``enablePullRequestAutoMerge``; GraphQL answers 200 with ``errors`` when it refuses."""
        variables = body.get("variables") or {}
        found = re.fullmatch(r"PR_kw(\d{8})", str(variables.get("id", "")))
        pull = self.pulls.get(int(found.group(1))) if found else None
        if "enablePullRequestAutoMerge" not in str(body.get("query")) or pull is None:
            return Answer(
                200, {"data": None, "errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a node"}]}
            )
        if pull.state == "open" and self._blocker(pull) is None:
            # GitHub refuses auto-merge on a pull request that could be merged right now.
            message = "Pull request is in clean status"
            return Answer(200, {"data": None, "errors": [{"type": "UNPROCESSABLE", "message": message}]})
        self.enable_auto_merge(pull.number, user, str(variables.get("method", "MERGE")))
        return Answer(200, {"data": {"enablePullRequestAutoMerge": {"pullRequest": {"number": pull.number}}}})

    def _try_auto_merge(self, pull: Pull) -> None:
        if pull.auto_merge and self._blocker(pull) is None:
            self.merge_now(pull, pull.auto_merge["enabled_by"]["login"], pull.auto_merge["merge_method"])

    # ---- views and events ----------------------------------------------------------------------------

    def _html(self, pull: Pull) -> str:
        return f"https://github.example/{self.repository}/pull/{pull.number}"

    def view(self, pull: Pull, *, compute: bool = False) -> dict[str, Any]:
        """The pull request object; ``compute`` is a single-pull GET, which starts the lazy mergeable job."""
        head = pull.head_sha_at_close if pull.state == "closed" else self.repo.branch(pull.head)
        base = self.repo.branch(pull.base) or ""
        mergeable, state = None, "unknown"
        if pull.state == "open":
            if pull.known == (base, head):
                mergeable = pull.mergeable
                blocker = self._blocker(pull)
                state = "clean" if blocker is None else ("dirty" if not mergeable else "blocked")
            elif compute:
                pull.known, pull.mergeable = (base, head or ""), self._mergeable(pull)  # ready at the next read
        owner = self.repository.split("/")[0]
        return {
            "url": f"{self.base_url}/repos/{self.repository}/pulls/{pull.number}",
            "id": 1_000_000 + pull.number,
            "node_id": f"PR_kw{pull.number:08d}",
            "html_url": self._html(pull),
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "body": pull.body,
            "user": {"login": pull.user, "type": "Bot" if pull.user.endswith("[bot]") else "User"},
            "labels": [_label(n) for n in pull.labels],
            "draft": False,
            "head": {"ref": pull.head, "sha": head, "label": f"{owner}:{pull.head}"},
            "base": {"ref": pull.base, "sha": base, "label": f"{owner}:{pull.base}"},
            "merged": pull.merged,
            "mergeable": mergeable,
            "mergeable_state": state,
            "merged_by": {"login": pull.merged_by} if pull.merged_by else None,
            "merge_commit_sha": pull.merge_commit_sha,
            "auto_merge": pull.auto_merge,
        }

    def _event(self, kind: str, action: str, pull: Pull, user: str, **extra: Any) -> None:
        if self.drop_webhooks:
            return
        payload = {
            "action": action,
            "number": pull.number,
            "pull_request": self.view(pull),
            "repository": {"full_name": self.repository},
            "sender": {"login": user},
            **extra,
        }
        raw = json.dumps(payload).encode()
        for hook in self.hooks:
            signature = "sha256=" + hmac.new(hook.secret.encode(), raw, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": kind,
                "X-GitHub-Delivery": f"00000000-0000-4000-8000-{next(self._deliveries):012d}",
                "X-Hub-Signature-256": signature,
                "User-Agent": "GitHub-Hookshot/fake",
            }
            self.outbox.append((hook, headers, raw))


def _label(name: str) -> dict[str, Any]:
    return {"name": name, "color": "ededed", "default": False}


def _not_found() -> Answer:
    return Answer(404, {"message": "Not Found", "documentation_url": DOCS})


def _invalid(error: dict[str, Any]) -> Answer:
    return Answer(422, {"message": "Validation Failed", "errors": [error], "documentation_url": DOCS})


def _refused(status: int, message: str) -> Answer:
    return Answer(status, {"message": message, "documentation_url": DOCS})
