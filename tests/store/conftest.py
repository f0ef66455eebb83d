"""The store's tests run twice: on a SQLite file and on a throwaway PostgreSQL 15 cluster.

The cluster (``rollbackbot.testing.postgres``: initdb + pg_ctl in a temp dir on a free port) is
started once per session; every test gets a fresh database in it. Without the PostgreSQL server
binaries the PostgreSQL half is skipped with a reason, and fails under ``CI=true`` (``.ci/run``
installs Debian's ``postgresql``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollbackbot.testing.postgres import PostgresCluster, find_bin_dir, postgres_cluster

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the session."""
    if find_bin_dir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries missing: apt-get install postgresql")
        pytest.skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t{os.getpid()}_{next(_names)}")
