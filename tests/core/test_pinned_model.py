"""Shared value types and their JSON forms: the cases ``make mutation`` found unpinned in ``core/model.py``."""

from __future__ import annotations

from rollbackbot.core.model import (
    AppHealth,
    ReleaseTag,
    ResolvedTarget,
    RollbackPlan,
    RollbackResult,
    SkippedTag,
    plan_from_dict,
    plan_to_dict,
    target_from_dict,
    target_to_dict,
)

D = "sha256:" + "a" * 64


def test_defaults() -> None:
    target = ResolvedTarget(("m",), "ml-prod", ("apps/m",), "m/v*")
    assert (target.require_trailers, target.allow_delete, target.app) == (("Model-Digest", "Data-Version"), False, "m")
    assert ReleaseTag("m/v1.0.0", "c1").trailers == {}
    assert ReleaseTag("m/v1.0.0", "c1").model_digest is None
    assert ReleaseTag("m/v1.0.0", "c1", {"Model-Digest": D}).model_digest == D
    assert (RollbackResult("c" * 40, already_done=False).push_attempts, RollbackResult("c", True).replanned) == (
        1,
        None,
    )
    assert AppHealth("m", "Synced", "Healthy", None, None).message == ""
    plan = RollbackPlan("m", "main", "h" * 40, None, None)
    assert (plan.skipped, plan.diff_stat, plan.changed_paths, plan.no_target_reason, plan.head_is_rollback) == (
        (),
        "",
        (),
        None,
        False,
    )


def test_a_target_record_from_before_require_trailers_and_allow_delete() -> None:
    old = {"apps": ["m"], "project": "ml-prod", "paths": ["apps/m"], "tag_pattern": "m/v*"}
    target = target_from_dict(old)
    assert (target.require_trailers, target.allow_delete) == ((), False)
    full = ResolvedTarget(("m", "m-features"), "ml-prod", ("apps/m",), "m/v*", ("Model-Digest",), allow_delete=True)
    assert target_from_dict(target_to_dict(full)) == full


def test_every_plan_field_survives_its_record() -> None:
    plan = RollbackPlan(
        app="m",
        branch="main",
        head="h" * 40,
        current=ReleaseTag("m/v2.0.0", "c2", {"Model-Digest": D}),
        target=ReleaseTag("m/v1.0.0", "c1", {}),
        skipped=(SkippedTag("m/v1.5.0", "signature does not verify"),),
        diff_stat=" 1 file changed",
        changed_paths=("apps/m/deployment.yaml",),
        no_target_reason="reason kept for the record",
        head_is_rollback=True,
    )
    record = plan_to_dict(plan)
    assert (record["changed_paths"], record["no_target_reason"], record["head_is_rollback"]) == (
        ["apps/m/deployment.yaml"],
        "reason kept for the record",
        True,
    )
    assert plan_from_dict(record) == plan


def test_a_minimal_plan_record_reads_with_defaults() -> None:
    plan = plan_from_dict({"app": "m", "branch": "main", "head": "h" * 40})
    assert plan == RollbackPlan("m", "main", "h" * 40, None, None)
