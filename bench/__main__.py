"""``python -m bench`` (``make bench``): reaction time, ingest and memory of rollbackbot, with targets.

Exit status 0 when every figure was measured, whether or not it meets its target; 2 when the
harness itself failed (a process died, an incident did not roll back, a count is wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ingest import CLIENTS, PACED_RATE, IngestResult, run_ingest, run_paced
from bench.reaction import REACTION_APPS, WARMUP_APP, ReactionResult, floor_clone, run_reaction, service_steps
from bench.repo import APPS, CACHE_VERSION, RELEASES, SyntheticRepo, counts, ensure_repo, fresh_copy
from bench.report import RESULTS, Check, machine, summary, table, write_results
from bench.stack import BenchError, RssSampler, Stack, rss_kib, start_stack, wait_for_first_readiness

REACTION_P50_MS = 150.0
REACTION_P95_MS = 250.0
FLOOR_RATIO = 0.5
INGEST_RATE = 30_000.0  # alerts/s in the 32-client burst
INGEST_P99_MS = 50.0  # webhook answer p99 in the burst
PACED_P99_MS = 10.0  # webhook answer p99 at a steady PACED_RATE
PEAK_RSS_MB = 150.0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Measured:
    repo: SyntheticRepo
    stack: Stack
    reaction: ReactionResult | None  # None: --only ingest
    ingest: IngestResult
    paced_ms: list[float]
    memory_kib: dict[str, int]
    readiness_seconds: float = 0.0  # start-up: ready -> first readiness run ended (measured after it)

    def checks(self) -> list[Check]:
        return [*self.reaction_checks(), *self.ingest_checks()]

    def ingest_checks(self) -> list[Check]:
        return [
            Check(
                "ingest burst throughput", round(self.ingest.throughput), "alerts/s", INGEST_RATE, higher_is_better=True
            ),
            Check("ingest burst webhook answer p99", summary(self.ingest.latencies_ms)["p99"], "ms", INGEST_P99_MS),
            Check(
                f"ingest answer p99 at {PACED_RATE:,} alerts/s paced", summary(self.paced_ms)["p99"], "ms", PACED_P99_MS
            ),
            Check("peak RSS of the service (VmHWM)", round(self.memory_kib["VmHWM"] / 1024, 1), "MB", PEAK_RSS_MB),
        ]

    def reaction_checks(self) -> list[Check]:
        if self.reaction is None:
            return []
        service = summary([r.send_to_pushed for r in self.reaction.service])["p50"]
        floor = summary([f.total for f in self.reaction.floor])["p50"]
        return [
            Check("reaction p50 (alert sent -> commit pushed)", service, "ms", REACTION_P50_MS),
            Check(
                "reaction p95", summary([r.send_to_pushed for r in self.reaction.service])["p95"], "ms", REACTION_P95_MS
            ),
            Check("reaction p50 / floor p50", round(service / floor, 2), "x", FLOOR_RATIO),
        ]

    def notes(self) -> list[tuple[str, str]]:
        ingest = self.ingest
        ingest_notes = [
            ("ingest webhook answer p50", f"{summary(ingest.latencies_ms)['p50']:.1f} ms"),
            ("ingest incidents / distinct alerts", f"{ingest.incidents} / {ingest.distinct}"),
            ("ingest inbox empty (all decided) after", f"{ingest.inbox_drained_seconds:.2f} s"),
            (
                "peak RSS by phase",
                ", ".join(
                    f"{name.removeprefix('VmRSS_peak_')} {kib / 1024:.0f} MB"
                    for name, kib in self.memory_kib.items()
                    if name.startswith("VmRSS_peak_")
                ),
            ),
            ("ingest incidents all final after", f"{ingest.drain_seconds:.1f} s"),
            (
                f"answer p50 / p99 at {PACED_RATE:,} alerts/s paced",
                f"{summary(self.paced_ms)['p50']:.1f} / {summary(self.paced_ms)['p99']:.1f} ms",
            ),
        ]
        if self.reaction is None:
            return ingest_notes
        runs = self.reaction.service

        def p50(values: list[float]) -> str:
            return f"{summary(values)['p50']:.0f} ms"

        floor = summary([f.total for f in self.reaction.floor])
        git_steps = [(f"    git {name} p50", p50(values)) for name, values in self.service_git_steps().items()]
        floor_steps = [
            (f"    floor {name} p50", p50([f.steps[name] for f in self.reaction.floor])) for name in self.floor_names()
        ]
        return [
            ("floor p50 / p95 (bench/floor.sh)", f"{floor['p50']:.0f} / {floor['p95']:.0f} ms"),
            *floor_steps,
            ("  webhook answered p50", p50([r.answer for r in runs])),
            ("  received -> rolling_back p50", p50([r.to_rolling_back for r in runs])),
            ("  rolling_back -> pushed p50", p50([r.commit_push for r in runs])),
            *git_steps,
            ("  pushed -> Synced+Healthy p50", p50([r.pushed_to_healthy for r in runs])),
            ("alert sent -> Synced+Healthy p50", p50([r.send_to_pushed + r.pushed_to_healthy for r in runs])),
            *ingest_notes,
        ]

    def floor_names(self) -> list[str]:
        return list(self.reaction.floor[0].steps) if self.reaction and self.reaction.floor else []

    def service_git_steps(self) -> dict[str, list[float]]:
        """Step name -> per-incident milliseconds, from the git adapter's log lines (0 when a step did not run)."""
        assert self.reaction is not None
        names = list(dict.fromkeys(name for r in self.reaction.service for name in r.git_steps))
        return {name: [r.git_steps.get(name, 0.0) for r in self.reaction.service] for name in names}

    def data(self) -> dict[str, Any]:
        ingest = self.ingest
        commits, tags = counts(self.repo.remote)
        return {
            "repository": {
                "cache_version": CACHE_VERSION,
                "apps": APPS,
                "releases_per_app": RELEASES,
                "signed_tags": tags,
                "commits": commits,
                "build_seconds": self.repo.build_seconds,  # null: taken from bench/cache
            },
            "service_ready_seconds": round(self.stack.ready_seconds, 2),
            "first_readiness_run_seconds": round(self.readiness_seconds, 2),
            "reaction": self.reaction_data(),
            "ingest": {
                "alerts": ingest.alerts,
                "distinct_alerts": ingest.distinct,
                "webhooks": ingest.webhooks,
                "clients": CLIENTS,
                "burst_seconds": round(ingest.seconds, 3),
                "alerts_per_second": round(ingest.throughput, 1),
                "webhook_answer_ms": summary(ingest.latencies_ms),
                "incidents": ingest.incidents,
                "distinct_incident_keys": ingest.distinct_keys,
                "redelivery_answer_mismatches": ingest.redelivery_mismatches,
                "all_final_after_seconds": round(ingest.drain_seconds, 2),
                "inbox_drained_after_seconds": round(ingest.inbox_drained_seconds, 2),
                "paced_rate_alerts_per_second": PACED_RATE,
                "paced_webhook_answer_ms": summary(self.paced_ms),
            },
            "memory_kib": self.memory_kib,
        }

    def reaction_data(self) -> dict[str, Any] | None:
        reaction = self.reaction
        if reaction is None:
            return None
        steps = {name: summary([f.steps[name] for f in reaction.floor]) for name in reaction.floor[0].steps}
        return {
            "apps": REACTION_APPS,
            "send_to_pushed_ms": summary([r.send_to_pushed for r in reaction.service]),
            "received_to_pushed_ms": summary([r.received_to_pushed for r in reaction.service]),
            "received_to_rolling_back_ms": summary([r.to_rolling_back for r in reaction.service]),
            "rolling_back_to_pushed_ms": summary([r.commit_push for r in reaction.service]),
            "pushed_to_healthy_ms": summary([r.pushed_to_healthy for r in reaction.service]),
            "webhook_answer_ms": summary([r.answer for r in reaction.service]),
            "floor_ms": summary([f.total for f in reaction.floor]),
            "floor_steps_ms": steps,
            "service_git_steps_ms": {name: summary(v) for name, v in self.service_git_steps().items()},
            "runs": [{"service": asdict(s), "floor": asdict(f)} for s, f in reaction.pairs],
            "runs_note": "runs[0] is the warm-up (another app), not counted in the figures above",
        }


