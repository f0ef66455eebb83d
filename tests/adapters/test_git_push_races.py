"""Push races against real git: other writers push to the deploy branch continuously."""

from __future__ import annotations

import subprocess
import threading
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
THINK_SECONDS = 0.15  # between a writer's pushes: four writers still land ~15 pushes a second together, far busier
# than any GitOps branch, and the race stays winnable on a loaded 2-core CI machine (at 0.05 s it was not always)


def target_of(app: str) -> ResolvedTarget:
    return ResolvedTarget((app,), "ml-prod", (f"apps/{app}",), f"{app}/v*")


@pytest.fixture
def busy_sandbox(tmp_path: Path) -> Iterator[tuple[GitOpsSandbox, list[int]]]:
    """Ten apps; four writers committing unrelated files and pushing as fast as they can."""
    sandbox = build_sandbox(tmp_path / "sandbox", [AppSpec(app, [Release("1.0.0"), Release("1.1.0")]) for app in APPS])
    stop = threading.Event()
    landed = [0] * WRITERS

    def write(number: int) -> None:
        clone = tmp_path / f"writer-{number}"
        run_git(["clone", "-q", "--no-tags", str(sandbox.remote_path), str(clone)], tmp_path)
        while not stop.is_set():
            run_git(["fetch", "-q", "origin", sandbox.branch], clone)
            run_git(["reset", "-q", "--hard", "FETCH_HEAD"], clone)
            (clone / "platform" / f"writer-{number}.yaml").write_text(f"tick: {landed[number]}\n")
            run_git(["commit", "-q", "-am", f"writer {number}"], clone)
            try:
                run_git(["push", "-q", "origin", f"HEAD:refs/heads/{sandbox.branch}"], clone)
            except subprocess.CalledProcessError:  # a writer losing a race just tries again
                continue
            landed[number] += 1
            stop.wait(THINK_SECONDS)

    seed = {f"platform/writer-{n}.yaml": "tick: -1\n" for n in range(WRITERS)}
    sandbox.commit_paths(seed, "writers' files")
    threads = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
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
    repo = GitOpsRepository(sandbox.remote_url, sandbox.branch, tmp_path / "clone", sandbox.allowed_signers)
    results = {}
    for number, app in enumerate(APPS):
        plan = repo.plan(target_of(app))
        request = RollbackRequest(f"inc-{number}", target_of(app), plan, "ModelRefusalRateDrop/f00d")
        results[app] = repo.commit_rollback(request)
    assert sum(landed) > 0  # the writers really were pushing meanwhile
    log = sandbox.git("log", "--format=%B%x00", sandbox.branch)
    incidents = [parse_commit_trailers(m).get("Rollback-Incident") for m in log.split("\x00")]
    for number, app in enumerate(APPS):
        assert incidents.count(f"inc-{number}") == 1, app  # landed, and exactly once
        commit = results[app].commit
        assert sandbox.git("merge-base", "--is-ancestor", commit, sandbox.branch) == ""
        assert sandbox.tree_id(commit, f"apps/{app}") == sandbox.tree_id(f"{app}/v1.0.0", f"apps/{app}")


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
