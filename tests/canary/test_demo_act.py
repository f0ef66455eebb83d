"""The demo's canary act shows the weights moving 25 → 50 → 100 with analysis between steps, then the shadow."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollbackbot.demo.canary import canary_act


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
