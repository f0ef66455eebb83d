"""The fake GitHub against GitHub's published OpenAPI description (tests/fixtures/forge/SOURCE.md).

Every request the real client sends and every answer the fake gives in a whole pull-request life
(create, duplicate create, list, lazy mergeable, reviews, labels, stale-head merge, merge, merge again,
close) must be a documented status of its operation; request bodies validate against the operation's
schema in full, answers against its response schema (fields GitHub documents as always present but the
fake leaves out are allowed; every field the fake does send must have the documented type). The fields
the client reads must be ones GitHub documents as always present.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.forge.github import GitHubForge
from rollbackbot.errors import HeadMoved, NotMergeable
from rollbackbot.testing.forge.github import Answer, FakeGitHub
from rollbackbot.testing.forge.server import create_app
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox

SPEC = json.loads((Path(__file__).parents[1] / "fixtures" / "forge" / "github-pulls.openapi.json").read_text())
TOKEN = "ghs_contract000000000000000000000000"


def _relaxed(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema without ``required`` (``nullable`` becomes a null type)."""
    if isinstance(node, list):
        return [_relaxed(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _relaxed(v) for k, v in node.items() if k not in ("required", "nullable")}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _operation(method: str, path: str) -> dict[str, Any]:
    for template, operations in SPEC["paths"].items():
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return dict(operations[method.lower()])
    raise AssertionError(f"{method} {path} is not an operation of the vendored description")


def _json_schema(content: dict[str, Any]) -> dict[str, Any]:
    return dict(content["application/json"]["schema"])


@pytest.fixture
def fake(tmp_path: Path) -> FakeGitHub:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("app", [Release("1.0.0")])])
    sandbox.git("branch", "rollbackbot/app/inc-0123456789abcdef", "main")
    return FakeGitHub("acme/gitops", sandbox.remote_path, users={TOKEN: "rollbackbot[bot]", "tok-alice": "alice"})


async def test_a_whole_pull_request_life_follows_the_description(fake: FakeGitHub) -> None:
    exchanges: list[tuple[str, str, Any, Answer]] = []
    handle = fake.handle

    def recording(method: str, path: str, query: dict[str, str], body: Any, token: str | None) -> Answer:
        answer = handle(method, path, query, body, token)
        exchanges.append((method, path, body, answer))
        return answer

    fake.handle = recording  # type: ignore[method-assign]
    client = GitHubForge(
        "http://github", SecretStr(TOKEN), "acme/gitops", transport=httpx.ASGITransport(create_app(fake))
    )
    branch = "rollbackbot/app/inc-0123456789abcdef"
    try:
        pull = await client.open_pull_request(branch, "main", "rollback(app): v2 -> v1", "body")
        again = await client.open_pull_request(branch, "main", "rollback(app): v2 -> v1", "body")  # 422, adopted
        assert again.number == pull.number and len(fake.pulls) == 1
        assert (await client.pull_request(pull.number)).mergeable is None  # GitHub computes it lazily
        assert (await client.pull_request(pull.number)).mergeable is True
        await client.add_labels(pull.number, ["rollback"])
        fake.review(pull.number, "alice", {"event": "APPROVE"})
        assert [r.state for r in (await client.pull_request(pull.number)).reviews] == ["APPROVED"]
        with pytest.raises(HeadMoved):
            await client.merge(pull.number, "0" * 40, "merge")
        merge_commit = await client.merge(pull.number, pull.head_sha, "merge")
        with pytest.raises(NotMergeable):
            await client.merge(pull.number, pull.head_sha, "merge")
        merged = await client.find_pull_request(branch, "main")
        assert merged is not None and merged.merged and merged.merge_commit == merge_commit
    finally:
        await client.aclose()
    fake.handle = handle  # type: ignore[method-assign]
    assert {(m, a.status) for m, p, _, a in exchanges if p.endswith("/merge")} == {
        ("PUT", 409),
        ("PUT", 200),
        ("PUT", 405),
    }
    for method, path, body, answer in exchanges:
        operation = _operation(method, path)
        assert str(answer.status) in operation["responses"], f"{method} {path}: {answer.status} is not documented"
        if body is not None and "requestBody" in operation:
            jsonschema.validate(body, _json_schema(operation["requestBody"]["content"]))  # requests: in full
        documented = operation["responses"][str(answer.status)]
        if "content" in documented:
            jsonschema.validate(answer.body, _relaxed(_json_schema(documented["content"])))


def test_fields_the_client_reads_are_always_sent_by_github() -> None:
    pull = _json_schema(_operation("GET", "/repos/o/r/pulls/1")["responses"]["200"]["content"])
    assert {"number", "state", "html_url", "head", "base", "merged", "mergeable", "merge_commit_sha"} <= set(
        pull["required"]
    )
    assert {"ref", "sha"} <= set(pull["properties"]["head"]["required"])
    assert "ref" in pull["properties"]["base"]["required"]
    reviews = _json_schema(_operation("GET", "/repos/o/r/pulls/1/reviews")["responses"]["200"]["content"])
    assert {"user", "state", "commit_id"} <= set(reviews["items"]["required"])
    merged = _json_schema(_operation("PUT", "/repos/o/r/pulls/1/merge")["responses"]["200"]["content"])
    assert {"sha", "merged"} <= set(merged["required"])
