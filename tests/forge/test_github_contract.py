"""The fake GitHub against GitHub's published OpenAPI description (tests/fixtures/forge/SOURCE.md).

Every request the real client sends and every answer the fake gives in a whole pull-request life
(create, duplicate create, list, lazy mergeable, reviews, labels, stale-head merge, merge, merge again,
close) must be a documented status of its operation; request bodies validate against the operation's
schema in full, answers against its response schema (fields GitHub documents as always present but the
fake leaves out are allowed; every field the fake does send must have the documented type). The fields
the client reads must be ones GitHub documents as always present.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.forge.github import GitHubForge
from rollbackbot.errors import HeadMoved, NotMergeable
from rollbackbot.testing.forge.github import FakeGitHub
from rollbackbot.testing.forge.server import create_app
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox
from tests.forge.contract import check_github_exchange, github_schema, recorded

TOKEN = "ghs_contract000000000000000000000000"


@pytest.fixture
def fake(tmp_path: Path) -> FakeGitHub:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("app", [Release("1.0.0")])])
    sandbox.git("branch", "rollbackbot/app/inc-0123456789abcdef", "main")
    return FakeGitHub("acme/gitops", sandbox.remote_path, users={TOKEN: "rollbackbot[bot]", "tok-alice": "alice"})


async def test_a_whole_pull_request_life_follows_the_description(fake: FakeGitHub) -> None:
    client = GitHubForge(
        "http://github", SecretStr(TOKEN), "acme/gitops", transport=httpx.ASGITransport(create_app(fake))
    )
    branch = "rollbackbot/app/inc-0123456789abcdef"
    with recorded(fake) as exchanges:
        await _pull_request_life(client, fake, branch)
    assert {(m, a.status) for m, p, _, _, a in exchanges if p.endswith("/merge")} == {
        ("PUT", 409),
        ("PUT", 200),
        ("PUT", 405),
    }
    for exchange in exchanges:
        check_github_exchange(exchange)


async def _pull_request_life(client: GitHubForge, fake: FakeGitHub, branch: str) -> None:
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


def test_fields_the_client_reads_are_always_sent_by_github() -> None:
    pull = github_schema("GET", "/repos/o/r/pulls/1", "200")
    assert {"number", "state", "html_url", "head", "base", "merged", "mergeable", "merge_commit_sha"} <= set(
        pull["required"]
    )
    assert {"ref", "sha"} <= set(pull["properties"]["head"]["required"])
    assert "ref" in pull["properties"]["base"]["required"]
    reviews = github_schema("GET", "/repos/o/r/pulls/1/reviews", "200")
    assert {"user", "state", "commit_id"} <= set(reviews["items"]["required"])
    merged = github_schema("PUT", "/repos/o/r/pulls/1/merge", "200")
    assert {"sha", "merged"} <= set(merged["required"])
