"""Approve after the deploy branch moved: the rollback is rebuilt on the head as it is now (real git)."""

from __future__ import annotations

from pathlib import Path

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.core.commit_message import parse_commit_trailers
from rollbackbot.core.incidents import IncidentState
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox
from tests.slack.conftest import SUPPORT, make_harness

S = IncidentState


async def test_approval_commits_on_the_new_head_with_the_approver_trailer(tmp_path: Path) -> None:
    sandbox = build_sandbox(
        tmp_path / "gitops", [AppSpec("support-llm", [Release("1.0.0"), Release("1.1.0"), Release("1.2.0")])]
    )
    git = GitOpsRepository(sandbox.remote_url, sandbox.branch, tmp_path / "clone", sandbox.allowed_signers)
    git.ensure_clone()
    harness, _ = await make_harness(tmp_path, git=git)
    await harness.service.start()
    try:
        incident_id = harness.fire(SUPPORT)
        await harness.settle()
        proposed = harness.incident(incident_id)
        assert proposed.state is S.awaiting_approval and proposed.to_ref.tag == "support-llm/v1.1.0"
        planned_head = proposed.plan["head"]

        human = sandbox.commit_paths({"platform/quota.yaml": "cpu: 4\n"}, "raise quota while the proposal waits")
        assert (await harness.click("approve_rollback", incident_id)).status_code == 200
        await harness.settle()

        incident = harness.incident(incident_id)
        assert incident.state is S.rolled_back, incident.events[-1]
        commit = incident.rollback_commit
        assert commit == sandbox.head() and planned_head != human
        assert sandbox.git("rev-parse", f"{commit}^").strip() == human  # on the new head, the human's work kept
        assert sandbox.show(commit, "platform/quota.yaml") == "cpu: 4\n"
        assert sandbox.tree_id(commit, "apps/support-llm") == sandbox.tree_id("support-llm/v1.1.0", "apps/support-llm")
        trailers = parse_commit_trailers(sandbox.log_messages(1)[0])
        assert trailers["Approved-By"] == "Dana Ops U012ABC"
        assert trailers["Rollback-Incident"] == incident_id
    finally:
        await harness.service.stop()
