"""The inbox table on both engines: appended in one transaction, claimed oldest first, poison kept aside;
on PostgreSQL two drainers (two replicas) decide each row once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.inbox import Inbox
from rollbackbot.ports import InboxRow

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _rows(n: int) -> list[tuple[datetime, bytes, list[str]]]:
    return [(NOW + timedelta(milliseconds=i), f'{{"n": {i}}}'.encode(), [f"inc-{i}"]) for i in range(n)]


def test_rows_are_appended_together_and_claimed_oldest_first(db_url: str) -> None:
    inbox = SqlIncidentStore(db_url).inbox
    newest = inbox.append(_rows(5))
    assert inbox.newest() == newest and inbox.depth().pending == 5
    claim = inbox.claim(3)
    assert [r.body for r in claim.rows] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert claim.rows[0].answer == ["inc-0"] and claim.rows[0].accepted_at == NOW
    first = claim.rows[0].seq
    inbox.finish(claim, [first], {claim.rows[1].seq: None, claim.rows[2].seq: "poison: bad body"})
    depth = inbox.depth()
    assert (depth.pending, depth.poisoned) == (3, 1)  # the retried row is still pending, the poison is not
    assert inbox.oldest_pending() == claim.rows[1].seq
    (kept,) = inbox.poisoned()
    assert kept.seq == claim.rows[2].seq and kept.attempts == 1
    assert [r.attempts for r in inbox.claim(10).rows] == [1, 0, 0]


def test_seqs_are_never_reused_after_the_inbox_emptied(db_url: str) -> None:
    """Read-your-writes compares seqs: a new row must sort after every row decided before."""
    inbox = SqlIncidentStore(db_url).inbox
    last = inbox.append(_rows(3))
    claim = inbox.claim(10)
    inbox.finish(claim, [r.seq for r in claim.rows], {})
    assert inbox.append(_rows(1)) > last


async def test_two_drainers_on_one_postgresql_inbox_decide_each_row_once(pg_cluster) -> None:  # type: ignore[no-untyped-def]
    url = pg_cluster.create_database("inbox_two_drainers")
    stores = [SqlIncidentStore(url), SqlIncidentStore(url)]  # two replicas: two engines, two connection pools
    stores[0].inbox.append(_rows(64))
    decided: Counter[int] = Counter()
    by: dict[int, set[int]] = {0: set(), 1: set()}

    def decider(replica: int):  # type: ignore[no-untyped-def]
        def decide(rows: list[InboxRow]) -> None:
            time.sleep(0.005)  # deciding takes a while: the other replica claims meanwhile
            for row in rows:
                decided[row.seq] += 1
                by[replica].add(row.seq)

        return decide

    drainers = [Inbox(s.inbox, decider(n), lambda _d: None, batch=4, poll_seconds=0.01) for n, s in enumerate(stores)]
    for drainer in drainers:
        drainer.start()
    deadline = time.monotonic() + 30
    while stores[0].inbox.depth().pending and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for drainer in drainers:
        await drainer.stop()
    assert stores[0].inbox.depth().pending == 0
    assert len(decided) == 64 and set(decided.values()) == {1}, decided
    assert by[0] and by[1]  # both replicas took a share


@pytest.mark.parametrize("limit", [1, 8])
def test_a_claim_on_postgresql_skips_the_rows_another_replica_holds(pg_cluster, limit: int) -> None:  # type: ignore[no-untyped-def]
    url = pg_cluster.create_database(f"inbox_skip_locked_{limit}")
    first, second = SqlIncidentStore(url).inbox, SqlIncidentStore(url).inbox
    first.append(_rows(2 * limit))
    held = first.claim(limit)
    other = second.claim(limit)
    assert {r.seq for r in held.rows}.isdisjoint({r.seq for r in other.rows})
    assert len(other.rows) == limit
    first.release(held)  # the first replica died: its rows are free again
    again = second.claim(2 * limit)
    assert {r.seq for r in again.rows} == {r.seq for r in held.rows}
    second.finish(again, [r.seq for r in again.rows], {})
    second.finish(other, [r.seq for r in other.rows], {})
    assert second.depth().pending == 0


def test_a_postgresql_replica_decides_its_own_rows_and_adopts_the_others_once_they_waited(pg_cluster) -> None:  # type: ignore[no-untyped-def]
    url = pg_cluster.create_database("inbox_affinity")
    inbox = SqlIncidentStore(url).inbox
    inbox.append(_rows(2), replica="replica-a")
    backlog = inbox.append(_rows(1), replica="replica-gone")  # left by a process before this one started
    inbox.append(_rows(1), replica="replica-b")
    fresh = NOW + timedelta(seconds=1)  # replica-b's row was accepted after this
    mine = inbox.claim(10, "replica-b", backlog=0, adopt_before=NOW - timedelta(seconds=1))
    assert [r.answer for r in mine.rows] == [["inc-0"]] and mine.rows[0].seq > backlog  # only its own
    inbox.release(mine)
    at_start = inbox.claim(10, "replica-b", backlog=backlog, adopt_before=NOW - timedelta(seconds=1))
    assert len(at_start.rows) == 4  # everything up to the backlog, and its own
    inbox.release(at_start)
    adopted = inbox.claim(10, "replica-b", backlog=0, adopt_before=fresh)
    assert len(adopted.rows) == 4  # the others' rows once they waited
    inbox.release(adopted)


def test_on_sqlite_appends_never_checkpoint_and_the_drainer_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint inside a webhook's commit made its answer wait for the copy (burst p99 130 -> 40 ms)."""
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    inbox_file = tmp_path / "state-inbox.db"
    body = b"x" * 4096
    for _ in range(40):  # ~6 MB through the WAL: SQLite's default would checkpoint every ~4 MB
        store.inbox.append([(NOW, body, ["inc-x"])] * 40)
    assert inbox_file.stat().st_size < 1024 * 1024  # still all in the WAL: no append copied it over
    claim = store.inbox.claim(2000)
    store.inbox.finish(claim, [r.seq for r in claim.rows], {})
    assert inbox_file.stat().st_size > 4 * 1024 * 1024  # the drainer's pass checkpointed
