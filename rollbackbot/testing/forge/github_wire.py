"""The fake GitHub's wire shapes: an answer, a webhook target, a pull request's state, GitHub's error bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def unprocessable(message: str) -> Answer:
    """A GraphQL refusal: HTTP 200 with ``errors``."""
    return Answer(200, {"data": None, "errors": [{"type": "UNPROCESSABLE", "message": message}]})


def label(name: str) -> dict[str, Any]:
    return {"name": name, "color": "ededed", "default": False}


def not_found() -> Answer:
    return Answer(404, {"message": "Not Found", "documentation_url": DOCS})


def invalid(error: dict[str, Any]) -> Answer:
    return Answer(422, {"message": "Validation Failed", "errors": [error], "documentation_url": DOCS})


def refused(status: int, message: str) -> Answer:
    return Answer(status, {"message": message, "documentation_url": DOCS})
