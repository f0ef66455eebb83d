"""The fake GitLab against GitLab's published OpenAPI description (tests/fixtures/forge/SOURCE.md).

Every request the real client sends and every answer the fake gives in two merge-request lives (auto-merge
asked while GitLab is still checking, then set and completed by an approval; a merge with a stale SHA, a
merge, a merge again; a duplicate create, labels, a list) must be a documented status of its operation;
request bodies validate in full against the operation's body schema, query parameters must be documented
ones, and answers validate against the response schema: every field the fake sends is documented, with
the documented type where GitLab documents one (see SOURCE.md for how the generated description is read).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.forge.gitlab import GitLabForge
from rollbackbot.core.pull_requests import AutoMergeOutcome
from rollbackbot.errors import HeadMoved, NotMergeable
from rollbackbot.testing.forge.github_wire import Answer
from rollbackbot.testing.forge.gitlab import FakeGitLab
from rollbackbot.testing.forge.server import create_app
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox, run_git
from tests.forge.contract import operation as operation_of
from tests.forge.contract import recorded

SPEC = json.loads((Path(__file__).parents[1] / "fixtures" / "forge" / "gitlab-merge-requests.swagger.json").read_text())
DEFINITIONS: dict[str, Any] = SPEC["definitions"]
PROJECT = "acme/gitops"
TOKEN, ALICE = "glpat-contract0000000000000", "glpat-alice000000000000000"
BRANCHES = ("rollbackbot/app/inc-0123456789abcdef", "rollbackbot/app/inc-fedcba9876543210")


def _schema(node: dict[str, Any], *, request: bool) -> dict[str, Any]:
    """Swagger 2.0 schema → JSON Schema: requests in full; answers as SOURCE.md says GitLab documents them."""
    if "$ref" in node:
        target = _schema(DEFINITIONS[node["$ref"].rsplit("/", 1)[1]], request=request)
        return target if request else {"anyOf": [target, {"type": "array", "items": target}, {"type": "null"}]}
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        properties = {name: _schema(value, request=request) for name, value in node.get("properties", {}).items()}
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if request and node.get("required"):
            schema["required"] = list(node["required"])
        return schema
    if kind == "array":
        return {"type": "array", "items": _schema(node.get("items", {}), request=request)}
    if kind == "string" and not request and not {"example", "format", "enum"} & set(node):
        return {}  # exposed without documentation: the generator writes "string" whatever the value is
    typed: dict[str, Any] = {"type": kind if request else [kind, "null"]} if kind else {}
    return typed | ({"enum": node["enum"]} if "enum" in node else {})


def _check(method: str, path: str, query: dict[str, str], body: Any, answer: Answer) -> None:
    # The project id travels URL-encoded ("acme%2Fgitops"): one path segment, as the template has it.
    operation = operation_of(SPEC, method, "/api/v4" + path.replace(f"/projects/{PROJECT}/", "/projects/1/"))
    assert str(answer.status) in operation["responses"], f"{method} {path}: {answer.status} is not documented"
    parameters = {p["name"]: p for p in operation.get("parameters", [])}
    for name, value in query.items():
        assert parameters.get(name, {}).get("in") == "query", f"{method} {path}: query {name} is not documented"
        if "enum" in parameters[name]:
            assert value in parameters[name]["enum"], f"{method} {path}: {name}={value} is not documented"
        if parameters[name].get("type") == "integer":
            assert value.isdigit(), f"{method} {path}: {name}={value} is not an integer"
    [declared] = [p for p in parameters.values() if p.get("in") == "body"] or [None]
    if body is not None:
        assert declared is not None, f"{method} {path} takes no body"
        jsonschema.validate(body, _schema(declared["schema"], request=True))
    documented = operation["responses"][str(answer.status)]
    if "schema" in documented:
        jsonschema.validate(answer.body, _schema(documented["schema"], request=False))


@pytest.fixture
def fake(tmp_path: Path) -> FakeGitLab:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("app", [Release("1.0.0")])])
    remote, index = sandbox.remote_path, {"GIT_INDEX_FILE": str(tmp_path / "index")}
    for branch in BRANCHES:  # each branch adds a different file, so both merge cleanly one after the other
        blob = run_git(["hash-object", "-w", "--stdin"], remote, stdin=branch.encode()).strip()
        run_git(["read-tree", "main"], remote, env=index)
        run_git(["update-index", "--add", "--cacheinfo", f"100644,{blob},notes/{branch[-16:]}.txt"], remote, env=index)
        tree = run_git(["write-tree"], remote, env=index).strip()
        commit = run_git(["commit-tree", tree, "-p", "main", "-m", branch], remote).strip()
        sandbox.git("update-ref", f"refs/heads/{branch}", commit)
    users = {TOKEN: "rollbackbot-bot", ALICE: "alice"}
    return FakeGitLab(PROJECT, sandbox.remote_path, users=users, required_approvals=1)


async def test_merge_request_lives_follow_the_description(fake: FakeGitLab) -> None:
    with recorded(fake) as exchanges:
        await _merge_request_lives(fake)
    merges = {(m, a.status) for m, p, _, _, a in exchanges if p.endswith("/merge")}
    assert merges == {("PUT", 405), ("PUT", 200), ("PUT", 409)}
    assert ("POST", 409) in {(m, a.status) for m, p, _, _, a in exchanges if p.endswith("/merge_requests")}
    for exchange in exchanges:
        _check(*exchange)


async def _merge_request_lives(fake: FakeGitLab) -> None:
    app = create_app(fake, "/api/v4")
    transport = httpx.ASGITransport(app)
    client = GitLabForge("http://gitlab/api/v4", SecretStr(TOKEN), PROJECT, transport=transport)
    alice = httpx.AsyncClient(transport=transport, base_url="http://gitlab/api/v4", headers={"PRIVATE-TOKEN": ALICE})
    auto_branch, manual_branch = BRANCHES
    try:
        # 1. autoMerge: platform — asked while GitLab still checks, set once it knows, merged by the approval
        opened = await client.open_pull_request(auto_branch, "main", "rollback(app): v2 -> v1", "body")
        again = await client.open_pull_request(auto_branch, "main", "rollback(app): v2 -> v1", "body")  # 409
        assert again.number == opened.number and len(fake.merge_requests) == 1
        assert (await client.enable_auto_merge(opened, "merge")).outcome is AutoMergeOutcome.pending
        assert (await client.pull_request(opened.number)).mergeable is None  # "checking"
        checked = await client.pull_request(opened.number)
        assert checked.mergeable is True
        assert (await client.enable_auto_merge(checked, "merge")).outcome is AutoMergeOutcome.enabled
        await client.add_labels(opened.number, ["rollback", "rollbackbot"])
        approve = f"/projects/{PROJECT.replace('/', '%2F')}/merge_requests/{opened.number}/approve"
        assert (await alice.post(approve, json={"sha": checked.head_sha})).status_code == 201
        merged = await client.find_pull_request(auto_branch, "main")
        assert merged is not None and merged.merged and merged.merge_commit
        # 2. afterApproval — a stale SHA is refused, the right one merges, a second merge is refused
        second = await client.open_pull_request(manual_branch, "main", "rollback(app): v3 -> v1", "body")
        await client.pull_request(second.number)
        assert (await alice.post(approve.replace(f"/{opened.number}/", f"/{second.number}/"), json={})).is_success
        assert [r.author for r in (await client.pull_request(second.number)).reviews] == ["alice"]
        with pytest.raises(HeadMoved):
            await client.merge(second.number, "0" * 40, "merge")
        merge_commit = await client.merge(second.number, second.head_sha, "merge")
        with pytest.raises(NotMergeable):
            await client.merge(second.number, second.head_sha, "merge")
        assert (await client.pull_request(second.number)).merge_commit == merge_commit
    finally:
        await client.aclose()
        await alice.aclose()


def test_fields_the_client_reads_are_documented() -> None:
    merge_request = DEFINITIONS["API_Entities_MergeRequest"]["properties"]
    read = {"iid", "state", "sha", "target_branch", "web_url", "detailed_merge_status", "merge_status"}
    read |= {"has_conflicts", "merge_commit_sha", "squash_commit_sha", "merged_by", "merge_user"}
    assert read <= set(merge_request)
    assert read <= set(DEFINITIONS["API_Entities_MergeRequestBasic"]["properties"])  # what the list answers
    assert DEFINITIONS["API_Entities_MergeRequestApprovals"]["properties"]["approved_by"]["$ref"].endswith("Approvals")
    assert "username" in DEFINITIONS["API_Entities_UserBasic"]["properties"]
    merge = DEFINITIONS["putApiV4ProjectsIdMergeRequestsMergeRequestIidMerge"]["properties"]
    assert {"sha", "squash", "auto_merge"} <= set(merge)
