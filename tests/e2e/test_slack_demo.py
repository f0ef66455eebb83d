"""``make demo`` runs every act (auto, propose approved in Slack, pull request approved on GitHub) and stays fast."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_demo_shows_the_proposal_the_click_and_the_approved_rollback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLBACKBOT_")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "rollbackbot", "demo", "--workdir", str(tmp_path / "demo")],
        cwd=REPO_ROOT,  # as `make demo` runs it: with the shipped policies
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert elapsed < 30
    out = done.stdout
    assert "Rollback proposed: support-llm" in out and "[ Approve ]  [ Reject ]" in out
    assert "POST /slack/actions answered 200" in out
    assert "approved → rolling_back → syncing → rolled_back" in out and "(buttons gone)" in out
    assert "Approved-By: Dana Ops U012ABC" in out
    # pull-request mode: the deploy branch untouched until an allowed reviewer approves, then merged with the
    # head SHA as precondition and synced at the merge commit
    assert "opened pull request #1:" in out and "the deploy branch is untouched" in out
    assert "reviews by mallory do not count (not an allowed approver); still awaiting_approval" in out
    assert "PUT /repos/acme/gitops/pulls/1/merge {'sha': '" in out
    assert "OK: pull request #1 merged with its head SHA as precondition after approval by github:alice" in out
    assert out.rstrip().splitlines()[-1].startswith("demo OK in ")
