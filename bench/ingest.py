"""Ingest: 10,000 alerts in a burst from 32 concurrent clients, grouped as Alertmanager groups them.

Webhooks carry 1-50 alerts of one alertname (Alertmanager's ``group_by: [alertname]``). About a
tenth of the deliveries are re-deliveries: whole webhooks sent again, as Alertmanager does when a
flush is retried or a group is repeated. The alerts match the ``mode: notify`` policy, so each
opens an incident that the service decides in the background (store reads and writes, no git),
as a real alert storm would, without thousands of rollbacks.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.repo import APPS, app_name
from bench.stack import HEADERS, INGEST_ALERT_PREFIX, INGEST_POLICY, BenchError
from rollbackbot.testing.alertmanager import alert, notification

TOTAL_ALERTS = 10_000
REDELIVERED_SHARE = 0.1
CLIENTS = 32
MAX_GROUP = 50
ALERTNAMES = [f"{INGEST_ALERT_PREFIX}{n}" for n in ("RefusalDrop", "Injection", "Confidence", "GuardLatency")]
SEED = 20261101
FINAL_STATES = ("notified", "suppressed", "failed")


@dataclass(frozen=True)
class Webhook:
    body: bytes
    alerts: int
    group: int  # which notification this is; a re-delivery repeats an earlier group
    redelivery: bool


def _alert(rng: random.Random, name: str, number: int, now: datetime) -> dict[str, object]:
    labels = {
        "alertname": name,
        "app": app_name(rng.randrange(APPS)),
        "severity": rng.choice(["warning", "critical"]),
        "namespace": "ml-prod",
        "pod": f"model-server-{number:05d}",
    }
    started = now - timedelta(seconds=rng.randrange(60, 3600))
    return alert(labels, started, annotations={"summary": f"{name} on {labels['app']}"})


def build_webhooks(seed: int = SEED, first_number: int = 0) -> tuple[list[Webhook], int]:
    """The burst, in send order, and the number of distinct alerts in it."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    distinct = round(TOTAL_ALERTS * (1 - REDELIVERED_SHARE))
    originals: list[Webhook] = []
    made = 0
    while made < distinct:
        size = min(rng.randint(1, MAX_GROUP), distinct - made)
        name = rng.choice(ALERTNAMES)
        group = [_alert(rng, name, first_number + made + i, now) for i in range(size)]
        originals.append(Webhook(json.dumps(notification(group)).encode(), size, len(originals), False))
        made += size
    burst = list(originals)
    repeated = 0
    while repeated < TOTAL_ALERTS - distinct:
        index = rng.randrange(len(originals))
        if originals[index].alerts > TOTAL_ALERTS - distinct - repeated:
            continue
        # Somewhere after its original: a retry or a repeat comes later, often while others are in flight.
        position = rng.randint(index + 1, len(burst))
        burst.insert(position, Webhook(originals[index].body, originals[index].alerts, index, True))
        repeated += originals[index].alerts
    return burst, distinct


@dataclass
class IngestResult:
    alerts: int
    distinct: int
    webhooks: int
    seconds: float
    latencies_ms: list[float]
    incidents: int  # rows of the ingest policy in the store
    distinct_keys: int  # distinct (fingerprint, startsAt) among them
    redelivery_mismatches: int  # re-deliveries answered with other incident ids than the original
    drain_seconds: float  # until every ingest incident reached a final state
    inbox_drained_seconds: float = 0.0  # until the inbox was empty (every accepted webhook decided)

    @property
    def throughput(self) -> float:
        return self.alerts / self.seconds


async def _burst(url: str, webhooks: list[Webhook]) -> tuple[float, list[float], list[list[str]]]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(webhooks)):
        queue.put_nowait(index)
    latencies = [0.0] * len(webhooks)
    answers: list[list[str]] = [[] for _ in webhooks]

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            started = time.perf_counter()
            answer = await client.post("/webhook/alertmanager", content=webhooks[index].body, headers=HEADERS)
            latencies[index] = 1000 * (time.perf_counter() - started)
            if answer.status_code != 202:
                raise BenchError(f"ingest webhook answered {answer.status_code}: {answer.text[:200]}")
            answers[index] = answer.json()["incidents"]

    clients = [httpx.AsyncClient(base_url=url, timeout=30.0) for _ in range(CLIENTS)]
    try:
        for client in clients:  # connect before the clock starts
            await client.get("/healthz")
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in clients))
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return seconds, latencies, answers


