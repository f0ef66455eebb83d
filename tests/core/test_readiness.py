"""Readiness rules, table-driven: skip reasons to blockers, templated paths to label values, the table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollbackbot.core.model import ReleaseTag, RollbackPlan, SkippedTag
from rollbackbot.core.readiness import (
    REMEDIES,
    AppReadiness,
    Blocker,
    Finding,
    ReadinessReport,
    argocd_read_findings,
    plan_findings,
    render_table,
    skip_blockers,
    template_labels,
)

B = Blocker
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("signature does not verify (no signature found)", [B.unsigned]),
        ("lightweight tag (release tags are annotated and signed)", [B.unsigned]),
        ("ref name does not match the signed tag name ('x/v1.0.0')", [B.unsigned]),
        ("missing trailer Data-Version", [B.missing_trailers]),
        ("trailer Model-Digest is not sha256:<64 hex>", [B.missing_trailers]),
        ("quarantined (incident inc-1)", [B.quarantined]),
        ("Model-Digest quarantined with x/v2.0.0", [B.quarantined]),
        (
            "path apps/x-extra does not exist at x/v1.0.0; refusing to delete it (target.allowDelete is false)",
            [B.path_missing_at_target],
        ),
        (
            "apps/x/deployment.yaml: line 18: image 'r/x:1.0' is pinned by tag '1.0' only, not by digest",
            [B.image_not_pinned],
        ),
        ("k.yaml: line 3: kustomize image 'x' sets newTag '1' without a digest", [B.image_not_pinned]),
        (
            "missing trailer Model-Digest; missing trailer Data-Version; quarantined (incident i)",
            [B.missing_trailers, B.quarantined],
        ),
        ("same Model-Digest as the current release x/v2.0.0", []),
        ("not on the deploy branch (its commit is not an ancestor of the head)", []),
        ("no semver version in the tag name", []),
    ],
)
def test_skip_reasons_map_to_bounded_blockers(reason: str, expected: list[Blocker]) -> None:
    assert skip_blockers(SkippedTag("x/v1.0.0", reason)) == expected


def test_every_blocker_has_a_remedy() -> None:
    assert set(REMEDIES) == set(Blocker) and all(REMEDIES.values())


def _plan(target: ReleaseTag | None, *skipped: SkippedTag) -> RollbackPlan:
    current = ReleaseTag("x/v2.0.0", "b" * 40)
    return RollbackPlan(
        "x", "main", "a" * 40, current, target, skipped, no_target_reason=None if target else "none verified"
    )


def test_a_plan_with_a_target_only_notes_skipped_tags() -> None:
    findings, notes = plan_findings(
        _plan(ReleaseTag("x/v1.0.0", "c" * 40), SkippedTag("x/v1.5.0", "missing trailer Data-Version"))
    )
    assert findings == [] and notes == ["x/v1.5.0 skipped: missing trailer Data-Version"]


def test_a_plan_without_target_blocks_with_each_reason() -> None:
    findings, _ = plan_findings(
        _plan(
            None,
            SkippedTag("x/v1.5.0", "missing trailer Data-Version"),
            SkippedTag("x/v1.0.0", "signature does not verify"),
        )
    )
    assert [f.blocker for f in findings] == [B.no_verified_target, B.missing_trailers, B.unsigned]


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (401, "rejected", [B.argocd_forbidden]),
        (403, "denied", [B.argocd_forbidden]),
        (404, "not found", [B.argocd_app_missing]),
        (None, "timed out", [B.check_failed]),
    ],
)
def test_application_read(status: int | None, error: str, expected: list[Blocker]) -> None:
    assert [f.blocker for f in argocd_read_findings("x", status, [], error)] == expected


def test_wrong_project_is_app_missing() -> None:
    [finding] = argocd_read_findings("x", None, ["application 'x' is in Argo CD project 'other'"], None)
    assert finding.blocker is B.argocd_app_missing


@pytest.mark.parametrize(
    ("template", "paths", "expected"),
    [
        (
            "apps/${labels.app}",
            ["apps", "apps/a", "apps/a/deploy.yaml", "apps/b-1.x"],
            [{"app": "a"}, {"app": "b-1.x"}],
        ),
        ("apps/${labels.app}", ["apps/..", "apps/a..b", "apps/-x", "apps/ok"], [{"app": "ok"}]),  # as unsafe as a label
        ("teams/${labels.team}/${labels.app}", ["teams/ml/chat", "teams/ml"], [{"app": "chat", "team": "ml"}]),
        ("apps/${labels.app}/${labels.app}-cfg", ["apps/a/a-cfg", "apps/a/b-cfg"], [{"app": "a"}]),
        ("apps/x.y/${labels.app}", ["apps/xzy/a", "apps/x.y/b"], [{"app": "b"}]),  # literal parts are not regexes
    ],
)
def test_template_labels(template: str, paths: list[str], expected: list[dict[str, str]]) -> None:
    assert template_labels(template, paths) == expected


def test_table_lists_blockers_and_fixes() -> None:
    ready = AppReadiness("a", "p-a", NOW, "a/v2.0.0", "a/v1.0.0")
    blocked = AppReadiness(
        "b", "p-b", NOW, "b/v2.0.0", None, findings=(Finding(B.unsigned, "b/v1.0.0: signature does not verify"),)
    )
    text = render_table(ReadinessReport((ready, blocked), NOW))
    assert "a/v2.0.0 -> a/v1.0.0" in text and "b/v2.0.0 -> none" in text
    assert "b: unsigned: b/v1.0.0: signature does not verify" in text and REMEDIES[B.unsigned] in text
    assert text.endswith("1 of 2 guarded apps ready")
    assert not ReadinessReport((ready, blocked), NOW).ready and ReadinessReport((ready,), NOW).ready
    assert not ReadinessReport((), NOW).ready  # nothing guarded is not "all ready"
