"""The "sync finished" rules, table-driven over the recorded Argo CD v3.5.1 examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from rollbackbot.core.argo_status import (
    app_health,
    is_auto_sync,
    judge_sync,
    last_op_succeeded,
    op_covers_revision,
    op_in_progress,
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
