"""Argo CD verdicts: the cases ``make mutation`` found unpinned in ``core/argo_status.py``.

An operation without ``sync``, a naive ``reconciledAt`` next to a ``Z`` ``finishedAt``, several
unhealthy resources (their order and "(+N more)"), operations finished or not in odd phases.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rollbackbot.core.argo_status import (
    Lineage,
    Relation,
    app_health,
    judge_sync,
    parse_application,
    short_sha,
    superseded_reason,
)
from tests.core.test_argo_status import DELETE, FINAL, B, X, example


def resource(kind: str, name: str, status: str | None, message: str = "") -> dict[str, Any]:
    health: dict[str, Any] = {} if status is None else {"status": status}
    if message:
        health["message"] = message
    return {"group": "apps", "kind": kind, "name": name, "status": "Synced", "health": health}


DEGRADED = {"status.health": {"status": "Degraded"}}


def test_unhealthy_resources_in_the_apps_own_state_come_first_and_the_rest_are_counted() -> None:
    resources = [
        resource("Pod", "a", "Progressing"),
        resource("Deployment", "b", "Degraded", "exceeded its progress deadline"),
        resource("Service", "c", "Healthy"),
        resource("Job", "d", "Degraded"),
        resource("StatefulSet", "e", "Missing", "gone"),
        resource("ConfigMap", "f", None),
        resource("Ingress", "g", "Degraded"),
    ]
    health = app_health(example(FINAL, {**DEGRADED, "status.resources": resources}))
    assert health.health_status == "Degraded"
    assert health.message == ("Deployment/b: exceeded its progress deadline; Job/d; Ingress/g (+2 more)")


def test_three_unhealthy_resources_are_all_shown() -> None:
    resources = [resource("Pod", "a", "Progressing"), resource("Job", "d", "Degraded"), resource("Pod", "x", "Missing")]
    health = app_health(example(FINAL, {**DEGRADED, "status.resources": resources}))
    assert health.message == "Job/d; Pod/a Progressing; Pod/x Missing"


def test_a_healthy_app_has_no_health_detail_even_with_unhealthy_resources() -> None:
    app = example(FINAL, {"status.resources": [resource("Job", "d", "Degraded")]})
    app["status"]["operationState"].pop("message", None)
    health = app_health(app)
    assert (health.health_status, health.message) == ("Healthy", "")


def test_an_application_without_metadata_has_no_name() -> None:
    assert app_health(example(FINAL, {"metadata": DELETE})).app == ""


@pytest.mark.parametrize(
    ("reconciled", "done"),
    [("2026-08-22T10:04:31", True), ("2026-08-22T10:03:59", False)],  # naive: read as UTC
)
def test_a_naive_reconciled_at_is_compared_as_utc(reconciled: str, done: bool) -> None:
    verdict = judge_sync(example(FINAL, {"status.reconciledAt": reconciled}), X)
    assert verdict.done is done
    assert verdict.failed is False
    if not done:
        assert verdict.reason == "waiting for reconcile after sync"


def test_an_operation_without_sync_is_someone_elses() -> None:
    app = example(
        FINAL,
        {
            "operation": {"info": [{"name": "reason", "value": "manual"}]},
            "status.operationState.syncResult.revision": B,
        },
    )
    verdict = judge_sync(app, X)
    assert (verdict.done, verdict.failed) == (False, False)
    assert verdict.reason == "another operation is running (for ?)"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"status.operationState.phase": DELETE, "status.operationState.finishedAt": DELETE},
            "operation pending but not finished",
        ),
        ({"status.operationState.phase": DELETE}, "operation pending: "),
        ({"status.operationState.phase": "Paused"}, "operation Paused: "),
    ],
)
def test_operations_in_odd_phases_are_not_done(changes: dict[str, Any], reason: str) -> None:
    verdict = judge_sync(example(FINAL, changes), X)
    assert (verdict.done, verdict.failed) == (False, False)
    assert verdict.reason.startswith(reason)


def test_a_superseding_commit_without_subject() -> None:
    lineage = Lineage("a" * 40, Relation.superseded, changed_by="b" * 40)
    assert superseded_reason(lineage) == f"superseded by {'b' * 12} (no subject)"
    assert superseded_reason(Lineage("c" * 40, Relation.superseded)) == f"superseded by {'c' * 12} (no subject)"
    assert short_sha(None) == "?"


def test_a_superseding_commits_subject_is_cut_at_120_characters() -> None:
    subject = "x" * 119 + "yz"
    reason = superseded_reason(Lineage("a" * 40, Relation.superseded, changed_by="b" * 40, subject=subject))
    assert reason == f"superseded by {short_sha('b' * 40)} ({'x' * 119}y)"
    blank = superseded_reason(Lineage("a" * 40, Relation.superseded, subject="  \n "))
    assert blank == f"superseded by {short_sha('a' * 40)} (no subject)"


def test_a_parsed_application_is_a_snapshot_nobody_can_change() -> None:
    parsed = parse_application(example("app_get_final_synced_healthy"))
    with pytest.raises(ValidationError):
        parsed.status = None  # type: ignore[misc]
