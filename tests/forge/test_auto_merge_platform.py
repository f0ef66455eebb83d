"""``autoMerge: platform`` end to end: the forge's own auto-merge, and the documented fallbacks when it refuses.

GitHub refuses ``enablePullRequestAutoMerge`` while the merge state is not computed yet ("unstable status",
right after the pull request opens) and when the pull request could be merged now ("clean status"); GitLab
answers 405 while ``detailed_merge_status`` is still ``checking``, and merges at once when nothing is pending.
rollbackbot asks again at the next look in the first case and merges itself, head SHA as precondition, in the
second; otherwise the forge merges and rollbackbot syncs Argo CD to its merge commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from rollbackbot.core.incidents import Incident
from tests.forge.rig import APP, pr_policy, pr_rig

pytestmark = pytest.mark.network  # the fake forges answer on loopback

PLATFORM = {"autoMerge": "platform"}


def _details(incident: Incident) -> list[str]:
    return [e.detail for e in incident.events]


async def _eventually(holds: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not holds():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def test_github_auto_merge_asked_again_once_settled_then_github_merges_on_approval(tmp_path: Path) -> None:
    async with pr_rig(tmp_path, policy=pr_policy(PLATFORM), required_approvals=1) as rig:
        base_before = rig.sandbox.head()
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        pull = rig.github.pulls[pr["number"]]
        assert "github refused auto-merge (pending)" in rig.incident(incident_id).events[-1].detail
        await _eventually(lambda: pull.auto_merge is not None)  # asked again once GitHub computed the merge state
        assert rig.incident(incident_id).state.value == "awaiting_approval"
        rig.github.review(pr["number"], "alice", {"event": "APPROVE"})  # GitHub merges it by itself now
        done = await rig.until(incident_id, "rolled_back")
        assert pull.merged and done.rollback_commit == pull.merge_commit_sha == rig.sandbox.head()
        assert rig.sandbox.git("rev-list", "--parents", "-n1", rig.sandbox.head()).split()[1:] == [
            base_before,
            pr["head_sha"],
        ]
        assert not rig.github.calls("PUT", r".*/merge"), "the forge merged; rollbackbot never merges itself"
        assert len(rig.github.calls("POST", "/graphql")) == 2
        assert any("github auto-merge enabled" in d for d in _details(done))
        assert ("sync", APP, pull.merge_commit_sha) in rig.argo.calls


async def test_github_clean_status_falls_back_to_merging_with_the_head_sha(tmp_path: Path) -> None:
    async with pr_rig(tmp_path, policy=pr_policy(PLATFORM)) as rig:  # no required reviews: mergeable at once
        incident_id = rig.send_alert()
        done = await rig.until(incident_id, "rolled_back")
        pr = done.pull_request
        assert [m["body"]["sha"] for m in rig.github.calls("PUT", r".*/merge")] == [pr["head_sha"]]
        assert rig.github.pulls[pr["number"]].auto_merge is None
        assert any("github refused auto-merge (clean)" in d for d in _details(done))
        assert done.approved_by == "github:auto-merge"
        assert done.rollback_commit == pr["merge_commit"] == rig.sandbox.head()


async def test_gitlab_auto_merge_set_once_checked_then_gitlab_merges_on_approval(tmp_path: Path) -> None:
    policy = pr_policy({**PLATFORM, "forge": "gitlab"})
    async with pr_rig(tmp_path, policy=policy, gitlab=True, required_approvals=1) as rig:
        lab = rig.gitlab
        assert lab is not None
        incident_id = rig.send_alert()
        pr = (await rig.until(incident_id, "awaiting_approval")).pull_request
        mr = lab.merge_requests[pr["number"]]
        assert "gitlab refused auto-merge (pending): HTTP 405" in rig.incident(incident_id).events[-1].detail
        await _eventually(lambda: mr.auto_merge_by is not None)  # asked again once GitLab checked mergeability
        assert rig.incident(incident_id).state.value == "awaiting_approval"
        lab.approve(mr.iid, "alice")  # the missing approval: GitLab merges it by itself
        done = await rig.until(incident_id, "rolled_back")
        merges = [r["body"] for r in lab.requests if r["method"] == "PUT" and r["path"].endswith("/merge")]
        assert merges and all(m["auto_merge"] is True and m["sha"] == pr["head_sha"] for m in merges)
        assert done.rollback_commit == mr.merge_commit_sha == rig.sandbox.head()
        assert any("gitlab auto-merge set" in d for d in _details(done))


async def test_gitlab_merges_at_once_when_nothing_is_pending(tmp_path: Path) -> None:
    policy = pr_policy({**PLATFORM, "forge": "gitlab"})
    async with pr_rig(tmp_path, policy=policy, gitlab=True) as rig:
        lab = rig.gitlab
        assert lab is not None
        incident_id = rig.send_alert()
        done = await rig.until(incident_id, "rolled_back")
        mr = lab.merge_requests[done.pull_request["number"]]
        assert done.rollback_commit == mr.merge_commit_sha == rig.sandbox.head()
        assert any("gitlab merged merge request" in d and "at once" in d for d in _details(done))
        assert all(r["body"].get("auto_merge") for r in lab.requests if r["path"].endswith("/merge"))
