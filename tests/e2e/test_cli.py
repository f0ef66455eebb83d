"""The CLI against real git, the fake Argo CD process and the service's own database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO_ROOT, Stack, service_env

pytestmark = pytest.mark.e2e


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return _cli_with(stack, {}, *args)


def _cli_with(stack: Stack, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLBACKBOT_")} | {
        **service_env(stack.git_url, stack.sandbox.allowed_signers, stack.argocd_url, stack.work / "state"),
        "ROLLBACKBOT_GIT_WORKDIR": str(stack.work / "cli-repo"),  # its own clone beside the service's
        "USER": "dana",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "rollbackbot", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=stack.work,
        timeout=60,
        check=False,
    )


def test_plan_is_a_dry_run(stack: Stack) -> None:
    head = stack.sandbox.head()
    result = _cli(stack, "plan", "--app", "docsum-llm")
    assert result.returncode == 0, result.stderr
    assert "current:  docsum-llm/v1.3.0" in result.stdout
    assert "target:   docsum-llm/v1.1.0" in result.stdout
    assert "skipped:  docsum-llm/v1.2.0" in result.stdout
    assert "apps/docsum-llm/deployment.yaml" in result.stdout  # the diff stat
    assert stack.sandbox.head() == head


def test_manual_rollback_to_a_tag_restores_both_paths(stack: Stack) -> None:
    head = stack.sandbox.head()
    result = _cli(stack, "rollback", "--app", "badge-vision", "--to", "badge-vision/v3.0.0")
    assert result.returncode == 0, result.stderr
    incident = json.loads(result.stdout)
    assert incident["state"] == "rolled_back" and incident["mode"] == "manual"
    assert incident["approved_by"] == "dana (cli)"
    commit = incident["rollback_commit"]
    changed = subprocess.run(
        ["git", "--git-dir", str(stack.sandbox.remote_path), "diff", "--name-only", head, commit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {p.split("/")[1] for p in changed if p.startswith("apps/")} == {"badge-vision", "badge-vision-features"}
    requests = stack.argocd_requests()
    synced = [r["path"] for r in requests if r["method"] == "POST" and str(r["path"]).endswith("/sync")]
    assert synced == ["/api/v1/applications/badge-vision/sync", "/api/v1/applications/badge-vision-features/sync"]

    listed = _cli(stack, "incidents")
    assert incident["id"] in listed.stdout and "rolled_back" in listed.stdout
    shown = _cli(stack, "incidents", incident["id"])
    assert "manual rollback badge-vision/v3.1.0 -> badge-vision/v3.0.0 by dana" in shown.stdout


def test_rollback_to_an_unverified_tag_is_refused(stack: Stack) -> None:
    head = stack.sandbox.head()
    result = _cli(stack, "rollback", "--app", "docsum-llm", "--to", "docsum-llm/v1.2.0")
    assert result.returncode == 2
    assert "docsum-llm/v1.2.0 is not verified" in result.stderr and "signature" in result.stderr
    assert stack.sandbox.head() == head


def test_policy_check_reports_file_and_line(tmp_path: Path, stack: Stack) -> None:
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: rollbackbot/v1\nkind: RollbackPolicy\nmetadata: {name: x}\nspec:\n  mode: sometimes\n"
    )
    result = _cli(stack, "policy", "check", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:5" in result.stderr or "bad.yaml:5" in result.stderr
    assert _cli(stack, "policy", "check", str(REPO_ROOT / "policies")).returncode == 0


def test_incidents_asks_the_running_service_with_the_token_from_the_environment(stack: Stack) -> None:
    result = _cli(stack, "rollback", "--app", "badge-vision", "--to", "badge-vision/v3.0.0")
    incident_id = json.loads(result.stdout)["id"]
    through_api = _cli(stack, "incidents", "--url", stack.service_url)  # ROLLBACKBOT_WEBHOOK_TOKEN is set
    assert through_api.returncode == 0, through_api.stderr
    assert incident_id in through_api.stdout and "rolled_back" in through_api.stdout
    shown = _cli(stack, "incidents", incident_id, "--url", stack.service_url)
    assert "manual rollback badge-vision/v3.1.0 -> badge-vision/v3.0.0 by dana" in shown.stdout
    wrong = _cli_with(
        stack, {"ROLLBACKBOT_API_TOKEN": "not-the-token-0123456789"}, "incidents", "--url", stack.service_url
    )
    assert wrong.returncode == 2 and "refused the token" in wrong.stderr
