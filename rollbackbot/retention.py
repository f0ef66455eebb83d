"""Retention: terminal incidents older than ``ROLLBACKBOT_RETENTION_DAYS`` (default 90) are pruned.

Runs once at start and then every hour inside the service process; only terminal incidents go
(an open incident is never deleted, however old). Deleting is idempotent, so replicas pruning at
the same time do no harm. Counted in ``rollbackbot_incidents_pruned_total``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from prometheus_client import Counter

from rollbackbot.clock import Clock
from rollbackbot.metrics import REGISTRY
from rollbackbot.ports import IncidentStore

log = logging.getLogger("rollbackbot.retention")
PRUNE_INTERVAL_SECONDS = 3600.0
PRUNED = Counter("rollbackbot_incidents_pruned_total", "Terminal incidents deleted by retention", registry=REGISTRY)


def prune_once(store: IncidentStore, clock: Clock, days: int) -> int:
    """Delete the terminal incidents opened more than ``days`` days ago; how many went."""
    removed = store.prune(clock.now() - timedelta(days=days))
    PRUNED.inc(removed)
    if removed:
        log.info("pruned old incidents", extra={"pruned": removed, "retention_days": days})
    return removed


async def prune_forever(
    store: IncidentStore,
    clock: Clock,
    days: int,
    interval: float = PRUNE_INTERVAL_SECONDS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """``prune_once`` now and every ``interval`` seconds; a failure is logged and retried next time."""
    while True:
        try:
            await asyncio.to_thread(prune_once, store, clock, days)
        except Exception:  # housekeeping must never take the service down
            log.exception("pruning old incidents failed; retrying at the next interval")
        await sleep(interval)
