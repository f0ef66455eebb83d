"""``python -m bench.live`` (part of ``make bench``): the exposure window of the whole loop, live.

Runs ``rollbackbot.demo.live`` (real Prometheus and Alertmanager, the observer, the model
stand-in, the service, the Argo CD stand-in; rule windows divided by 60, 1 s scrape and
evaluation) ``--runs`` times, prints the exposure window and its breakdown (median, min, max) and
writes them under ``"live"`` in ``bench/results.json``, next to what ``python -m bench`` wrote.

Exit status 0 when every run completed (targets met or not), 2 when a run failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from bench.report import RESULTS, Check, machine, table
from rollbackbot.demo import timeline as tl
from rollbackbot.demo.live import run_live

EXPOSURE_TARGET_S = 30.0  # the target with 1 s scrape/evaluation and the demo's scaled windows
DIVISOR = 60
BENIGN_SECONDS = 8.0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def measure(runs: int) -> dict[str, Any]:
    """``runs`` live loops: each timeline and breakdown, and the spread of every breakdown figure."""
    timelines = []
    for index in range(runs):
        _say(f"live loop run {index + 1}/{runs} (about 25 s) ...")
        with tempfile.TemporaryDirectory(prefix="rollbackbot-live-bench-") as work:
            result = run_live(Path(work) / "run", divisor=DIVISOR, benign_seconds=BENIGN_SECONDS)
        if problems := tl.chain_order(result["timeline"]):
            raise RuntimeError(f"run {index + 1}: the chain is incomplete or out of order: {problems}")
        timelines.append(result["timeline"])
    breakdowns = [tl.breakdown(t) for t in timelines]
    spread = {
        name: _spread([float(b[name]) for b in breakdowns if b[name] is not None])
        for name in breakdowns[0]
        if all(b[name] is not None for b in breakdowns)
    }
    return {
        "divisor": DIVISOR,
        "benign_seconds": BENIGN_SECONDS,
        "scrape_and_evaluation_interval_seconds": 1,
        "runs": runs,
        "breakdown_seconds": spread,
        "timelines": timelines,
    }


def checks(live: dict[str, Any]) -> list[Check]:
    """The issue's target, on the worst run."""
    exposure = live["breakdown_seconds"]["exposure_seconds (first attack -> safe release serving)"]
    return [
        Check(
            "live exposure window, worst run (attack -> safe release serving)", exposure["max"], "s", EXPOSURE_TARGET_S
        )
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure, print, merge into bench/results.json."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.live", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    started, clock = datetime.now(UTC), time.monotonic()
    try:
        live = measure(max(1, args.runs))
    except (RuntimeError, TimeoutError, OSError) as exc:
        _say(f"live bench failed: {exc}")
        return 2
    found = checks(live)
    notes = [
        (name, f"{s['median']:.2f} s (min {s['min']:.2f}, max {s['max']:.2f})")
        for name, s in live["breakdown_seconds"].items()
    ]
    print(table(found, notes))
    document = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    document["live"] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "checks": [
            {"metric": c.metric, "value": c.value, "unit": c.unit, "target": c.target, "passed": c.passed}
            for c in found
        ],
        **live,
        "bench_seconds": round(time.monotonic() - clock, 1),
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    _say(f'\nwritten: {RESULTS} (key "live")')
    return 0


if __name__ == "__main__":
    sys.exit(main())