def _inbox_rows(database: Path | str) -> int:
    """Accepted webhooks not decided yet (the inbox table), read-only."""
    query = "SELECT COUNT(*) FROM inbox WHERE error IS NULL"
    if isinstance(database, Path):  # SQLite: the inbox has a file of its own (store_sql.inbox_url)
        sidecar = database.with_name(f"{database.stem}-inbox{database.suffix}")
        with sqlite3.connect(f"file:{sidecar}?mode=ro", uri=True) as conn:
            return int(conn.execute(query).fetchone()[0])
    from sqlalchemy import create_engine, text

    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(query)).scalar_one())
    finally:
        engine.dispose()


def _count(database: Path | str) -> tuple[int, int, int]:
    """(ingest incidents, distinct alert keys among them, those not final yet), read-only.

    ``database``: the SQLite file, or a SQLAlchemy URL (PostgreSQL).
    """
    final = ", ".join(f"'{state}'" for state in FINAL_STATES)
    if isinstance(database, Path):
        query = (
            "SELECT COUNT(*), COUNT(DISTINCT fingerprint || '/' || starts_at), "
            f"COALESCE(SUM(state NOT IN ({final})), 0) FROM incidents WHERE json_extract(record, '$.policy') = ?"
        )
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            total, keys, pending = conn.execute(query, (INGEST_POLICY,)).fetchone()
        return int(total), int(keys), int(pending)
    from sqlalchemy import create_engine, text

    query = (
        "SELECT COUNT(*), COUNT(DISTINCT fingerprint || '/' || starts_at::text), "
        f"COALESCE(SUM(CASE WHEN state NOT IN ({final}) THEN 1 ELSE 0 END), 0) FROM incidents "
        "WHERE record::json->>'policy' = :policy"
    )
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            total, keys, pending = conn.execute(text(query), {"policy": INGEST_POLICY}).one()
    finally:
        engine.dispose()
    return int(total), int(keys), int(pending)


@contextmanager
def _no_client_gc() -> Iterator[None]:
    """The load generator's own garbage collection off while it measures: a pause here would be counted as
    the service's answer time (the service's collector runs as usual)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def run_ingest(url: str, database: Path | str, drain_timeout: float = 120.0) -> IngestResult:
    webhooks, distinct = build_webhooks()
    with _no_client_gc():
        seconds, latencies, answers = await _burst(url, webhooks)
    first = {w.group: answers[i] for i, w in enumerate(webhooks) if not w.redelivery}
    mismatches = sum(1 for i, w in enumerate(webhooks) if w.redelivery and answers[i] != first[w.group])
    drain_started = time.perf_counter() - seconds
    deadline = time.monotonic() + drain_timeout
    while _inbox_rows(database) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    inbox_drained = time.perf_counter() - drain_started
    incidents, keys, pending = _count(database)
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        incidents, keys, pending = _count(database)
    if pending:
        raise BenchError(f"{pending} ingest incidents still open {drain_timeout:.0f}s after the burst")
    return IngestResult(
        alerts=sum(w.alerts for w in webhooks),
        distinct=distinct,
        webhooks=len(webhooks),
        seconds=seconds,
        latencies_ms=latencies,
        incidents=incidents,
        distinct_keys=keys,
        redelivery_mismatches=mismatches,
        drain_seconds=time.perf_counter() - drain_started,
        inbox_drained_seconds=inbox_drained,
    )


PACED_RATE = 2_000  # alerts/s: the throughput target, offered at a steady pace
PACED_SECONDS = 3.0


async def run_paced(url: str, rate: float = PACED_RATE, seconds: float = PACED_SECONDS) -> list[float]:
    """Answer times when webhooks arrive at ``rate`` alerts/s (open loop: no client waits for another).

    The burst measures capacity; with 32 clients sending back to back, every answer waits behind the
    other 31 (answer time = concurrency / throughput). This measures the answer time Alertmanager
    sees at the target rate.
    """
    webhooks, _ = build_webhooks(seed=SEED + 1, first_number=1_000_000)
    schedule: list[tuple[float, Webhook]] = []
    offset = 0.0
    for webhook in webhooks:
        if offset > seconds:
            break
        schedule.append((offset, webhook))
        offset += webhook.alerts / rate
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=httpx.Limits(max_connections=64)) as client:
        await client.get("/healthz")
        start = time.perf_counter()

        async def send(at: float, webhook: Webhook) -> None:
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            sent = time.perf_counter()
            answer = await client.post("/webhook/alertmanager", content=webhook.body, headers=HEADERS)
            latencies.append(1000 * (time.perf_counter() - sent))
            if answer.status_code != 202:
                raise BenchError(f"paced webhook answered {answer.status_code}")

        with _no_client_gc():
            await asyncio.gather(*(send(at, w) for at, w in schedule))
    return latencies
