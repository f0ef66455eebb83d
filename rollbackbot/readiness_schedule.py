"""The readiness check on a schedule inside ``rollbackbot serve``: at start, every interval, after a policy reload.

It yields to incidents: between two apps it waits while any incident is being driven, and it plans
on its own clone of the GitOps repository, so a rollback never queues behind it for the git lock.
The last report feeds ``GET /api/readiness`` and the ``rollbackbot_rollback_ready`` metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from rollbackbot.core.policy import Policy
from rollbackbot.core.readiness import ReadinessReport, report_to_json
from rollbackbot.readiness import READINESS_METRICS, ReadinessChecker, ReadinessMetrics

log = logging.getLogger("rollbackbot.readiness")

QUIET_POLL_SECONDS = 1.0


class ReadinessSchedule:
    """Runs ``checker`` now and then and keeps the latest report."""

    def __init__(
        self,
        checker: ReadinessChecker,
        policies: Callable[[], Sequence[Policy]],
        *,
        interval: float,
        busy: Callable[[], bool] = lambda: False,
        metrics: ReadinessMetrics = READINESS_METRICS,
        quiet_poll: float = QUIET_POLL_SECONDS,
    ) -> None:
        self.checker = checker
        self.policies = policies
        self.interval = interval
        self.busy = busy
        self.metrics = metrics
        self.quiet_poll = quiet_poll
        self.latest: ReadinessReport | None = None
        self.runs = 0
        self._again = asyncio.Event()

    def request_run(self) -> None:
        """Run again soon (after a policy reload), without waiting for the interval."""
        self._again.set()

    async def yield_to_incidents(self) -> None:
        """Wait while an incident is being driven: readiness is never worth delaying a rollback."""
        while self.busy():
            await asyncio.sleep(self.quiet_poll)

    async def run_once(self) -> ReadinessReport:
        """One full run; publishes the report to the metrics and logs every app that is not ready."""
        await self.yield_to_incidents()
        report = await self.checker.check(self.policies(), pause=self.yield_to_incidents)
        self.latest = report
        self.metrics.report = report
        self.runs += 1
        for item in report.apps:
            if not item.ready:
                log.warning(
                    "rollback not ready",
                    extra={
                        "app": item.app,
                        "policy": item.policy,
                        "blockers": [b.value for b in item.blockers],
                        "detail": "; ".join(f.detail for f in item.findings)[:500],
                    },
                )
        ready = sum(1 for item in report.apps if item.ready)
        log.info("readiness run: %d of %d guarded apps ready", ready, len(report.apps))
        return report

    async def run_forever(self) -> None:
        """Until cancelled: run, then sleep until the interval passes or a reload asks for a run."""
        while True:
            self._again.clear()
            try:
                await self.run_once()
            except Exception:  # one failed run must not end the schedule; the next one tries again
                log.exception("readiness run failed")
            try:
                await asyncio.wait_for(self._again.wait(), timeout=self.interval)
            except TimeoutError:
                pass

    def report_json(self) -> dict[str, Any]:
        """The latest report for ``GET /api/readiness`` (``checked_at`` null before the first run ends)."""
        if self.latest is None:
            return {"ready": None, "checked_at": None, "apps": [], "errors": []}
        return report_to_json(self.latest)

    def app_json(self, app: str) -> dict[str, Any] | None:
        """One app's entry of the latest report (the incident pages show it), or None."""
        return next((a for a in self.report_json()["apps"] if a["app"] == app), None)
