"""SIGKILL between two steps: a new process resumes at the step on the branch and never commits it twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.canary.helpers import canary_policy
from tests.canary.rig import QUERY, build, canary_rig

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


async def test_sigkill_between_steps_then_resume(tmp_path: Path) -> None:
    sandbox = build(tmp_path, "HTTPRoute")
    head_before = sandbox.head()
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.canary.kill_worker", str(tmp_path / "worker"), str(sandbox.root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert worker.stdout is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and not line.startswith("pause after 2 commits"):
            line = worker.stdout.readline()  # blocks until the worker has synced step 2 and sits in its pause
            assert line, "worker ended early"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == -signal.SIGKILL
    steps = sandbox.git("log", "--format=%(trailers:key=Rollback-Step,valueonly)", f"{head_before}..main").split()
    assert steps == ["2/3", "1/3"]  # newest first: killed after step 2, before its analysis ended
    async with canary_rig(tmp_path / "again", {QUERY: [0.001]}, sandbox=sandbox) as rig:
        rig.head_before = head_before
        outcome = await rig.rollout.run("inc-killed", canary_policy(), {"app": "chat-llm"})
        assert outcome.state.value == "completed"
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3", "2/3", "3/3"]
        assert any(e.startswith("resuming at step 2/3") for e in rig.events)
