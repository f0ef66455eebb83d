"""Several replicas on one database: the database, not a read before a write, decides who wins."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import create_engine

from rollbackbot.adapters.store import migrate
from rollbackbot.adapters.store_sql import SqlIncidentStore, make_engine
from rollbackbot.core.incidents import AlertRef, Incident, IncidentState, new_incident
from rollbackbot.errors import StoreUnavailable
from rollbackbot.ports import LeaseLost, StaleIncident
from rollbackbot.testing.postgres import postgres_cluster

pytestmark = pytest.mark.network
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
S = IncidentState
T = TypeVar("T")
ROLLBACKBOT = str(Path(sys.executable).with_name("rollbackbot"))


def _incident(n: int, app: str = "docsum-llm") -> Incident:
    alert = AlertRef("PromptInjectionSpike", f"fp{n:04d}", NOW - timedelta(minutes=1), {"app": app})
    return new_incident(app=app, policy="p", mode="auto", alert=alert, target={}, now=NOW + timedelta(seconds=n))


def _at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run every call in its own thread, released together."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_the_same_alerts_from_every_replica_are_inserted_once(db_url: str) -> None:
    replicas = [SqlIncidentStore(db_url) for _ in range(3)]
    alerts = [_incident(n) for n in range(40)]
    won = _at_once([lambda store=store: store.create_many(alerts) for store in replicas])
    assert sum(len(ids) for ids in won) == 40  # each incident inserted by exactly one replica
    assert set().union(*won) == {i.id for i in alerts}
    assert len(replicas[0].recent(100)) == 40


def test_one_incident_per_app_acts_at_a_time(db_url: str) -> None:
    """Two incidents of one app decided at the same moment on two replicas: the second save is refused."""
    store, other = SqlIncidentStore(db_url), SqlIncidentStore(db_url)
    first, second = _incident(1), _incident(2)
    store.create_many([first, second])
    store.save(first.with_state(S.rolling_back, NOW, "go"), S.received)
    with pytest.raises(StaleIncident, match="already acting"):
        other.save(second.with_state(S.rolling_back, NOW, "go"), S.received)
    stored = store.get(second.id)
    assert stored is not None and stored.state is S.received
    other.save(second.with_state(S.suppressed, NOW, "duplicate"), S.received)  # what the re-read decides
    # Another app is not held back, and once the first one finished the app can act again.
    third = _incident(3, app="badge-vision")
    store.create(third)
    store.save(third.with_state(S.rolling_back, NOW), S.received)
    acting = store.get(first.id)
    assert acting is not None
    store.save(acting.with_state(S.syncing, NOW), S.rolling_back)
    syncing = store.get(first.id)
    assert syncing is not None
    store.save(syncing.with_state(S.rolled_back, NOW), S.syncing)
    fourth = _incident(4)
    store.create(fourth)
    store.save(fourth.with_state(S.rolling_back, NOW), S.received)


def test_replicas_starting_together_migrate_once(db_url: str) -> None:
    """Four processes run ``rollbackbot db upgrade`` on one empty database at once: all succeed."""
    env = os.environ | {"ROLLBACKBOT_DATABASE_URL": db_url}
    procs = [
        subprocess.Popen([ROLLBACKBOT, "db", "upgrade"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=60)[0].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    engine = create_engine(db_url)
    try:
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()
    SqlIncidentStore(db_url).create(_incident(1))  # and the schema is the one the store uses


def test_a_postgresql_restart_is_an_outage_the_store_recovers_from(tmp_path: Path) -> None:
    with postgres_cluster() as cluster:
        store = SqlIncidentStore(cluster.create_database("restart"))
        store.create(_incident(1))
        cluster.stop("immediate")
        with pytest.raises(StoreUnavailable):
            store.get(_incident(1).id)
        cluster.start()
        assert store.create(_incident(2)) is True  # pre-ping replaces the dead connections
        assert {i.id for i in store.recent()} == {_incident(1).id, _incident(2).id}


def test_replicas_claiming_together_take_each_incident_once(db_url: str) -> None:
    """Three replicas claim the same 40 incidents at the same moment: every one taken by exactly one."""
    replicas = [SqlIncidentStore(db_url, leases=True) for _ in range(3)]
    work = [_incident(n, app=f"app-{n}") for n in range(40)]
    replicas[0].create_many(work)
    ids = [i.id for i in work]
    taken = _at_once([lambda s=store, n=n: s.claim(ids, f"replica-{n}", 30) for n, store in enumerate(replicas)])
    claimed = [lease.incident_id for leases in taken for lease in leases]
    assert sorted(claimed) == sorted(ids)
    assert all(lease.fence == 1 and lease.previous_owner is None for leases in taken for lease in leases)
    assert replicas[0].claim(ids, "replica-late", 30) == []  # every lease is live
    assert set(replicas[0].owners()) == set(ids)


def test_a_replica_whose_lease_expired_cannot_write(db_url: str) -> None:
    """A paused replica wakes after its lease ran out and another took over: its write is refused."""
    paused, other = SqlIncidentStore(db_url, leases=True), SqlIncidentStore(db_url, leases=True)
    inc = _incident(1)
    paused.create(inc)
    [old] = paused.claim([inc.id], "paused", 0.3)
    read = paused.get(inc.id)
    assert read is not None
    assert other.claim([inc.id], "other", 30) == []  # still held
    time.sleep(0.5)  # the database's clock passes the expiry
    assert other.expired_leases() == [inc.id]
    [new] = other.claim([inc.id], "other", 30)
    assert (new.fence, new.previous_owner) == (old.fence + 1, "paused")  # a takeover
    with pytest.raises(LeaseLost):
        paused.save(read.with_event(NOW, "late plan"), S.received, old)
    assert paused.renew("paused", [inc.id], 30) == set()  # the heartbeat learns it too
    other.save(read.with_event(NOW, "plan"), S.received, new)
    paused.release(old)  # releasing a lost lease changes nothing
    assert other.owners() == {inc.id: "other"}
    assert other.renew("other", [inc.id], 30) == {inc.id}
    other.release(new)
    assert other.owners() == {}
    [again] = paused.claim([inc.id], "paused", 30)
    assert again.fence == new.fence + 1 and again.previous_owner is None


def test_an_expired_lease_refuses_the_write_even_before_a_takeover(db_url: str) -> None:
    store = SqlIncidentStore(db_url, leases=True)
    inc = _incident(1)
    store.create(inc)
    [lease] = store.claim([inc.id], "slow", 0.2)
    read = store.get(inc.id)
    assert read is not None
    time.sleep(0.4)
    with pytest.raises(LeaseLost):
        store.save(read.with_event(NOW, "too late"), S.received, lease)


def test_a_replica_takes_its_own_lease_again_after_a_release_was_lost(db_url: str) -> None:
    """The store went away while a worker released its lease: the replica resumes at once, not after expiry."""
    store = SqlIncidentStore(db_url, leases=True)
    inc = _incident(1)
    store.create(inc)
    [first] = store.claim([inc.id], "me", 30)
    [again] = store.claim([inc.id], "me", 30)  # the release never arrived
    assert (again.fence, again.previous_owner) == (first.fence + 1, "me")
    assert store.claim([inc.id], "someone-else", 30) == []


def test_the_leases_of_an_exited_process_on_this_host_are_free_at_once(db_url: str) -> None:
    """A crash and a restart on the same host: the new process resumes without waiting out the leases."""
    import socket

    from rollbackbot.leasing import Leases, exited_here

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    crashed = f"{socket.gethostname()}/{int(gone.stdout)}/0a1b2c"
    alive = f"{socket.gethostname()}/{os.getppid()}/0a1b2c"
    elsewhere = f"other-host/{int(gone.stdout)}/0a1b2c"
    assert exited_here(crashed, "me") and not exited_here(alive, "me") and not exited_here(elsewhere, "me")
    store = SqlIncidentStore(db_url, leases=True)
    incidents = [_incident(n, app=f"app-{n}") for n in range(3)]
    store.create_many(incidents)
    for incident, owner in zip(incidents, (crashed, alive, elsewhere), strict=True):
        store.claim([incident.id], owner, 30)
    restarted = Leases(store)
    assert restarted.find_dead_here() == {crashed}
    assert restarted.claim(incidents[0].id, NOW) is not None
    assert restarted.claim(incidents[1].id, NOW) is None and restarted.claim(incidents[2].id, NOW) is None


def test_leases_are_recorded_on_postgresql_and_not_on_the_one_replica_sqlite_store(db_url: str) -> None:
    store = SqlIncidentStore(db_url)
    inc = _incident(1)
    store.create(inc)
    [lease] = store.claim([inc.id], "me", 30)
    if db_url.startswith("sqlite"):
        assert not store.leases_recorded and lease.fence == 0
        assert store.claim([inc.id], "other", 30) != [] and store.owners() == {}  # one writer: nothing to hold
    else:
        assert store.leases_recorded and lease.fence == 1
        assert store.claim([inc.id], "other", 30) == [] and store.owners() == {inc.id: "me"}


def test_head_names_the_newest_migration() -> None:
    assert migrate.HEAD == migrate.head()  # a new migration file bumps HEAD too


STARTS_AGAIN = """
import sys
from rollbackbot.adapters.store_sql import SqlIncidentStore, make_engine
SqlIncidentStore(sys.argv[1])
print(sorted(m for m in sys.modules if m.split(".")[0] in ("alembic", "mako")))
"""


def test_a_store_at_head_starts_without_alembic(db_url: str) -> None:
    def start() -> str:
        return subprocess.run(
            [sys.executable, "-c", STARTS_AGAIN, db_url], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()

    assert start() != "[]"  # a new database: Alembic migrates it
    assert start() == "[]"  # at head: one query, Alembic never imported
    engine = make_engine(db_url)
    try:
        assert migrate.current(engine) == migrate.HEAD
    finally:
        engine.dispose()
