"""Readiness rules (core/readiness.py): the cases ``make mutation`` found unpinned.

Blocker names are metric label values and the JSON is the answer of ``GET /api/readiness`` and
``rollbackbot readiness --json``, so both are pinned exactly; so is the table people read.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rollbackbot.core.model import RollbackPlan, SkippedTag
from rollbackbot.core.readiness import (
    REMEDIES,
    AppReadiness,
    Blocker,
    Finding,
    ReadinessReport,
    app_to_json,
    approver_findings,
    evidence_findings,
    plan_findings,
    render_table,
    report_to_json,
    sync_permission_findings,
    template_labels,
)

B = Blocker
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
UNSIGNED = Finding(B.unsigned, "b/v1.0.0: signature does not verify")
NO_TARGET = Finding(B.no_verified_target, "nothing older")


def test_blocker_names_are_the_metric_label_values() -> None:
    assert [b.value for b in Blocker] == [
        "no_verified_target",
        "unsigned",
        "missing_trailers",
        "image_not_pinned",
        "quarantined",
        "path_missing_at_target",
        "argocd_forbidden",
        "argocd_app_missing",
        "approvers_empty",
        "evidence_not_writable",
        "check_failed",
    ]


def test_blockers_are_distinct_and_in_the_fixed_order() -> None:
    item = AppReadiness("b", "p", NOW, findings=(UNSIGNED, NO_TARGET, Finding(B.unsigned, "b/v0.9.0: lightweight")))
    assert item.blockers == (B.no_verified_target, B.unsigned)
    assert AppReadiness("a", "p", NOW).blockers == ()


def test_a_plan_without_target_or_reason_says_there_is_no_verified_release_tag() -> None:
    plan = RollbackPlan("a", "main", "c" * 40, None, None, skipped=(SkippedTag("a/v1", "lightweight tag"),))
    findings, notes = plan_findings(plan)
    assert findings == [
        Finding(B.no_verified_target, "no verified release tag"),
        Finding(B.unsigned, "a/v1: lightweight tag"),
    ]
    assert notes == []


def test_sync_permission() -> None:
    assert sync_permission_findings("a", "ml", False, None) == [
        Finding(B.argocd_forbidden, "the token may not sync ml/a (can-i answered no)")
    ]
    assert sync_permission_findings("a", "ml", None, "timeout") == [
        Finding(B.check_failed, "Argo CD can-i sync ml/a: timeout")
    ]
    assert sync_permission_findings("a", "ml", None, None) == []
    assert sync_permission_findings("a", "ml", True, None) == []
    assert sync_permission_findings("a", "ml", True, "stale error") == []
    assert sync_permission_findings("a", "ml", False, "and an error") == [
        Finding(B.argocd_forbidden, "the token may not sync ml/a (can-i answered no)")
    ]


def test_approvers() -> None:
    assert approver_findings("p", ["U1"], [], "slack: invalid_auth") == [
        Finding(B.approvers_empty, "policy p: slack: invalid_auth")
    ]
    assert approver_findings("p", [], [], None) == [
        Finding(B.approvers_empty, "policy p proposes but lists no approvers")
    ]
    assert approver_findings("p", ["U1", "S2"], iter(()), None) == [
        Finding(B.approvers_empty, "policy p: approvers U1, S2 resolve to nobody")
    ]
    assert approver_findings("p", ["U1"], iter(["U1"]), None) == []


def test_evidence_probe() -> None:
    assert evidence_findings("s3: AccessDenied") == [Finding(B.evidence_not_writable, "s3: AccessDenied")]
    assert evidence_findings(None) == []


def test_a_label_value_with_dot_dot_rules_out_the_whole_path() -> None:
    paths = ["apps/ml/a..b", "apps/ml/ok"]
    assert template_labels("apps/${labels.team}/${labels.app}", paths) == [{"app": "ok", "team": "ml"}]


def test_the_json_answer() -> None:
    blocked = AppReadiness("b", "p-b", NOW, "b/v2.0.0", None, findings=(UNSIGNED,), notes=("n",))
    assert app_to_json(blocked) == {
        "app": "b",
        "policy": "p-b",
        "ready": False,
        "current": "b/v2.0.0",
        "target": None,
        "head": "",
        "checked_at": "2026-12-05T10:00:00+00:00",
        "blockers": [{"reason": "unsigned", "detail": UNSIGNED.detail, "remedy": REMEDIES[B.unsigned]}],
        "notes": ["n"],
    }
    ready = AppReadiness("a", "p-a", NOW, "a/v2.0.0", "a/v1.0.0", head="c" * 40)
    report = ReadinessReport((ready,), NOW, errors=("policy x: Argo CD down",))
    assert report_to_json(report) == {
        "ready": False,
        "checked_at": "2026-12-05T10:00:00+00:00",
        "apps": [app_to_json(ready)],
        "errors": ["policy x: Argo CD down"],
    }
    assert report_to_json(ReadinessReport((ready,), NOW))["ready"] is True


def test_the_table() -> None:
    ready = AppReadiness("alpha", "p-a", NOW, "a/v2.0.0", "a/v1.0.0")
    blocked = AppReadiness("b", "p-b", NOW, None, None, findings=(NO_TARGET, UNSIGNED))
    text = render_table(ReadinessReport((ready, blocked), NOW, errors=("policy x: Argo CD down",)))
    assert text.splitlines() == [
        "APP    POLICY  CURRENT -> TARGET     READY  BLOCKERS",
        "alpha  p-a     a/v2.0.0 -> a/v1.0.0  yes    -",
        "b      p-b     untagged -> none      NO     no_verified_target,unsigned",
        "b: no_verified_target: nothing older",
        f"   fix: {REMEDIES[B.no_verified_target]}",
        "b: unsigned: b/v1.0.0: signature does not verify",
        f"   fix: {REMEDIES[B.unsigned]}",
        "note: policy x: Argo CD down",
        "1 of 2 guarded apps ready",
    ]


def test_the_table_of_a_run_with_no_guarded_app() -> None:
    assert render_table(ReadinessReport((), NOW)).splitlines() == [
        "APP  POLICY  CURRENT -> TARGET  READY  BLOCKERS",
        "0 of 0 guarded apps ready",
    ]
