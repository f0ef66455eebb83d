"""``manifests/generate.py --scaled-rules``: the shipped model-anomaly rules with time shrunk, for the live demo.

Only durations move (range windows, offsets, ``for:``, group intervals); thresholds, labels and
annotations stay as written, and real promtool accepts the result.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO, require_tool, run

pytestmark = pytest.mark.deploy

GENERATOR = REPO / "manifests" / "generate.py"
RULES = REPO / "manifests" / "monitoring" / "model-anomaly-rules.yml"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"\[([^\]:]+)(?::([^\]]+))?\]|offset\s+(\w+)")
_PART = re.compile(r"(\d+)(ms|[smhd])")


def _scaled(divisor: int) -> str:
    done = run([sys.executable, str(GENERATOR), "--scaled-rules", "--time-divisor", str(divisor)])
    assert done.returncode == 0, done.stderr
    return done.stdout


def _seconds(duration: str) -> float:
    return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(duration))


def _durations(expr: str) -> list[float]:
    return [_seconds(d) for match in _WINDOW.finditer(expr) for d in match.groups() if d]


def _without_durations(expr: str) -> str:
    return _WINDOW.sub("[D]", expr)


def _rules(text: str) -> list[dict[str, Any]]:
    return [rule | {"_group": group} for group in yaml.safe_load(text)["groups"] for rule in group.pop("rules")]


def _shrunk(seconds: float, divisor: int) -> float:
    return max(1, round(seconds / divisor))


@pytest.mark.parametrize("divisor", [60, 7])
def test_every_duration_is_divided_and_nothing_else_changes(divisor: int) -> None:
    original, scaled = _rules(RULES.read_text(encoding="utf-8")), _rules(_scaled(divisor))
    assert len(original) == len(scaled) > 0
    for before, after in zip(original, scaled, strict=True):
        name = before.get("alert") or before.get("record")
        assert _durations(after["expr"]) == [_shrunk(s, divisor) for s in _durations(before["expr"])], name
        assert _without_durations(after["expr"]) == _without_durations(before["expr"]), name  # thresholds kept
        if "for" in before:
            assert _seconds(after["for"]) == _shrunk(_seconds(before["for"]), divisor), name
        assert after.get("labels") == before.get("labels") and after.get("annotations") == before.get("annotations")
        assert _seconds(after["_group"]["interval"]) == _shrunk(_seconds(before["_group"]["interval"]), divisor)


def test_durations_are_scaled_whole_and_compound(tmp_path: Path) -> None:
    sys.path.insert(0, str(GENERATOR.parent))
    try:
        import generate
    finally:
        sys.path.remove(str(GENERATOR.parent))
    source = tmp_path / "rules.yml"
    source.write_text(
        "groups:\n- name: g\n  interval: 1h30m\n  rules:\n  - alert: A\n"
        "    expr: rate(x[2h]) > 0.5 and max_over_time(y[10m:30s]) > 300 unless z offset 1d\n"
        "    for: 90s\n    labels: {window: 5m}\n    annotations: {summary: over 5m}\n"
    )
    text = generate.scaled_rules(source, 60)
    assert "interval: 90s" in text and "for: 2s" in text
    assert "rate(x[120s]) > 0.5 and max_over_time(y[10s:1s]) > 300 unless z offset 1440s" in text
    assert "window: 5m" in text and "summary: over 5m" in text


def test_promtool_accepts_the_scaled_rules(tmp_path: Path) -> None:
    scaled = tmp_path / "scaled.yml"
    scaled.write_text(_scaled(60), encoding="utf-8")
    promtool = require_tool("promtool", "Debian package prometheus: apt-get install --no-install-recommends prometheus")
    result = run([promtool, "check", "rules", str(scaled)])
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_a_divisor_below_one_is_refused() -> None:
    done = run([sys.executable, str(GENERATOR), "--scaled-rules", "--time-divisor", "0"])
    assert done.returncode == 2 and "--time-divisor must be at least 1" in done.stderr
