"""Push races against real git: other writers push to the deploy branch continuously."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollbackbot.adapters.git.repo import GitOpsRepository, lost_ref_race
from rollbackbot.core.commit_message import parse_commit_trailers
from rollbackbot.core.model import ResolvedTarget, RollbackRequest
from rollbackbot.errors import PermanentError
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox, run_git

APPS = [f"app{n}" for n in range(10)]
WRITERS = 4
# A rollback, like any pusher that never forces, lands only in a quiet spell of the branch at least as
# long as its own refetch -> rebuild -> push window (0.1-0.3 s; up to ~0.6 s on a loaded 2-core machine).
# Writers that retried at once after a rejection and paused a FIXED time after landing kept the branch
# from ever staying quiet longer than about one pause plus one writer cycle; wherever the rollback's
# window was longer (an idle machine: git fast, the rollback's Python overhead not), every attempt lost
# until the push budget ran out (323 rejections in 120 s on CI). So each writer pauses after EVERY push,
# landed or rejected, for a random, exponentially distributed time: quiet spells of every length occur,
# and with ~3 landings/s a w-second window finds one with probability ~exp(-3 w) per attempt (>= 15% at
# w = 0.6 s), whatever the machine's speed.
WRITER_PAUSE_SECONDS = 1.0  # mean; still far busier than any GitOps branch


def target_of(app: str) -> ResolvedTarget:
    return ResolvedTarget((app,), "ml-prod", (f"apps/{app}",), f"{app}/v*")


@pytest.fixture
def busy_sandbox(tmp_path: Path) -> Iterator[tuple[GitOpsSandbox, list[int]]]:
    """Ten apps; four writers committing unrelated files and pushing about once a second each, at random."""
    sandbox = build_sandbox(tmp_path / "sandbox", [AppSpec(app, [Release("1.0.0"), Release("1.1.0")]) for app in APPS])
    stop = threading.Event()
    landed = [0] * WRITERS

    def write(number: int) -> None:
        pauses = random.Random(number)
        clone = tmp_path / f"writer-{number}"
        run_git(["clone", "-q", "--no-tags", str(sandbox.remote_path), str(clone)], tmp_path)
        while not stop.is_set():
            run_git(["fetch", "-q", "origin", sandbox.branch], clone)
            run_git(["reset", "-q", "--hard", "FETCH_HEAD"], clone)
            (clone / "platform" / f"writer-{number}.yaml").write_text(f"tick: {landed[number]}\n")
            run_git(["commit", "-q", "-am", f"writer {number}"], clone)
            try:
                run_git(["push", "-q", "origin", f"HEAD:refs/heads/{sandbox.branch}"], clone)
            except subprocess.CalledProcessError:
                pass  # lost a race (to another writer or a rollback): like a real CI job, try again after a pause
            else:
                landed[number] += 1
            stop.wait(pauses.expovariate(1 / WRITER_PAUSE_SECONDS))

    seed = {f"platform/writer-{n}.yaml": "tick: -1\n" for n in range(WRITERS)}
    sandbox.commit_paths(seed, "writers' files")
    threads = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while not all(landed) and time.monotonic() < deadline:  # every writer is up and pushing
        time.sleep(0.05)
    try:
        yield sandbox, landed
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


@pytest.mark.network
def test_every_rollback_lands_while_four_writers_push_continuously(
    busy_sandbox: tuple[GitOpsSandbox, list[int]], tmp_path: Path
) -> None:
    sandbox, landed = busy_sandbox
    assert all(landed)  # the writers really are pushing
    repo = GitOpsRepository(sandbox.remote_url, sandbox.branch, tmp_path / "clone", sandbox.allowed_signers)
    results = {}
    for number, app in enumerate(APPS):
        plan = repo.plan(target_of(app))
        if number == 0:
            move_branch(sandbox)  # at least one lost race on every run, whatever the writers' timing
        request = RollbackRequest(f"inc-{number}", target_of(app), plan, "ModelRefusalRateDrop/f00d")
        results[app] = repo.commit_rollback(request)
    assert results[APPS[0]].push_attempts >= 2  # rejected, rebuilt on the new head, pushed again
    log = sandbox.git("log", "--format=%B%x00", sandbox.branch)
    incidents = [parse_commit_trailers(m).get("Rollback-Incident") for m in log.split("\x00")]
    for number, app in enumerate(APPS):
        assert incidents.count(f"inc-{number}") == 1, app  # landed, and exactly once
        commit = results[app].commit
        assert sandbox.git("merge-base", "--is-ancestor", commit, sandbox.branch) == ""
        assert sandbox.tree_id(commit, f"apps/{app}") == sandbox.tree_id(f"{app}/v1.0.0", f"apps/{app}")


def move_branch(sandbox: GitOpsSandbox) -> None:
    """One more commit on the deploy branch (an unrelated file), retried until it beats the writers."""
    for attempt in range(100):
        try:
            sandbox.commit_paths({"platform/mover.yaml": f"attempt: {attempt}\n"}, "move the branch")
            return
        except subprocess.CalledProcessError:
            time.sleep(0.05)
    raise AssertionError("could not move the branch past the writers")


@pytest.mark.parametrize(
    ("summary", "race"),
    [
        ("[remote rejected] (failed to update ref)", True),
        ("[remote rejected] (cannot lock ref 'refs/heads/main': is at 1f0 but expected 2a1)", True),
        ("[remote rejected] (hook declined)", False),
        ("[remote rejected] (protected branch hook declined)", False),
    ],
)
def test_ref_lock_races_are_retried_and_refusals_are_not(summary: str, race: bool) -> None:
    assert lost_ref_race(summary) is race


def test_a_declining_hook_is_permanent(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path / "sandbox", [AppSpec("app0", [Release("1.0.0"), Release("1.1.0")])])
    hook = sandbox.remote_path / "hooks" / "update"
    hook.write_text("#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    repo = GitOpsRepository(sandbox.remote_url, sandbox.branch, tmp_path / "clone", sandbox.allowed_signers)
    plan = repo.plan(target_of("app0"))
    with pytest.raises(PermanentError, match="refused the push"):
        repo.commit_rollback(RollbackRequest("inc-0", target_of("app0"), plan, "A/f"))
