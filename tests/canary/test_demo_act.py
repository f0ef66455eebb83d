"""The demo's canary act shows the weights moving 25 → 50 → 100 with analysis between steps, then the shadow."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollbackbot.core.policy_select import select_policy
from rollbackbot.core.traffic import canary_steps
from rollbackbot.demo.canary import canary_act, policy
from rollbackbot.policy_files import load_policies

REPO = Path(__file__).resolve().parents[2]


async def test_the_canary_act_moves_the_weights_and_switches_the_shadow_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await canary_act(tmp_path) == 0
    out = capsys.readouterr().out
    order = [
        "support-llm-stable=25,support-llm-candidate=75 committed",
        "step 1/3 analysis passed",
        "support-llm-stable=50,support-llm-candidate=50 committed",
        "step 2/3 analysis inconclusive",
        "step 2/3 analysis passed",
        "support-llm-stable=100,support-llm-candidate=0 committed",
        "shadow sandbox",
        "shadow 2% to ml-quarantine",
        "OK: canary completed",
    ]
    positions = [out.index(text) for text in order]
    assert positions == sorted(positions)


def test_the_act_runs_the_shipped_canary_policy_with_demo_sized_waits() -> None:
    [shipped] = [p for p in load_policies(REPO / "policies") if p.name == "support-llm-injection-canary"]
    demo = policy()
    assert demo.name == shipped.name
    same = ("matchers", "target", "mode", "traffic_router", "shadow", "approval")
    assert {f: getattr(demo.spec, f) for f in same} == {f: getattr(shipped.spec, f) for f in same}
    waits = {"pause", "step_timeout"}
    assert demo.spec.strategy is not None and shipped.spec.strategy is not None
    assert demo.spec.strategy.model_dump(exclude=waits | {"analysis"}) == shipped.spec.strategy.model_dump(
        exclude=waits | {"analysis"}
    )
    assert demo.spec.strategy.analysis is not None and shipped.spec.strategy.analysis is not None
    assert demo.spec.strategy.analysis.queries == shipped.spec.strategy.analysis.queries
    # The alert the act fires selects the shipped policy and goes through the steps (not instant).
    labels = {"alertname": "PromptInjectionSpike", "app": "support-llm", "severity": "critical"}
    assert select_policy(load_policies(REPO / "policies"), labels) == shipped
    assert canary_steps(shipped.spec.strategy, labels) == (25, 50, 100)
    assert canary_steps(shipped.spec.strategy, {**labels, "alertname": "ModelCanaryLeak"}) == (100,)
