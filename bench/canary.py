"""Canary rollback figures: route edit, one step commit pushed, a whole 3-step canary through Argo CD.

``python -m bench.canary`` prints a table; no targets (the issue sets none), figures only:

- route edit: round-trip YAML load, weight change, dump, for an HTTPRoute and a VirtualService;
- step commit: edit + fast-import + push to a ``file://`` remote, median of 10 steps;
- canary: 25 → 50 → 100 with the Argo CD stand-in in process and an analysis that passes at once
  (pause 0s, interval 0s): the machinery's own cost per step, not a realistic rollout time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.git.route_commit import RouteCommitter
from rollbackbot.adapters.git.route_yaml import edit_route
from rollbackbot.core.policy import RouteKind, TrafficRouter
from rollbackbot.core.traffic import StepCommit, StepPosition, TrafficPlan
from rollbackbot.demo import canary as demo
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox

ISTIO = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: support-llm, namespace: ml-prod}
spec:
  hosts: [support-llm]
  http:
  - name: chat
    route:
    - destination: {host: support-llm, subset: support-llm-stable}
      weight: 0
    - destination: {host: support-llm, subset: support-llm-candidate}
      weight: 100
"""


def _router(kind: str) -> TrafficRouter:
    policy_router = demo.policy().spec.traffic_router
    assert policy_router is not None
    return policy_router.model_copy(update={"kind": RouteKind(kind)})


def _edit_ms(kind: str, text: str, runs: int = 200) -> float:
    router = _router(kind)
    plan = TrafficPlan(router.backends, 50)
    started = time.perf_counter()
    for _ in range(runs):
        edit_route(text, router, plan)
    return 1000 * (time.perf_counter() - started) / runs


def _commit_ms(work: Path, steps: int = 10) -> float:
    sandbox = build_sandbox(work / "gitops", [AppSpec(demo.APP, [Release("1.1.0")])])
    sandbox.commit_paths({demo.ROUTE_FILE: demo.ROUTE}, "route")
    committer = RouteCommitter(GitOpsRepository(sandbox.remote_url, "main", work / "clone", sandbox.allowed_signers))
    router, times = _router("HTTPRoute"), []
    for index in range(steps):
        step = StepCommit("bench", demo.APP, router, TrafficPlan(router.backends, index + 1), StepPosition(1, 1))
        started = time.perf_counter()
        committer.commit_step(step)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


async def _canary_s(work: Path) -> float:
    started = time.perf_counter()
    assert await demo.canary_act(work) == 0
    return time.perf_counter() - started


def main() -> None:
    """Measure and print."""
    with tempfile.TemporaryDirectory(prefix="rollbackbot-bench-canary-") as tmp:
        work = Path(tmp)
        rows = [
            ("route edit, HTTPRoute (ms)", f"{_edit_ms('HTTPRoute', demo.ROUTE):.2f}"),
            ("route edit, VirtualService (ms)", f"{_edit_ms('VirtualService', ISTIO):.2f}"),
            ("step commit + push, file:// remote, median of 10 (ms)", f"{_commit_ms(work / 'commit'):.1f}"),
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            seconds = asyncio.run(_canary_s(work / "act"))
        rows.append(("demo canary act: 3 steps, 5 analyses, sandbox + mirror (s)", f"{seconds:.2f}"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
