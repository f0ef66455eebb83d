"""Pull-request mode end to end: the real git adapter and sandbox, the fake GitHub on loopback, the service.

Every test drives the service through the same calls a deployment makes; the fake merges with real git.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from rollbackbot.core.incidents import IncidentState
from rollbackbot.testing.gitops import run_git
from tests.forge.rig import APP, pr_policy, pr_rig

pytestmark = pytest.mark.network  # the fake GitHub answers on loopback, as a real forge would over TCP


async def test_approving_review_merges_with_head_sha_and_syncs_the_merge_commit(tmp_path: Path) -> None:
    async with pr_rig(tmp_path) as rig:
        base_before = rig.sandbox.head()
        incident_id = rig.send_alert()
        waiting = await rig.until(incident_id, "awaiting_approval")
        pr = waiting.pull_request
        assert pr["branch"] == f"rollbackbot/{APP}/{incident_id}"
        assert rig.sandbox.head() == base_before, "nothing reaches the deploy branch before the merge"
        pull = rig.github.pulls[pr["number"]]
        assert pull.labels == ["rollback", "rollbackbot"]
        assert "docsum-llm/v1.0.0" in pull.body and "evidence" in pull.body
        head = rig.sandbox.git("rev-parse", f"refs/heads/{pr['branch']}").strip()
        assert head == pr["head_sha"]
        assert rig.sandbox.git("rev-parse", f"{head}^").strip() == base_before
        assert f"Rollback-Incident: {incident_id}" in rig.sandbox.git("log", "-1", "--format=%B", head)

        rig.github.review(pr["number"], "alice", {"event": "APPROVE"})
        done = await rig.until(incident_id, "rolled_back")
        merge_commit = rig.sandbox.head()
        assert done.rollback_commit == merge_commit == done.pull_request["merge_commit"]
        assert rig.sandbox.git("rev-list", "--parents", "-n1", merge_commit).split()[1:] == [base_before, head]
        assert done.approved_by == "github:alice"
        merges = rig.github.calls("PUT", r"/repos/acme/gitops/pulls/\d+/merge")
        assert [m["body"]["sha"] for m in merges] == [head]
        assert ("sync", APP, merge_commit) in rig.argo.calls


async def test_review_by_someone_not_allowed_does_not_merge(tmp_path: Path) -> None:
    async with pr_rig(tmp_path) as rig:
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        rig.github.review(pr["number"], "mallory", {"event": "APPROVE"})
        await asyncio.sleep(2.5)  # more than two polls
        incident = rig.incident(incident_id)
        assert incident.state.value == "awaiting_approval"
        assert any("mallory" in e.detail and "not an allowed approver" in e.detail for e in incident.events)
        assert not rig.github.calls("PUT", r".*/merge")


async def test_pull_request_closed_without_merge_rejects(tmp_path: Path) -> None:
    async with pr_rig(tmp_path) as rig:
        base_before = rig.sandbox.head()
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        rig.github.close(pr["number"], "alice")
        rejected = await rig.until(incident_id, "rejected")
        assert "closed without merge" in rejected.reason
        assert rig.sandbox.head() == base_before
        assert not rig.argo.calls


async def test_slack_approval_merges_and_a_second_click_does_nothing(tmp_path: Path) -> None:
    async with pr_rig(tmp_path, policy=pr_policy(approval=True)) as rig:
        incident_id = rig.send_alert()
        await rig.until(incident_id, "awaiting_approval")
        first = rig.service.approve(incident_id, "Ada U012ABC")
        second = rig.service.approve(incident_id, "Ada U012ABC")
        assert first.acted and not second.acted
        done = await rig.until(incident_id, "rolled_back")
        assert done.approved_by == "Ada U012ABC"
        assert len(rig.github.calls("PUT", r".*/merge")) == 1
        assert len(rig.github.calls("POST", r"/repos/acme/gitops/pulls")) == 1


async def test_stale_head_at_merge_fails_without_merging(tmp_path: Path) -> None:
    async with pr_rig(tmp_path, policy=pr_policy(approval=True)) as rig:
        base_before = rig.sandbox.head()
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        # Someone pushes to the pull request's branch after rollbackbot wrote it.
        other = rig.sandbox.git("commit-tree", f"{pr['head_sha']}^{{tree}}", "-p", pr["head_sha"], "-m", "sneaky")
        rig.sandbox.git("update-ref", f"refs/heads/{pr['branch']}", other.strip())
        rig.service.approve(incident_id, "Ada U012ABC")
        failed = await rig.until(incident_id, "failed")
        assert "Head branch was modified" in failed.reason
        assert rig.sandbox.head() == base_before
        assert not rig.argo.calls


async def test_lost_webhook_is_covered_by_polling_and_webhook_makes_it_sooner(tmp_path: Path) -> None:
    async with pr_rig(tmp_path, policy=pr_policy({"poll": "1h"})) as rig:
        rig.github.drop_webhooks = True
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        rig.github.review(pr["number"], "alice", {"event": "APPROVE"})
        await asyncio.sleep(0.5)
        assert rig.incident(incident_id).state.value == "awaiting_approval"  # the next poll is an hour away
        # The watchdog / a restart would look again; here: a forge event arrives and nudges it.
        from rollbackbot.prmode import ForgeEvents

        events = ForgeEvents(
            secret="s3cret", store=rig.service.store, clock=rig.service.clock, nudge=rig.service.look_now
        )
        import hashlib
        import hmac
        import json

        body = json.dumps({"action": "submitted", "pull_request": {"head": {"ref": pr["branch"]}}}).encode()
        bad = events.receive({"x-hub-signature-256": "sha256=" + "0" * 64}, body)
        assert bad[0] == 401
        signature = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        status, answer = events.receive({"x-hub-signature-256": signature}, body)
        assert (status, answer["incident"]) == (202, incident_id)
        await rig.until(incident_id, "rolled_back")


async def test_restart_after_branch_push_never_opens_two_pull_requests(tmp_path: Path) -> None:
    async with pr_rig(tmp_path) as rig:
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        await rig.service.stop()
        # A crash lost everything after the push: the incident is back in received with only the branch recorded.
        stored = rig.incident(incident_id)
        rewound = replace(
            stored,
            state=IncidentState.received,
            not_before=None,
            pull_request={k: v for k, v in stored.pull_request.items() if k not in ("number", "url")},
        )
        rig.service.store.save(rewound, IncidentState.awaiting_approval)
        rig.service = rig.new_service()
        await rig.service.start()
        again = await rig.until(incident_id, "awaiting_approval")
        assert again.pull_request["number"] == pr["number"]
        assert again.pull_request["head_sha"] == pr["head_sha"]
        assert len(rig.github.pulls) == 1
        assert "found (opened before)" in again.events[-1].detail


async def test_forge_5xx_and_rate_limit_are_retried(tmp_path: Path) -> None:
    async with pr_rig(tmp_path) as rig:
        rig.github.fail(502, times=2)
        rig.github.fail(403, times=1, headers={"X-RateLimit-Remaining": "0", "Retry-After": "0"})
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        assert len(rig.github.pulls) == 1
        rig.github.review(pr["number"], "alice", {"event": "APPROVE"})
        await rig.until(incident_id, "rolled_back")


async def test_base_moved_with_a_conflict_rebuilds_the_branch_and_merges(tmp_path: Path) -> None:
    async with pr_rig(tmp_path, policy=pr_policy(approval=True)) as rig:
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        # Another rollback-free change to the quarantine file on the base makes the PR conflict.
        work = tmp_path / "human"
        run_git(["clone", "-q", rig.sandbox.remote_url, str(work)], tmp_path)
        (work / ".rollbackbot").mkdir(exist_ok=True)
        (work / ".rollbackbot" / "quarantine.yaml").write_text("# edited by a human\n")
        run_git(["add", "-A"], work)
        run_git(["commit", "-qm", "human edits quarantine"], work)
        run_git(["push", "-q", "origin", "HEAD:main"], work)
        moved_base = rig.sandbox.head()
        rig.service.approve(incident_id, "Ada U012ABC")
        done = await rig.until(incident_id, "rolled_back")
        assert done.pull_request["head_sha"] != pr["head_sha"]
        assert rig.sandbox.git("rev-parse", f"{done.pull_request['head_sha']}^").strip() == moved_base
        assert any("rebuilt" in e.detail for e in done.events)
        assert done.rollback_commit == rig.sandbox.head()


async def test_a_person_merging_in_the_forge_is_taken_as_approval_and_never_merged_again(tmp_path: Path) -> None:
    async with pr_rig(tmp_path) as rig:
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        merge_commit = rig.github.merge_now(rig.github.pulls[pr["number"]], "bob")
        done = await rig.until(incident_id, "rolled_back")
        assert done.approved_by == "github:bob"
        assert done.rollback_commit == merge_commit == rig.sandbox.head()
        assert not rig.github.calls("PUT", r".*/merge")  # rollbackbot saw it merged and did not merge again
        assert ("sync", APP, merge_commit) in rig.argo.calls