def _verify(ingest: IngestResult) -> None:
    if not ingest.incidents == ingest.distinct_keys == ingest.distinct:
        raise BenchError(f"{ingest.incidents} ingest incidents for {ingest.distinct} distinct alerts")
    if ingest.redelivery_mismatches:
        raise BenchError(f"{ingest.redelivery_mismatches} re-deliveries answered other incident ids")


def _measure(repo: SyntheticRepo, work: Path, only: str | None = None) -> Measured:
    remotes = (fresh_copy(repo, work / "remote.git"), fresh_copy(repo, work / "floor-remote.git"))
    floor_dir = floor_clone(remotes[1], work / "floor-clone.git")
    with ExitStack() as stack:
        running = start_stack(stack, work, remotes[0], repo.allowed_signers, [WARMUP_APP, *REACTION_APPS])
        _say(f"service ready in {running.ready_seconds:.1f}s (its clone of the remote included)")
        readiness_seconds = wait_for_first_readiness(running.url)
        _say(f"first readiness run ended {readiness_seconds:.1f}s later (every guarded app planned and verified)")
        rss = RssSampler(running.pid)
        rss.start()
        stack.callback(rss.stop)

        async def both() -> tuple[ReactionResult | None, IngestResult, list[float]]:
            reaction = None
            if only != "ingest":
                rss.phase = "reaction"
                _say(f"reaction: 1 warm-up + {len(REACTION_APPS)} incidents, each followed by bench/floor.sh ...")
                reaction = await run_reaction(running.url, remotes, floor_dir, repo.allowed_signers)
            rss.phase = "ingest"
            _say(f"ingest: 10,000 alerts from {CLIENTS} concurrent clients ...")
            ingest = await run_ingest(running.url, running.database)
            _say(f"ingest: the same kind of webhooks at a steady {PACED_RATE:,} alerts/s ...")
            return reaction, ingest, await run_paced(running.url)

        reaction, ingest, paced = asyncio.run(both())
        steps = service_steps(running.log)
        for measured_run, _ in reaction.pairs if reaction else []:
            measured_run.git_steps = steps.get(measured_run.incident, {})
        memory = rss_kib(running.pid) | {f"VmRSS_peak_{phase}": kib for phase, kib in rss.peaks.items()}
    _verify(ingest)
    return Measured(repo, running, reaction, ingest, paced, memory, readiness_seconds)


