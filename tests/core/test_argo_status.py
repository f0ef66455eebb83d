"""The "sync finished" rules, table-driven over the recorded Argo CD v3.5.1 examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from rollbackbot.core.argo_status import (
    Lineage,
    Relation,
    app_health,
    application_problems,
    branch_problem,
    is_auto_sync,
    judge_sync,
    last_op_succeeded,
    op_covers_revision,
    op_in_progress,
    reported_revisions,
)

EXAMPLES = Path(Path(__file__).resolve().parents[1] / "fixtures" / "argocd" / "examples")
X = "c41d7e2a9f0b3c6d8e1f4a7b0c3d6e9f2a5b8c1d"  # the rollback commit in every example
B = "9b1e4c7a2d5f8e0b3c6a9d2f5e8b1c4a7d0f3e6b"  # the bad commit the incident deployed
DELETE = object()


def example(name: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A recorded example, with dotted-path fields set (or removed with DELETE)."""
    doc: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    for dotted, value in (changes or {}).items():
        *parents, leaf = dotted.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = copy.deepcopy(value)
    return doc


FINAL = "app_get_final_synced_healthy"
DEGRADED_DEPLOYMENT = [
    {
        "group": "apps",
        "kind": "Deployment",
        "name": "payments-api",
        "status": "Synced",
        "health": {
            "status": "Degraded",
            "message": 'Deployment "payments-api" exceeded its progress deadline',
        },
    }
]

# (id, example, changes, revision, done, failed, reason substring)
JUDGE_CASES: list[tuple[str, str, dict[str, Any], str, bool, bool, str]] = [
    ("running", "app_get_running", {}, X, False, False, "sync running: one or more tasks are running"),
    ("requested-not-started", "sync_response", {}, X, False, False, "sync requested, not started yet"),
    ("succeeded-progressing", "app_get_succeeded_progressing", {}, X, False, False, "health Progressing"),
    ("failed", "app_get_failed", {}, X, False, True, "operation Failed: one or more objects failed to apply"),
    ("final-done", FINAL, {}, X, True, False, "Synced and Healthy at c41d7e2a9f0b"),
    ("final-upper-case-sha", FINAL, {}, X.upper(), True, False, "Synced and Healthy"),
    (
        "final-other-revision",
        FINAL,
        {},
        B,
        False,
        False,
        "last operation deployed c41d7e2a9f0b, not 9b1e4c7a2d5f",
    ),
    (
        "incident-last-op-was-bad",
        "app_get_incident",
        {},
        X,
        False,
        False,
        "last operation deployed 9b1e4c7a2d5f",
    ),
    (
        "stale-status-before-reconcile",
        FINAL,
        {"status.reconciledAt": "2026-08-22T10:04:00Z"},
        X,
        False,
        False,
        "waiting for reconcile after sync",
    ),
    ("never-reconciled", FINAL, {"status.reconciledAt": DELETE}, X, False, False, "waiting for reconcile"),
    (
        "reconciled-same-second-is-enough",
        FINAL,
        {"status.reconciledAt": "2026-08-22T10:04:01Z"},
        X,
        True,
        False,
        "Synced and Healthy",
    ),
    (
        "degraded-after-reconcile",
        FINAL,
        {"status.health": {"status": "Degraded"}, "status.resources": DEGRADED_DEPLOYMENT},
        X,
        False,
        False,
        'health Degraded: Deployment/payments-api: Deployment "payments-api" exceeded its progress deadline',
    ),
    (
        "degraded-with-app-message",
        FINAL,
        {"status.health": {"status": "Degraded", "message": "boom"}},
        X,
        False,
        False,
        "health Degraded: boom",
    ),
    ("health-missing", FINAL, {"status.health": DELETE}, X, False, False, "health Unknown"),
    ("out-of-sync", FINAL, {"status.sync.status": "OutOfSync"}, X, False, False, "sync status OutOfSync"),
    (
        "synced-elsewhere",
        FINAL,
        {"status.sync.revision": B},
        X,
        False,
        False,
        "sync status Synced at 9b1e4c7a2d5f",
    ),
    (
        "no-operation-state",
        FINAL,
        {"status.operationState": DELETE},
        X,
        False,
        False,
        "no sync operation recorded",
    ),
    ("no-status-at-all", FINAL, {"status": DELETE}, X, False, False, "no sync operation recorded"),
    ("no-finished-at", FINAL, {"status.operationState.finishedAt": DELETE}, X, False, False, "not finished"),
    (
        "no-sync-result",
        FINAL,
        {"status.operationState.syncResult": DELETE},
        X,
        False,
        False,
        "last operation",
    ),
    (
        "error-phase",
        FINAL,
        {
            "status.operationState.phase": "Error",
            "status.operationState.message": "ComparisonError: repo gone",
        },
        X,
        False,
        True,
        "operation Error: ComparisonError: repo gone",
    ),
    (
        "terminated",
        FINAL,
        {"status.operationState.phase": "Failed", "status.operationState.message": "Operation terminated"},
        X,
        False,
        True,
        "operation Failed: Operation terminated",
    ),
    (
        "terminating-while-running",
        "app_get_running",
        {
            "status.operationState.phase": "Terminating",
            "status.operationState.message": "operation is terminating",
        },
        X,
        False,
        True,
        "operation Terminating",
    ),
    (
        "failed-attempt-awaiting-retry",
        "app_get_running",
        {
            "status.operationState.finishedAt": "2026-08-22T10:04:09Z",
            "status.operationState.message": "objects failed to apply. Retrying attempt #1 at 10:05AM.",
        },
        X,
        False,
        False,
        "sync attempt failed, retrying",
    ),
    (
        "parked-by-sync-window",
        "app_get_running",
        {"status.operationState.message": "Sync operation blocked by sync window"},
        X,
        False,
        False,
        "sync blocked by sync window",
    ),
    (
        "other-op-running",
        "app_get_running",
        {},
        B,
        False,
        False,
        "another operation is running (for c41d7e2a9f0b)",
    ),
    (
        "failed-op-of-other-revision-is-not-our-failure",
        "app_get_failed",
        {},
        B,
        False,
        False,
        "last operation deployed c41d7e2a9f0b",
    ),
    (
        "naive-timestamps-read-as-utc",
        FINAL,
        {
            "status.reconciledAt": "2026-08-22T10:04:31",
            "status.operationState.finishedAt": "2026-08-22T10:04:01",
        },
        X,
        True,
        False,
        "Synced and Healthy",
    ),
    ("empty-timestamp", FINAL, {"status.reconciledAt": ""}, X, False, False, "waiting for reconcile"),
]


