"""``python -m bench.ha`` (part of ``make bench``): the ingest benchmark on PostgreSQL, beside SQLite.

The same 10,000-alert burst as ``python -m bench`` (bench/ingest.py), against one service process
on a throwaway PostgreSQL 15 cluster (``rollbackbot.testing.postgres``) and, for comparison,
on SQLite, in the same run on the same machine. Prints a table; writes bench/results-ha.json.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.__main__ import INGEST_P99_MS, INGEST_RATE
from bench.ingest import CLIENTS, IngestResult, run_ingest, run_paced
from bench.reaction import REACTION_APPS, WARMUP_APP
from bench.repo import ensure_repo, fresh_copy
from bench.report import Check, machine, summary, table
from bench.stack import start_stack
from rollbackbot.testing.postgres import find_bin_dir, postgres_cluster

RESULTS = Path(__file__).with_name("results-ha.json")
DRAIN_TIMEOUT = 900.0  # seconds for every incident of the burst to be decided (reported, not a target)


def _ingest(work: Path, name: str, database_url: str | None) -> tuple[IngestResult, list[float], float]:
    repo = ensure_repo()
    with ExitStack() as stack:
        remote = fresh_copy(repo, work / f"{name}-remote.git")
        apps = [WARMUP_APP, *REACTION_APPS]
        running = start_stack(stack, work / name, remote, repo.allowed_signers, apps, database_url=database_url)

        async def measure() -> tuple[IngestResult, list[float]]:
            ingest = await run_ingest(running.url, running.database, drain_timeout=DRAIN_TIMEOUT)
            return ingest, await run_paced(running.url)

        ingest, paced = asyncio.run(measure())
    if not ingest.incidents == ingest.distinct_keys == ingest.distinct:
        raise RuntimeError(f"{name}: {ingest.incidents} incidents for {ingest.distinct} distinct alerts")
    return ingest, paced, running.ready_seconds


def _figures(ingest: IngestResult, paced: list[float]) -> dict[str, Any]:
    return {
        "alerts_per_second": round(ingest.throughput, 1),
        "webhook_answer_ms": summary(ingest.latencies_ms),
        "paced_answer_ms": summary(paced),
        "all_final_after_seconds": round(ingest.drain_seconds, 2),
        "incidents": ingest.incidents,
    }


def run() -> int:
    if find_bin_dir() is None:
        print("bench.ha: PostgreSQL server binaries missing (apt-get install postgresql); skipped")
        return 0
    started, clock = datetime.now(UTC), time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="rollbackbot-bench-ha-"))
    results: dict[str, dict[str, Any]] = {}
    checks: list[Check] = []
    try:
        with postgres_cluster() as cluster:
            for name, url in (("sqlite", None), ("postgresql", cluster.create_database("bench"))):
                print(f"ingest on {name}: 10,000 alerts from {CLIENTS} concurrent clients ...", flush=True)
                (root / name).mkdir()
                ingest, paced, _ready = _ingest(root, name, url)
                results[name] = _figures(ingest, paced)
                checks += [
                    Check(f"{name}: ingest throughput", round(ingest.throughput), "alerts/s", INGEST_RATE, True),
                    Check(f"{name}: webhook answer p99", summary(ingest.latencies_ms)["p99"], "ms", INGEST_P99_MS),
                ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    notes = [
        (f"{name}: {label}", value)
        for name, figures in results.items()
        for label, value in (
            ("webhook answer p50", f"{figures['webhook_answer_ms']['p50']:.1f} ms"),
            ("paced 2,000/s answer p99", f"{figures['paced_answer_ms']['p99']:.1f} ms"),
            ("incidents all final after", f"{figures['all_final_after_seconds']:.1f} s"),
        )
    ]
    print(table(checks, notes))
    data = {"started": started.isoformat(timespec="seconds"), "machine": machine(), "ingest": results}
    data["bench_seconds"] = round(time.monotonic() - clock, 1)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
