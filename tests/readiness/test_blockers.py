"""Each blocker reason, found on real git with ssh-signed tags and the Argo CD stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.core.readiness import AppReadiness, Blocker, ReadinessReport, report_to_json
from rollbackbot.errors import TransientError
from rollbackbot.metrics import REGISTRY
from rollbackbot.readiness import READINESS_METRICS
from tests.readiness.conftest import Rig, policies, policy

B = Blocker
EXPECTED = {
    "good": (),
    "unsigned": (B.no_verified_target, B.unsigned),
    "wrongkey": (B.no_verified_target, B.unsigned),
    "trailers": (B.no_verified_target, B.missing_trailers),
    "unpinned": (B.no_verified_target, B.image_not_pinned),
    "quarantined": (B.no_verified_target, B.quarantined),
    "pathmissing": (B.no_verified_target, B.path_missing_at_target),
    "forbidden": (B.argocd_forbidden,),
    "notinargo": (B.argocd_app_missing,),
    "proposer": (B.approvers_empty,),
}


def by_app(report: ReadinessReport) -> dict[str, AppReadiness]:
    return {item.app: item for item in report.apps}


async def test_every_blocker_reason_on_real_git_and_argocd(rig: Rig) -> None:
    report = await rig.checker().check(policies())
    found = by_app(report)
    assert {app: item.blockers for app, item in found.items()} == EXPECTED
    assert found["good"].ready and found["good"].current == "good/v1.1.0" and found["good"].target == "good/v1.0.0"
    assert not report.ready
    unsigned = found["unsigned"].findings
    assert any("unsigned/v1.0.0: signature does not verify" in f.detail for f in unsigned)
    assert any("missing trailer Data-Version" in f.detail for f in found["trailers"].findings)
    assert any(UNPINNED_TEXT in f.detail for f in found["unpinned"].findings)
    assert "can-i answered no" in found["forbidden"].findings[0].detail
    assert "resolve to nobody" in found["proposer"].findings[0].detail
    for item in found.values():
        assert all(f.remedy for f in item.findings)
    # Read-only: nothing was committed, synced or refreshed.
    assert rig.sandbox.log_messages(1) == ["pathmissing: new path"]
    assert {(r["method"], r["path"].split("/")[3]) for r in rig.argo.requests} == {
        ("GET", "applications"),
        ("GET", "account"),
    }
    assert not any("refresh" in r["query"] for r in rig.argo.requests)


UNPINNED_TEXT = "is pinned by tag '1.0.0' only, not by digest"


async def test_a_group_with_members_makes_the_proposer_ready(rig: Rig) -> None:
    rig.groups["S0EMPTY"] = frozenset({"U0LEAD"})
    report = await rig.checker().check(policies(), app="proposer")
    assert [(item.app, item.ready) for item in report.apps] == [("proposer", True)]


async def test_evidence_not_writable_blocks_every_app(rig: Rig, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    report = await rig.checker(FileEvidenceSink(blocker / "evidence")).check(policies(), app="good")
    (item,) = report.apps
    assert item.blockers == (B.evidence_not_writable,)
    assert "not writable" in item.findings[0].detail
    assert list((tmp_path / "evidence").glob("*")) == []  # the probe of the writable sink leaves nothing


async def test_the_writable_probe_leaves_nothing_behind(rig: Rig) -> None:
    report = await rig.checker().check(policies(), app="good")
    assert report.ready
    assert list((rig.tmp / "evidence").iterdir()) == []


async def test_argocd_token_refused_is_forbidden(rig: Rig) -> None:
    rig.argo.sessions.clear()  # the token is no longer valid: every call answers 401
    report = await rig.checker().check(policies(), app="good")
    assert report.apps[0].blockers == (B.argocd_forbidden,)
    assert "401" in report.apps[0].findings[0].detail


async def test_templated_policy_guards_apps_in_git_and_argocd(rig: Rig) -> None:
    fleet = policy("fleet", "${labels.app}", paths=["apps/${labels.app}"])
    report = await rig.checker().check([fleet])
    found = by_app(report)
    # apps/pathmissing-extra exists in git but not in Argo CD, like notinargo: neither is guarded.
    assert "notinargo" not in found and "pathmissing-extra" not in found
    assert set(found) == {s for s in EXPECTED if s != "notinargo"}
    assert found["good"].ready and found["unsigned"].blockers == (B.no_verified_target, B.unsigned)


async def test_unknown_app_is_an_error_not_a_pass(rig: Rig) -> None:
    report = await rig.checker().check(policies(), app="nope")
    assert not report.ready and report.errors == ("no policy guards app 'nope'",)


async def test_metrics_and_json_follow_the_last_report(rig: Rig) -> None:
    report = await rig.checker().check(policies())
    READINESS_METRICS.report = report
    try:
        assert REGISTRY.get_sample_value("rollbackbot_rollback_ready", {"app": "good", "policy": "p-good"}) == 1.0
        assert (
            REGISTRY.get_sample_value("rollbackbot_rollback_ready", {"app": "unsigned", "policy": "p-unsigned"}) == 0.0
        )
        labels = {"app": "unsigned", "reason": "unsigned"}
        assert REGISTRY.get_sample_value("rollbackbot_rollback_blockers", labels) == 1.0
        assert REGISTRY.get_sample_value("rollbackbot_rollback_blockers", {"app": "good", "reason": "unsigned"}) == 0.0
    finally:
        READINESS_METRICS.report = None
    body = report_to_json(report)
    forbidden = next(a for a in body["apps"] if a["app"] == "forbidden")
    assert forbidden["ready"] is False
    assert forbidden["blockers"][0]["reason"] == "argocd_forbidden" and forbidden["blockers"][0]["remedy"]


@pytest.mark.parametrize("app", ["good"])
async def test_a_newer_bad_tag_is_a_note_when_an_older_one_is_verified(rig: Rig, app: str) -> None:
    rig.sandbox.sign_tag(f"{app}/v1.0.5", rig.sandbox.git("rev-parse", f"{app}/v1.0.0^{{commit}}").strip(), {})
    report = await rig.checker().check(policies(), app=app)
    (item,) = report.apps
    assert item.ready and item.target == "good/v1.0.0"
    assert any("good/v1.0.5 skipped: missing trailer" in note for note in item.notes)


async def test_an_unresolvable_group_blocks_only_when_nobody_else_can_approve(rig: Rig) -> None:
    async def broken(group: str) -> frozenset[str]:
        raise TransientError(f"usergroups.users.list {group}: no_such_subteam")

    checker = rig.checker()
    checker.group_members = broken
    alone = await checker.check(policies(), app="proposer")
    assert alone.apps[0].blockers == (B.approvers_empty,)
    assert "no_such_subteam" in alone.apps[0].findings[0].detail
    approval = {"channel": "C0ONCALL", "approvers": ["U0LEAD", "S0EMPTY"]}
    with_user = policy("p-proposer", "proposer", mode="propose", approval=approval)
    report = await checker.check([with_user], app="proposer")
    assert report.apps[0].ready
    assert any("no_such_subteam" in note for note in report.apps[0].notes)
    checker.group_members = None  # Slack not configured at all
    unconfigured = await checker.check([with_user], app="proposer")
    assert "Slack is not configured" in unconfigured.apps[0].findings[0].detail