@pytest.mark.parametrize("case", [pytest.param(case, id=case[0]) for case in JUDGE_CASES])
def test_judge_sync(case: tuple[str, str, dict[str, Any], str, bool, bool, str]) -> None:
    _, name, changes, revision, done, failed, reason = case
    verdict = judge_sync(example(name, changes), revision)
    assert (verdict.done, verdict.failed) == (done, failed), verdict.reason
    assert reason in verdict.reason


def test_judge_sync_tolerates_an_empty_object() -> None:
    verdict = judge_sync({}, X)
    assert not verdict.done and not verdict.failed
    assert verdict.health.sync_status == "Unknown" and verdict.health.health_status == "Unknown"


def test_verdict_carries_the_app_health() -> None:
    health = judge_sync(example(FINAL), X).health
    assert (
        health.app,
        health.sync_status,
        health.health_status,
        health.revision,
        health.operation_phase,
    ) == (
        "payments-api",
        "Synced",
        "Healthy",
        X,
        "Succeeded",
    )


def test_app_health_explains_what_is_not_healthy() -> None:
    health = app_health(example("app_get_incident"))
    assert health.health_status == "Degraded"
    assert health.revision == B
    assert "exceeded its progress deadline" in health.message


def test_wrong_field_type_is_a_value_error_not_a_key_error() -> None:
    with pytest.raises(ValueError, match="status"):
        judge_sync({"status": "not an object"}, X)


@pytest.mark.parametrize(
    ("sync_policy", "expected"),
    [
        pytest.param(DELETE, False, id="no-sync-policy"),
        pytest.param({}, False, id="sync-policy-without-automated"),
        pytest.param({"automated": None}, False, id="automated-null"),
        pytest.param({"automated": {}}, True, id="automated-empty-is-on"),
        pytest.param({"automated": {"prune": True, "selfHeal": True}}, True, id="pre-3.1-no-enabled-field"),
        pytest.param({"automated": {"enabled": True}}, True, id="enabled-true"),
        pytest.param({"automated": {"enabled": False, "prune": True}}, False, id="enabled-false-v3.1"),
    ],
)
def test_is_auto_sync(sync_policy: Any, expected: bool) -> None:
    assert is_auto_sync(example(FINAL, {"spec.syncPolicy": sync_policy})) is expected