def run(keep: bool, only: str | None = None) -> int:
    started, facts, clock = datetime.now(UTC), machine(), time.monotonic()
    repo = ensure_repo()
    built = f"built in {repo.build_seconds:.1f}s" if repo.build_seconds is not None else "cached"
    _say(f"repository: {APPS} apps x {RELEASES} signed releases ({built}) at {repo.root}")
    work = Path(tempfile.mkdtemp(prefix="rollbackbot-bench-"))
    try:
        measured = _measure(repo, work, only)
    except (BenchError, RuntimeError, OSError) as exc:
        log = work / "processes.log"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
        _say(f"bench failed: {exc}\n--- processes.log (tail)\n{tail}\nwork directory kept: {work}")
        return 2
    checks = measured.checks()
    data = {"started": started.isoformat(timespec="seconds"), "machine": facts, **measured.data()}
    data["bench_seconds"] = round(time.monotonic() - clock, 1)
    print(table(checks, measured.notes()))
    if only is None:  # a partial run never replaces the figures of a whole one
        _say(f"\nwritten: {write_results(data, checks, RESULTS)}")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        _say(f"work directory kept: {work}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, repositories, store)")
    parser.add_argument("--only", choices=["ingest"], help="measure one phase only (results.json is not written)")
    arguments = parser.parse_args()
    return run(arguments.keep, arguments.only)


if __name__ == "__main__":
    sys.exit(main())
