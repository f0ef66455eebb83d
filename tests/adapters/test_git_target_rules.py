"""Never the wrong release, against real git: the target differs from what is broken, lives on the
deploy branch, carries its name inside the signature, is still unquarantined when the commit is
written, and never deletes paths the policy does not explicitly allow it to delete."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.core.commit_message import parse_commit_trailers
from rollbackbot.core.model import ResolvedTarget, RollbackPlan, RollbackRequest
from rollbackbot.core.releases import QUARANTINE_PATH
from rollbackbot.errors import ConflictError, NoTargetError, PermanentError
from rollbackbot.testing.gitops import GitOpsSandbox, Release
from tests.adapters.conftest import FRAUD, MakeRepo, MakeSandbox

COMPROMISED = {"Model-Digest": "sha256:" + "c0" * 32, "Data-Version": "ds-bad"}


def request_for(plan: RollbackPlan, incident: str = "inc-1", target: ResolvedTarget = FRAUD) -> RollbackRequest:
    return RollbackRequest(incident, target, plan, "ModelRefusalRateDrop/3f2a9c")


def skipped(plan: RollbackPlan) -> dict[str, str]:
    return {s.name: s.reason for s in plan.skipped}


# --- item: the target must differ from what is broken --------------------------------------------


def test_rc_retag_of_the_compromised_model_is_skipped(make_sandbox: MakeSandbox, make_repo: MakeRepo) -> None:
    sb = make_sandbox(
        Release("2.2.0"),
        Release("2.3.0-rc.1", trailers=COMPROMISED),  # same model, other manifests: content differs
        Release("2.3.0", trailers=COMPROMISED),
    )
    plan = make_repo(sb).plan(FRAUD)
    assert plan.current is not None and plan.current.name == "fraud-llm/v2.3.0"
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.0"
    assert skipped(plan)["fraud-llm/v2.3.0-rc.1"] == "same Model-Digest as the current release fraud-llm/v2.3.0"


def test_plan_to_refuses_the_compromised_model_under_another_tag(
    make_sandbox: MakeSandbox, make_repo: MakeRepo
) -> None:
    sb = make_sandbox(
        Release("2.2.0"), Release("2.3.0-rc.1", trailers=COMPROMISED), Release("2.3.0", trailers=COMPROMISED)
    )
    with pytest.raises(NoTargetError, match="same Model-Digest as the current release"):
        make_repo(sb).plan_to(FRAUD, "fraud-llm/v2.3.0-rc.1")


def test_digest_quarantined_by_an_earlier_rollback_is_skipped(make_sandbox: MakeSandbox, make_repo: MakeRepo) -> None:
    # 2.1.0 ships the model that 2.3.0 shipped; 2.3.0 was abandoned before, so its digest is quarantined.
    sb = make_sandbox(
        Release("2.0.0"),
        Release("2.1.0", trailers=COMPROMISED),
        Release("2.2.0"),
        Release("2.3.0", trailers=COMPROMISED),
    )
    repo = make_repo(sb)
    first = repo.commit_rollback(request_for(repo.plan(FRAUD), "inc-1"))  # 2.3.0 -> 2.2.0, quarantines 2.3.0
    assert "sha256:" + "c0" * 32 in sb.show(first.commit, QUARANTINE_PATH)
    plan = repo.plan(FRAUD)
    assert plan.current is not None and plan.current.name == "fraud-llm/v2.2.0"
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.0.0"
    assert skipped(plan)["fraud-llm/v2.1.0"] == "Model-Digest quarantined with fraud-llm/v2.3.0"


# --- item: only releases on the deploy branch -----------------------------------------------------


def test_signed_tag_on_an_unmerged_side_branch_is_skipped(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    side = sandbox.commit_paths(
        {"apps/fraud-llm/model.yaml": "experiment: never merged\n"}, "experiment", branch="experiment"
    )
    trailers = {"Model-Digest": "sha256:" + "5e" * 32, "Data-Version": "ds-side"}
    sandbox.sign_tag("fraud-llm/v2.2.5", side, trailers)
    repo = make_repo(sandbox)
    plan = repo.plan(FRAUD)
    assert plan.current is not None and plan.current.name == "fraud-llm/v2.3.0"  # the head is tagged
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.0"
    assert "not on the deploy branch" in skipped(plan)["fraud-llm/v2.2.5"]
    with pytest.raises(NoTargetError, match="not on the deploy branch"):
        repo.plan_to(FRAUD, "fraud-llm/v2.2.5")


# --- item: a tag's name is part of what is signed -------------------------------------------------


def test_signed_tag_object_republished_under_another_name_is_skipped(
    sandbox: GitOpsSandbox, make_repo: MakeRepo
) -> None:
    sandbox.republish_tag("fraud-llm/v2.0.0", "fraud-llm/v2.2.9")  # needs no signing key
    config = ("-c", "gpg.format=ssh", "-c", f"gpg.ssh.allowedSignersFile={sandbox.allowed_signers}")
    sandbox.git(*config, "verify-tag", "fraud-llm/v2.2.9")  # the signature alone still verifies
    repo = make_repo(sandbox)
    plan = repo.plan(FRAUD)
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.0"
    assert skipped(plan)["fraud-llm/v2.2.9"] == "ref name does not match the signed tag name ('fraud-llm/v2.0.0')"
    with pytest.raises(NoTargetError, match="ref name does not match the signed tag name"):
        repo.plan_to(FRAUD, "fraud-llm/v2.2.9")


def test_properly_signed_new_tag_is_a_target(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    # The same tag made with `git tag -s` under its own name passes: the check is the name, not the tool.
    sandbox.sign_tag("fraud-llm/v2.2.9", sandbox.tags["fraud-llm/v2.1.0"], {**COMPROMISED, "Data-Version": "ds-9"})
    plan = make_repo(sandbox).plan(FRAUD)
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.9"


# --- item: quarantine is re-checked when the commit is written ------------------------------------


def test_target_quarantined_between_plan_and_commit_is_not_deployed(
    sandbox: GitOpsSandbox, repo: GitOpsRepository
) -> None:
    plan = repo.plan(FRAUD)  # e.g. a proposal waiting 30 minutes for approval
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.0"
    entry = "quarantined:\n  - tag: fraud-llm/v2.2.0\n    incident: inc-elsewhere\n"
    human = sandbox.commit_paths({QUARANTINE_PATH: entry}, "quarantine 2.2.0: same bug")
    with pytest.raises(PermanentError, match="fraud-llm/v2.2.0 was quarantined after the plan"):
        repo.commit_rollback(request_for(plan))
    assert sandbox.head() == human  # nothing was pushed


def test_keys_people_added_to_the_quarantine_file_survive_the_bots_rewrite(
    sandbox: GitOpsSandbox, repo: GitOpsRepository
) -> None:
    human = (
        "owners: ['@ml-oncall']\n"
        "quarantined:\n"
        "  - modelDigest: sha256:" + "8" * 64 + "\n"
        "    note: added by hand\n"
        "comment: see the runbook\n"
    )
    sandbox.commit_paths({QUARANTINE_PATH: human}, "quarantine by hand")
    result = repo.commit_rollback(request_for(repo.plan(FRAUD)))
    written = yaml.safe_load(sandbox.show(result.commit, QUARANTINE_PATH))
    assert list(written) == ["quarantined", "comment", "owners"]
    assert (written["owners"], written["comment"]) == (["@ml-oncall"], "see the runbook")
    assert written["quarantined"][0] == {"modelDigest": "sha256:" + "8" * 64, "note": "added by hand"}
    assert written["quarantined"][1]["tag"] == "fraud-llm/v2.3.0"


# --- item: never delete another app's files -------------------------------------------------------

SHARED = replace(FRAUD, paths=("apps/fraud-llm", "apps/shared-rules"))


def test_path_missing_at_the_target_is_not_deleted_unless_allowed(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    added = sandbox.commit_paths({"apps/shared-rules/rules.yaml": "owner: another team\n"}, "shared rules")
    plan = make_repo(sandbox).plan(SHARED)
    assert plan.target is None and plan.no_target_reason is not None
    reason = "path apps/shared-rules does not exist at fraud-llm/v2.3.0; refusing to delete it"
    assert reason in skipped(plan)["fraud-llm/v2.3.0"] and "fraud-llm/v2.3.0" in plan.no_target_reason
    with pytest.raises(NoTargetError):
        make_repo(sandbox).commit_rollback(request_for(plan, target=SHARED))
    assert sandbox.head() == added

    allowed = replace(SHARED, allow_delete=True)
    repo = make_repo(sandbox)
    plan = repo.plan(allowed)
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.3.0"
    result = repo.commit_rollback(request_for(plan, target=allowed))
    assert sandbox.tree_id(result.commit, "apps/shared-rules") is None


def test_path_absent_at_head_and_target_is_no_deletion(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    plan = make_repo(sandbox).plan(SHARED)  # apps/shared-rules exists nowhere: nothing is deleted
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.0"


# --- item: policies that share paths ----------------------------------------------------------------

FEATURES = ResolvedTarget(("fraud-features",), "ml-prod", ("apps/fraud-llm-features",), "fraud-llm/v*")


def test_own_rollback_on_shared_paths_replans_instead_of_conflicting(
    sandbox: GitOpsSandbox, make_repo: MakeRepo
) -> None:
    one, other = make_repo(sandbox), make_repo(sandbox)  # e.g. two replicas, two policies
    plan_a, plan_b = one.plan(FRAUD), other.plan(FEATURES)
    assert plan_a.head == plan_b.head
    first = one.commit_rollback(request_for(plan_a, "inc-a"))  # restores the shared features path
    second = other.commit_rollback(request_for(plan_b, "inc-b", target=FEATURES))
    assert not second.already_done and sandbox.head() == second.commit
    assert sandbox.git("rev-parse", f"{second.commit}^").strip() == first.commit
    assert second.replanned is not None and second.replanned.head == first.commit
    assert second.replanned.current is not None and second.replanned.current.name == "fraud-llm/v2.2.0"
    assert second.replanned.target is not None and second.replanned.target.name == "fraud-llm/v2.1.0"
    trailers = parse_commit_trailers(sandbox.log_messages(1)[0])
    assert (trailers["Rollback-From"], trailers["Rollback-To"]) == ("fraud-llm/v2.2.0", "fraud-llm/v2.1.0")
    features = "apps/fraud-llm-features"
    assert sandbox.tree_id(second.commit, features) == sandbox.tree_id("fraud-llm/v2.1.0", features)


def test_human_change_after_own_rollback_still_conflicts(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> None:
    one, other = make_repo(sandbox), make_repo(sandbox)
    plan_a, plan_b = one.plan(FRAUD), other.plan(FEATURES)
    one.commit_rollback(request_for(plan_a, "inc-a"))
    human = sandbox.commit_paths({"apps/fraud-llm-features/config.yaml": "threshold: 0.5\n"}, "hand tune")
    with pytest.raises(ConflictError, match="not overriding a human change"):
        other.commit_rollback(request_for(plan_b, "inc-b", target=FEATURES))
    assert sandbox.head() == human