def test_is_auto_sync_on_the_recorded_apps() -> None:
    assert is_auto_sync(example("app_get_incident"))
    assert not is_auto_sync(example("rollback_response"))  # auto-sync disabled for the break-glass rollback
    assert not is_auto_sync({})


# (id, example, changes, revision, covers, in progress, last op succeeded)
OPERATION_CASES: list[tuple[str, str, dict[str, Any], str, bool, bool, bool]] = [
    ("requested-op-for-x", "sync_response", {}, X, True, True, False),
    ("running-op-for-x", "app_get_running", {}, X, True, True, False),
    ("running-op-not-for-b", "app_get_running", {}, B, False, True, False),
    ("resolved-sha-in-state", "app_get_running", {"operation.sync.revision": "main"}, X, True, True, False),
    ("finished-op-for-x", FINAL, {}, X, True, False, True),
    ("finished-failed-op-for-x", "app_get_failed", {}, X, True, False, False),
    ("finished-op-for-b", "app_get_incident", {}, X, False, False, True),
    ("nothing-recorded", FINAL, {"status": DELETE}, X, False, False, False),
]


@pytest.mark.parametrize("case", [pytest.param(case, id=case[0]) for case in OPERATION_CASES])
def test_operation_helpers(case: tuple[str, str, dict[str, Any], str, bool, bool, bool]) -> None:
    _, name, changes, revision, covers, in_progress, succeeded = case
    app = example(name, changes)
    assert op_covers_revision(app, revision) is covers
    assert op_in_progress(app) is in_progress
    assert last_op_succeeded(app) is succeeded


# --- the branch moves: descendants, superseding commits (lineage facts from git) ----------------------

Y = "1f2e3d4c5b6a79880716253443526170a9b8c7d6"  # a later commit that kept the app's paths
Z = "7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"  # a later commit that changed the app's paths
U = "0123456789abcdef0123456789abcdef01234567"  # a revision that does not contain X
LATER = {Y: Lineage(Y, Relation.descendant)}
NEWER = {Z: Lineage(Z, Relation.superseded, changed_by=Z, subject="payments-api: bump image by hand")}
AT_Y = {"status.sync.revision": Y}
DEPLOYED_Y = {"status.sync.revision": Y, "status.operationState.syncResult.revision": Y}

# (id, example, changes, lineage, done, failed, superseded, reason substring)
MOVING_CASES: list[tuple[str, str, dict[str, Any], dict[str, Lineage], bool, bool, bool, str]] = [
    (
        "compared-at-descendant",
        FINAL,
        AT_Y,
        LATER,
        True,
        False,
        False,
        "Synced and Healthy at 1f2e3d4c5b6a, which contains c41d7e2a9f0b",
    ),
    (
        "compared-at-descendant-unknown-lineage",
        FINAL,
        AT_Y,
        {},
        False,
        False,
        False,
        "sync status Synced at 1f2e3d4c5b6a",
    ),
    ("deployed-descendant", FINAL, DEPLOYED_Y, LATER, True, False, False, "at 1f2e3d4c5b6a, which contains"),
    (
        "descendant-upper-case-sha",
        FINAL,
        {"status.sync.revision": Y.upper()},
        LATER,
        True,
        False,
        False,
        "Synced and Healthy",
    ),
    (
        "descendant-but-degraded",
        FINAL,
        AT_Y | {"status.health.status": "Degraded"},
        LATER,
        False,
        False,
        False,
        "health Degraded",
    ),
    (
        "descendant-out-of-sync",
        FINAL,
        AT_Y | {"status.sync.status": "OutOfSync"},
        LATER,
        False,
        False,
        False,
        "sync status OutOfSync",
    ),
    ("descendant-op-failed", "app_get_failed", DEPLOYED_Y, LATER, False, True, False, "operation Failed"),
    (
        "descendant-op-running",
        "app_get_running",
        {"operation.sync.revision": Y, "status.operationState.syncResult.revision": Y},
        LATER,
        False,
        False,
        False,
        "sync running",
    ),
    (
        "compared-at-superseding",
        FINAL,
        {"status.sync.revision": Z, "status.sync.status": "OutOfSync"},
        NEWER,
        False,
        False,
        True,
        "superseded by 7a6b5c4d3e2f (payments-api: bump image by hand)",
    ),
    (
        "superseding-op-running",
        "app_get_running",
        {"operation.sync.revision": Z},
        NEWER,
        False,
        False,
        True,
        "superseded by 7a6b5c4d3e2f",
    ),
    ("superseding-wins-over-healthy", FINAL, {"status.sync.revision": Z}, NEWER, False, False, True, "superseded by"),
    (
        "compared-at-older",
        FINAL,
        {"status.sync.revision": B},
        {B: Lineage(B, Relation.older)},
        False,
        False,
        False,
        "sync status Synced at 9b1e4c7a2d5f",
    ),
    (
        "compared-at-unrelated",
        FINAL,
        {"status.sync.revision": U},
        {U: Lineage(U, Relation.unrelated)},
        False,
        False,
        False,
        "at 0123456789ab",
    ),
    (
        "deployed-unrelated",
        FINAL,
        {"status.sync.revision": U, "status.operationState.syncResult.revision": U},
        {U: Lineage(U, Relation.unrelated)},
        False,
        False,
        False,
        "last operation deployed 012345678",
    ),
]


