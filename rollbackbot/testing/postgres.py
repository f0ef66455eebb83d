"""A throwaway PostgreSQL cluster: ``initdb`` + ``pg_ctl`` in a temporary directory on a free port.

Used by the store tests, the high-availability end-to-end tests and ``make bench``. Needs Debian's
``postgresql`` package (``/usr/lib/postgresql/<major>/bin``). ``initdb`` refuses to run as root, so
as root the cluster belongs to the ``postgres`` user (``runuser``); the data directory's parents are
made traversable for it (``tempfile.mkdtemp`` makes 0700 directories).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rollbackbot.procs import free_port


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, newest major version first; None if not installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    for directory in [*candidates, "/usr/local/bin", "/usr/bin"]:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    return None


def _major(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return 0


@dataclass
class PostgresCluster:
    """One running cluster; ``url`` is a SQLAlchemy URL for its ``postgres`` database."""

    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    port: int
    as_user: str | None  # run the server binaries as this user (we are root)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` in this cluster (created by ``create_database``)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.database_url(name)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} -c fsync=off -c max_connections=300"
        )
        log = self.data_dir.parent / "postgres.log"
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(log), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` drops connections, ``immediate`` is a crash)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin_dir / tool) if (self.bin_dir / tool).exists() else tool, *args]
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=60, cwd="/")


def _make_cluster(root: Path, bin_dir: Path) -> PostgresCluster:
    as_user = "postgres" if os.geteuid() == 0 else None
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    os.chmod(root, 0o755)  # the server user must reach its data directory
    if as_user:
        shutil.chown(root, as_user)
        shutil.chown(sockets, as_user)
    cluster = PostgresCluster(bin_dir, data, sockets, free_port(), as_user)
    cluster._run("initdb", "-D", str(data), "--auth=trust", "--no-sync", "-U", "postgres", "-E", "UTF8")
    return cluster


@contextmanager
def postgres_cluster(parent: Path | None = None) -> Iterator[PostgresCluster]:
    """Start a throwaway cluster, yield it, stop it and delete its files."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="rollbackbot-pg-", dir=parent))
    try:
        _open_parents(root)
        cluster = _make_cluster(root, bin_dir)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _open_parents(path: Path) -> None:
    """Let another user traverse every parent of ``path`` (a 0700 temp dir would lock the server out)."""
    for parent in path.parents:
        if str(parent) in {"/", ""}:
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o011)
