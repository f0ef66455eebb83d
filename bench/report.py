"""Figures, targets, the printed table and ``bench/results.json``."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0-100): a value that was actually observed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    """p50, p95, p99, min, max and mean, rounded for reading."""
    return {
        "p50": round(median(values), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "mean": round(sum(values) / len(values), 1),
        "n": len(values),
    }


@dataclass(frozen=True)
class Check:
    """One figure against its target."""

    metric: str
    value: float
    unit: str
    target: float
    higher_is_better: bool = False

    @property
    def passed(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    @property
    def target_text(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {_num(self.target)} {self.unit}"

    def row(self) -> tuple[str, str, str, str]:
        return (
            self.metric,
            f"{self.value:.2f} x" if self.unit == "x" else f"{_num(self.value)} {self.unit}",
            self.target_text,
            "PASS" if self.passed else "FAIL",
        )


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:.1f}"


def table(checks: list[Check], notes: list[tuple[str, str]]) -> str:
    """The printed table: checked metrics first, then informational figures."""
    rows = [("metric", "value", "target", "result"), *(c.row() for c in checks)]
    rows += [(name, value, "", "") for name, value in notes]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(2 + len(checks), "")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Facts about where the figures were taken."""
    git = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if "model name" in ln), "")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git": git,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(data: dict[str, Any], checks: list[Check], path: Path = RESULTS) -> Path:
    """``results.json``: the checks, then every figure (``data`` carries machine facts and times)."""
    document = {
        "checks": [asdict(c) | {"target_text": c.target_text, "passed": c.passed} for c in checks],
        **data,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