@pytest.mark.parametrize("case", [pytest.param(case, id=case[0]) for case in MOVING_CASES])
def test_judge_sync_on_a_moving_branch(
    case: tuple[str, str, dict[str, Any], dict[str, Lineage], bool, bool, bool, str],
) -> None:
    _, name, changes, lineage, done, failed, superseded, reason = case
    verdict = judge_sync(example(name, changes), X, lineage)
    assert (verdict.done, verdict.failed, verdict.superseded is not None) == (done, failed, superseded), verdict.reason
    assert reason in verdict.reason


def test_superseded_verdict_names_the_commit_and_its_subject() -> None:
    verdict = judge_sync(example(FINAL, {"status.sync.revision": Z}), X, NEWER)
    assert verdict.superseded == NEWER[Z]
    assert verdict.reason == "superseded by 7a6b5c4d3e2f (payments-api: bump image by hand)"


def test_op_covers_a_descendant_only_with_its_lineage() -> None:
    running_y = example(
        "app_get_running", {"operation.sync.revision": Y, "status.operationState.syncResult.revision": Y}
    )
    assert not op_covers_revision(running_y, X)
    assert op_covers_revision(running_y, X, LATER)
    assert not op_covers_revision(running_y, X, {Y: Lineage(Y, Relation.older)})


def test_reported_revisions_are_distinct_lower_case() -> None:
    running = example("app_get_running", {"operation.sync.revision": Y.upper()})
    assert reported_revisions(running) == (Y, X, B)
    assert reported_revisions(example(FINAL)) == (X,)
    assert reported_revisions({}) == ()


# (id, head lineage, problem substring or None)
BRANCH_CASES: list[tuple[str, Lineage, str | None]] = [
    ("head-is-ours", Lineage(X, Relation.same), None),
    ("head-descends-keeping-paths", Lineage(Y, Relation.descendant), None),
    ("head-changed-paths", NEWER[Z], "superseded by 7a6b5c4d3e2f (payments-api: bump image by hand)"),
    ("branch-reset-behind-us", Lineage(B, Relation.older), "no longer contains c41d7e2a9f0b (it is at 9b1e4c7a2d5f)"),
    ("branch-rewritten", Lineage(U, Relation.unrelated), "superseded: the deploy branch no longer contains"),
]


@pytest.mark.parametrize("case", [pytest.param(case, id=case[0]) for case in BRANCH_CASES])
def test_branch_problem(case: tuple[str, Lineage, str | None]) -> None:
    _, head, expected = case
    problem = branch_problem(head, X)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_superseded_subject_is_one_short_line() -> None:
    odd = Lineage(Z, Relation.superseded, changed_by=Z, subject="fix\nForged: line " + "x" * 300)
    assert "\n" not in branch_problem(odd, X)  # type: ignore[operator]
    assert len(branch_problem(odd, X) or "") < 160


# (id, changes, app, project, problem substrings)
PRECHECK_CASES: list[tuple[str, dict[str, Any], str, str, list[str]]] = [
    ("matches", {}, "payments-api", "payments", []),
    ("other-project", {}, "payments-api", "ml-prod", ["in Argo CD project 'payments', the policy says 'ml-prod'"]),
    ("other-name", {}, "checkout", "payments", ["answered for application 'payments-api', not 'checkout'"]),
    ("fields-absent", {"spec.project": DELETE, "metadata.name": DELETE}, "x", "y", []),
]


@pytest.mark.parametrize("case", [pytest.param(case, id=case[0]) for case in PRECHECK_CASES])
def test_application_problems(case: tuple[str, dict[str, Any], str, str, list[str]]) -> None:
    _, changes, app, project, expected = case
    problems = application_problems(example(FINAL, changes), app, project)
    assert len(problems) == len(expected)
    for problem, text in zip(problems, expected, strict=True):
        assert text in problem
