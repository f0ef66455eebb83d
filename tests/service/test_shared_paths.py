"""Policies that share paths: incidents of different apps touching the same files run one at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rollbackbot.clock import FakeClock
from rollbackbot.policy_files import load_policies
from tests.service.fakes import FakeGit
from tests.service.test_service import DOCSUM, GatedArgo, _payload, _service, _until_terminal

REPO = Path(__file__).resolve().parents[2]
FEATURES = {"alertname": "PromptInjectionSpike", "app": "docsum-features", "severity": "critical"}


def _policies_with_a_neighbour(tmp_path: Path, features_path: str) -> Path:
    """The shipped docsum-llm policy, plus one for docsum-features whose paths are given."""
    folder = tmp_path / "policies"
    folder.mkdir()
    docsum = (REPO / "policies" / "10-docsum-llm-injection.yaml").read_text()
    (folder / "10-docsum-llm-injection.yaml").write_text(docsum)
    features = (
        docsum.replace("name: docsum-llm-injection", "name: docsum-features-injection")
        .replace('app = "docsum-llm"', 'app = "docsum-features"')
        .replace("argocdApps: [docsum-llm]", "argocdApps: [docsum-features]")
        .replace("paths: [apps/docsum-llm]", f"paths: [{features_path}]")
        .replace('tags: "docsum-llm/v*"', 'tags: "docsum-features/v*"')
    )
    (folder / "20-docsum-features.yaml").write_text(features)
    return folder


async def _two_rollbacks(tmp_path: Path, features_path: str) -> tuple[FakeGit, list[str], list[str]]:
    """docsum-llm's rollback is held in its sync while docsum-features' alert arrives."""
    clock = FakeClock()
    policies = load_policies(_policies_with_a_neighbour(tmp_path, features_path))
    git, argo = FakeGit(), GatedArgo()
    service = _service(tmp_path, policies, clock, git, argo)
    first = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await asyncio.wait_for(argo.entered.wait(), timeout=10)  # docsum-llm is syncing: it acts
    second = service.receive(_payload(FEATURES, clock)).incidents[0]
    await asyncio.sleep(0.3)
    calls_while_held = list(git.calls)
    argo.release.set()
    await _until_terminal(service, first)
    clock.advance(5)  # past the neighbour poll
    done = await _until_terminal(service, second)
    await service.stop()
    assert done.state.value == "rolled_back", done.reason
    return git, calls_while_held, [e.detail for e in done.events]


async def test_an_incident_waits_while_another_app_rolls_back_paths_it_shares(tmp_path: Path) -> None:
    git, held, events = await _two_rollbacks(tmp_path, "apps/docsum-llm/features")
    assert ("plan", "docsum-features") not in held  # it did not plan on a head about to move
    waiting = [e for e in events if e.startswith("waiting: incident")]
    assert len(waiting) == 1 and "(docsum-llm)" in waiting[0] and "apps/docsum-llm/features" in waiting[0]
    names = [name for name, _ in git.calls if name in ("plan", "commit_rollback")]
    apps = [app for name, app in git.calls if name == "plan"]
    assert apps == ["docsum-llm", "docsum-features"]
    assert names == ["plan", "commit_rollback", "plan", "commit_rollback"]  # strictly one after the other


async def test_apps_with_disjoint_paths_do_not_wait_for_each_other(tmp_path: Path) -> None:
    git, held, events = await _two_rollbacks(tmp_path, "apps/docsum-features")
    assert ("plan", "docsum-features") in held  # planned while docsum-llm was still syncing
    assert not any(e.startswith("waiting: incident") for e in events)
