"""Pull-request mode on GitLab: the same flow against the fake GitLab v4 API over a real bare repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.forge.rig import APP, pr_policy, pr_rig

pytestmark = pytest.mark.network  # the fake GitLab answers on loopback

GITLAB = {"forge": "gitlab"}


async def test_gitlab_approval_by_allowed_user_merges_with_sha_and_syncs(tmp_path: Path) -> None:
    async with pr_rig(tmp_path, policy=pr_policy(GITLAB), gitlab=True) as rig:
        lab = rig.gitlab
        assert lab is not None
        base_before = rig.sandbox.head()
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        mr = lab.merge_requests[pr["number"]]
        assert mr.source == f"rollbackbot/{APP}/{incident_id}" and mr.labels == ["rollback", "rollbackbot"]
        lab.approve(mr.iid, "mallory")  # not an allowed approver: nothing happens
        lab.approve(mr.iid, "alice")
        done = await rig.until(incident_id, "rolled_back")
        assert done.approved_by == "gitlab:alice"
        assert done.rollback_commit == rig.sandbox.head() == mr.merge_commit_sha
        parents = rig.sandbox.git("rev-list", "--parents", "-n1", rig.sandbox.head()).split()[1:]
        assert parents == [base_before, pr["head_sha"]]
        merges = [r for r in lab.requests if r["method"] == "PUT" and r["path"].endswith("/merge")]
        assert [m["body"]["sha"] for m in merges] == [pr["head_sha"]]


async def test_gitlab_merge_request_closed_rejects_and_duplicate_create_is_adopted(tmp_path: Path) -> None:
    async with pr_rig(tmp_path, policy=pr_policy(GITLAB), gitlab=True) as rig:
        lab = rig.gitlab
        assert lab is not None
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        again = await rig.forge_for(rig.policy.spec.git).open_pull_request(pr["branch"], "main", "t", "b")
        assert again.number == pr["number"] and len(lab.merge_requests) == 1  # 409 "already exists" adopted
        lab.close(pr["number"], "alice")
        rejected = await rig.until(incident_id, "rejected")
        assert "closed without merge" in rejected.reason
