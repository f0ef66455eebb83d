"""GitOpsRepository against real git: signed tags, real pushes, real races."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rollbackbot.adapters.git.plumbing import tag_ref_prefix
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.core.commit_message import parse_commit_trailers
from rollbackbot.core.model import ResolvedTarget, RollbackPlan, RollbackRequest
from rollbackbot.core.releases import QUARANTINE_PATH
from rollbackbot.errors import ConflictError, NoTargetError, PermanentError, TransientError
from rollbackbot.testing.gitops import GitOpsSandbox, Release, run_git
from tests.adapters.conftest import FRAUD, MakeRepo, MakeSandbox

PATHS = FRAUD.paths


def request_for(plan: RollbackPlan, incident: str = "inc-1", target: ResolvedTarget = FRAUD) -> RollbackRequest:
    return RollbackRequest(
        incident_id=incident,
        target=target,
        plan=plan,
        alert_ref="ModelRefusalRateDrop/3f2a9c",
        evidence_url="file:///evidence/inc-1",
        approved_by="Ana Ops U012ABC",
    )


def files_outside(sb: GitOpsSandbox, rev: str, excluded: tuple[str, ...]) -> dict[str, str]:
    listing = sb.git("ls-tree", "-r", rev)
    entries = (line.split("\t") for line in listing.splitlines())
    return {path: meta for meta, path in entries if not path.startswith(tuple(f"{p}/" for p in excluded))}


# --- target selection ---------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (Release("2.2.0", signed=False), "signature does not verify (no signature found)"),
        (Release("2.2.0", wrong_key=True), "signature does not verify (No principal matched.)"),
        (Release("2.2.0", trailers={"Model-Digest": DIGEST}), "missing trailer Data-Version"),
        (Release("2.2.0", image="registry.example/fraud-llm:latest"), "uses :latest"),
        (Release("2.2.0", image="registry.example/fraud-llm:2.2.0"), "pinned by tag '2.2.0' only"),
    ],
    ids=["unsigned", "wrong-key", "missing-trailer", "latest-image", "tag-only-image"],
)
def test_plan_skips_unverified_release(
    make_sandbox: MakeSandbox, make_repo: MakeRepo, bad: Release, reason: str
) -> None:
    sb = make_sandbox(Release("2.0.0"), Release("2.1.0"), bad, Release("2.3.0"))
    plan = make_repo(sb).plan(FRAUD)
    assert plan.current is not None and plan.current.name == "fraud-llm/v2.3.0"
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.1.0"
    assert [s.name for s in plan.skipped] == ["fraud-llm/v2.2.0"]
    assert reason in plan.skipped[0].reason


def test_tampered_tag_is_skipped_even_after_it_moved_under_a_clone(
    sandbox: GitOpsSandbox, repo: GitOpsRepository
) -> None:
    assert repo.plan(FRAUD).target is not None and repo.plan(FRAUD).target.name == "fraud-llm/v2.2.0"  # type: ignore[union-attr]
    data_version = parse_commit_trailers(
        "t\n\n" + sandbox.git("cat-file", "tag", "fraud-llm/v2.2.0").split("\n\n", 2)[2]
    )
    sandbox.tamper_tag("fraud-llm/v2.2.0", data_version["Data-Version"], "ds-forged")
    plan = repo.plan(FRAUD)  # the fetch must pick up the rewritten tag object
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.1.0"
    assert plan.skipped[0].name == "fraud-llm/v2.2.0"
    assert "signature does not verify" in plan.skipped[0].reason


def test_plan_reports_diff_and_semver_order(make_sandbox: MakeSandbox, make_repo: MakeRepo) -> None:
    # Commit order is not version order: 2.10.0 is newer than 2.9.0 although tagged first.
    sb = make_sandbox(Release("2.10.0"), Release("2.9.0"), Release("2.11.0"))
    plan = make_repo(sb).plan(FRAUD)
    assert plan.current is not None and plan.current.name == "fraud-llm/v2.11.0"
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.10.0"
    assert plan.head == sb.head() and not plan.head_is_rollback
    assert "apps/fraud-llm/deployment.yaml" in plan.changed_paths
    assert "apps/fraud-llm/deployment.yaml" in plan.diff_stat and "files changed" in plan.diff_stat


def test_no_target_when_every_older_release_is_rejected(make_sandbox: MakeSandbox, make_repo: MakeRepo) -> None:
    sb = make_sandbox(Release("1.0.0", signed=False), Release("1.1.0", wrong_key=True), Release("1.2.0"))
    plan = make_repo(sb).plan(FRAUD)
    assert plan.target is None and plan.diff_stat == ""
    assert plan.no_target_reason is not None and "none of the 2 older release tags" in plan.no_target_reason
    with pytest.raises(NoTargetError):
        make_repo(sb).commit_rollback(request_for(plan))


def test_plan_on_untagged_head_targets_newest_verified_ancestor(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    human = sandbox.commit_paths({"apps/fraud-llm/hotfix.yaml": "replicas: 3\n"}, "hotfix without a release")
    plan = repo.plan(FRAUD)
    assert plan.head == human and plan.current is None
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.3.0"
    result = repo.commit_rollback(request_for(plan))
    message = sandbox.log_messages(1)[0]
    assert message.startswith(f"rollback(fraud-llm): untagged@{human[:12]} -> fraud-llm/v2.3.0\n")
    assert sandbox.tree_id(result.commit, "apps/fraud-llm") == sandbox.tree_id("fraud-llm/v2.3.0", "apps/fraud-llm")
    assert sandbox.tree_id(result.commit, QUARANTINE_PATH) is None  # nothing tagged was abandoned


def test_unreadable_quarantine_stops_planning(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    sandbox.commit_paths({QUARANTINE_PATH: "quarantined: [{incident: no-tag-or-digest}]\n"}, "bad edit")
    with pytest.raises(PermanentError, match="quarantine.yaml .* is invalid"):
        repo.plan(FRAUD)


def test_plan_to_verifies_the_named_tag(make_sandbox: MakeSandbox, make_repo: MakeRepo) -> None:
    sb = make_sandbox(Release("2.0.0"), Release("2.1.0", wrong_key=True), Release("2.2.0"))
    repo = make_repo(sb)
    plan = repo.plan_to(FRAUD, "fraud-llm/v2.0.0")
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.0.0"
    with pytest.raises(NoTargetError, match="No principal matched"):
        repo.plan_to(FRAUD, "fraud-llm/v2.1.0")
    with pytest.raises(NoTargetError, match="same content"):
        repo.plan_to(FRAUD, "fraud-llm/v2.2.0")
    with pytest.raises(NoTargetError, match="no such release tag"):
        repo.plan_to(FRAUD, "fraud-llm/v9.9.9")
    assert repo.describe_tag("fraud-llm/v2.0.0").commit == sb.tags["fraud-llm/v2.0.0"]


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [("fraud-llm/v*", "refs/tags/fraud-llm"), ("v*", "refs/tags/"), ("a/b/[0-9]*", "refs/tags/a/b")],
)
def test_ref_prefix_narrows_the_tag_listing(pattern: str, prefix: str) -> None:
    assert tag_ref_prefix(pattern) == prefix


def test_unsafe_policy_path_is_refused(repo: GitOpsRepository) -> None:
    target = ResolvedTarget(("x",), "p", ("apps/../platform",), "fraud-llm/v*")
    with pytest.raises(PermanentError, match="unsafe repository path"):
        repo.plan(target)


# --- the rollback commit ------------------------------------------------------------------------


def test_rollback_commit_restores_paths_exactly_and_nothing_else(
    make_sandbox: MakeSandbox, make_repo: MakeRepo
) -> None:
    newest = Release("2.3.0", feature_config={"config.yaml": "threshold: 0.9\n", "added.yaml": "x: 1\n"})
    sb = make_sandbox(Release("2.1.0"), Release("2.2.0"), newest)
    head = sb.head()
    repo = make_repo(sb, author_name="rollbackbot", author_email="bot@example.com")
    plan = repo.plan(FRAUD)
    result = repo.commit_rollback(request_for(plan))

    assert not result.already_done and result.push_attempts == 1
    assert sb.head() == result.commit  # pushed
    assert sb.git("rev-parse", f"{result.commit}^@").split() == [head]  # one parent: the planned head
    for path in PATHS:  # byte-identical trees, so files added since 2.2.0 are gone
        assert sb.tree_id(result.commit, path) == sb.tree_id("fraud-llm/v2.2.0", path)
    assert sb.tree_id(result.commit, "apps/fraud-llm-features/added.yaml") is None
    changed = set(sb.git("diff", "--name-only", head, result.commit).split())
    assert changed == {
        "apps/fraud-llm/deployment.yaml",
        "apps/fraud-llm/model.yaml",
        "apps/fraud-llm-features/config.yaml",
        "apps/fraud-llm-features/added.yaml",
        QUARANTINE_PATH,
    }
    excluded = (*PATHS, ".rollbackbot")
    assert files_outside(sb, result.commit, excluded) == files_outside(sb, head, excluded)

    message = sb.log_messages(1)[0]
    assert message.splitlines()[0] == "rollback(fraud-llm): fraud-llm/v2.3.0 -> fraud-llm/v2.2.0"
    assert list(parse_commit_trailers(message).items()) == [
        ("Rollback-Incident", "inc-1"),
        ("Rollback-From", "fraud-llm/v2.3.0"),
        ("Rollback-To", "fraud-llm/v2.2.0"),
        ("Rollback-Alert", "ModelRefusalRateDrop/3f2a9c"),
        ("Rollback-Evidence", "file:///evidence/inc-1"),
        ("Approved-By", "Ana Ops U012ABC"),
    ]
    assert sb.git("log", "-1", "--format=%an <%ae>|%cn <%ce>", result.commit).strip() == (
        "rollbackbot <bot@example.com>|rollbackbot <bot@example.com>"
    )
    quarantine = yaml.safe_load(sb.show(result.commit, QUARANTINE_PATH))
    assert quarantine["quarantined"] == [
        {
            "tag": "fraud-llm/v2.3.0",
            "modelDigest": plan.current.model_digest,  # type: ignore[union-attr]
            "incident": "inc-1",
            "app": "fraud-llm",
        }
    ]

    replan = repo.plan(FRAUD)  # the abandoned release is never a target again
    assert replan.head_is_rollback
    # Another app's paths were last changed by a release, not by this rollback on top of the branch.
    chat = ResolvedTarget(apps=("chat",), project="ml-prod", paths=("apps/chat",), tag_pattern="chat/v*")
    assert not repo.plan(chat).head_is_rollback
    assert replan.current is not None and replan.current.name == "fraud-llm/v2.2.0"
    assert replan.target is not None and replan.target.name == "fraud-llm/v2.1.0"


def test_second_commit_for_same_incident_is_already_done(
    sandbox: GitOpsSandbox, repo: GitOpsRepository, make_repo: MakeRepo
) -> None:
    plan = repo.plan(FRAUD)
    first = repo.commit_rollback(request_for(plan, "inc-7"))
    again = repo.commit_rollback(request_for(plan, "inc-7"))
    restarted = make_repo(sandbox).commit_rollback(request_for(plan, "inc-7"))  # a fresh process and clone
    assert again.already_done and restarted.already_done
    assert again.commit == restarted.commit == first.commit == sandbox.head()
    grep = sandbox.git("log", "--format=%H", "--grep=Rollback-Incident: inc-7", sandbox.branch).split()
    assert grep == [first.commit]
    assert repo.find_rollback("inc-7") == first.commit
    assert repo.find_rollback("inc-") is None and repo.find_rollback("inc-77") is None


def test_rollback_removed_by_a_history_rewrite_is_not_already_done(
    sandbox: GitOpsSandbox, repo: GitOpsRepository
) -> None:
    plan = repo.plan(FRAUD)
    first = repo.commit_rollback(request_for(plan, "inc-9"))
    assert repo.find_rollback("inc-9") == first.commit
    sandbox.git("update-ref", f"refs/heads/{sandbox.branch}", plan.head)  # a force-push took it away
    assert repo.find_rollback("inc-9") is None
    again = repo.commit_rollback(request_for(plan, "inc-9"))
    assert not again.already_done and sandbox.head() == again.commit


# --- races --------------------------------------------------------------------------------------


def test_human_commit_to_other_path_after_plan_both_survive(sandbox: GitOpsSandbox, repo: GitOpsRepository) -> None:
    plan = repo.plan(FRAUD)
    human = sandbox.commit_paths({"platform/quota.yaml": "cpu: 4\n"}, "raise quota")
    result = repo.commit_rollback(request_for(plan))
    assert sandbox.git("rev-parse", f"{result.commit}^@").split() == [human]
    assert sandbox.show(result.commit, "platform/quota.yaml") == "cpu: 4\n"
    assert sandbox.tree_id(result.commit, "apps/fraud-llm") == sandbox.tree_id("fraud-llm/v2.2.0", "apps/fraud-llm")


def test_push_rejected_by_race_rebuilds_on_new_head(
    sandbox: GitOpsSandbox, repo: GitOpsRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = repo.plan(FRAUD)
    original = GitOpsRepository._push
    humans: list[str] = []

    def racing_push(self: GitOpsRepository, commit: str) -> bool:
        if not humans:  # the human lands between our fetch and our push
            humans.append(sandbox.commit_paths({"platform/quota.yaml": "cpu: 8\n"}, "raise quota"))
        return original(self, commit)

    monkeypatch.setattr(GitOpsRepository, "_push", racing_push)
    result = repo.commit_rollback(request_for(plan))
    assert result.push_attempts == 2 and not result.already_done
    assert sandbox.head() == result.commit
    assert sandbox.git("rev-parse", f"{result.commit}^@").split() == humans
    assert sandbox.show(result.commit, "platform/quota.yaml") == "cpu: 8\n"
    assert len(sandbox.git("log", "--format=%H", "--grep=Rollback-Incident: inc-1", sandbox.branch).split()) == 1


@pytest.mark.parametrize("when", ["after-plan", "before-push"])
def test_human_change_to_same_paths_is_a_conflict(
    sandbox: GitOpsSandbox, repo: GitOpsRepository, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    plan = repo.plan(FRAUD)
    change = {"apps/fraud-llm/deployment.yaml": "kind: Deployment  # hand edit\n"}
    humans: list[str] = []
    if when == "after-plan":
        humans.append(sandbox.commit_paths(change, "hand edit", author="Jo Human <jo@example.com>"))
    else:
        original = GitOpsRepository._push

        def racing_push(self: GitOpsRepository, commit: str) -> bool:
            humans.append(sandbox.commit_paths(change, "hand edit", author="Jo Human <jo@example.com>"))
            return original(self, commit)

        monkeypatch.setattr(GitOpsRepository, "_push", racing_push)
    with pytest.raises(ConflictError) as raised:
        repo.commit_rollback(request_for(plan))
    assert "apps/fraud-llm" in str(raised.value) and "Jo Human" in str(raised.value)
    assert humans[0][:7] in str(raised.value)
    assert sandbox.head() == humans[0]  # the remote keeps the human's commit


def test_branch_that_keeps_moving_gives_up_with_transient_error(
    sandbox: GitOpsSandbox, make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(sandbox, push_attempts=3)
    plan = repo.plan(FRAUD)
    original = GitOpsRepository._push
    count = iter(range(100))

    def racing_push(self: GitOpsRepository, commit: str) -> bool:
        sandbox.commit_paths({"platform/quota.yaml": f"cpu: {next(count)}\n"}, "busy human")
        return original(self, commit)

    monkeypatch.setattr(GitOpsRepository, "_push", racing_push)
    with pytest.raises(TransientError, match="rejected 3 times"):
        repo.commit_rollback(request_for(plan))
    assert sandbox.log_messages(1)[0] == "busy human"


# --- transport ----------------------------------------------------------------------------------


def test_unreachable_remote_is_transient_and_leaks_no_credentials(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    repo = make_repo(sandbox, url="https://user:secret@127.0.0.1:9/x.git")
    with pytest.raises(TransientError) as raised:
        repo.ensure_clone()
    text = "".join(traceback.format_exception(raised.value))
    assert "127.0.0.1:9" in text
    assert "secret" not in text and "user:" not in text


def test_clone_follows_a_changed_url(sandbox: GitOpsSandbox, make_repo: MakeRepo, tmp_path: Path) -> None:
    moved = tmp_path / "moved.git"
    shutil.copytree(sandbox.remote_path, moved)
    first = make_repo(sandbox)
    first.ensure_clone()
    again = GitOpsRepository(moved.as_uri(), "main", first.workdir, sandbox.allowed_signers)
    again.ensure_clone()
    assert run_git(["remote", "get-url", "origin"], first.workdir).strip() == moved.as_uri()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def git_daemon(sandbox: GitOpsSandbox) -> Iterator[str]:
    """The sandbox remote served by a real `git daemon` with pushes enabled; yields its git:// URL."""
    exec_path = Path(run_git(["--exec-path"], sandbox.root).strip())
    if not (exec_path / "git-daemon").exists():
        pytest.skip("git daemon is not installed")
    port = _free_port()
    base = sandbox.remote_path.parent
    args = [
        "git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1",
        f"--port={port}", f"--base-path={base}", str(base),
    ]  # fmt: skip
    daemon = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        else:
            pytest.skip("git daemon did not start listening")
        yield f"git://127.0.0.1:{port}/{sandbox.remote_path.name}"
    finally:
        daemon.terminate()
        daemon.wait(timeout=5)


@pytest.mark.network
def test_rollback_over_a_real_network_remote(sandbox: GitOpsSandbox, make_repo: MakeRepo, git_daemon: str) -> None:
    repo = make_repo(sandbox, url=git_daemon)
    plan = repo.plan(FRAUD)
    result = repo.commit_rollback(request_for(plan))
    assert sandbox.head() == result.commit
    assert sandbox.tree_id(result.commit, "apps/fraud-llm") == sandbox.tree_id("fraud-llm/v2.2.0", "apps/fraud-llm")
