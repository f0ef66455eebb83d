"""Stalled, not slow: a git transfer that stops moving is aborted, one that trickles is not.

A real ``git daemon`` serves the sandbox; a proxy on loopback in front of it either stops
forwarding mid-pack (a stalled connection) or forwards the pack slowly but steadily.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from rollbackbot.adapters.git.transport import NetworkLimits, network_environment, transport_of
from rollbackbot.errors import TransientError
from rollbackbot.testing.gitops import GitOpsSandbox
from tests.adapters.conftest import FRAUD, MakeRepo
from tests.adapters.test_git_repo import git_daemon  # noqa: F401 - the fixture, shared

LIMITS = NetworkLimits(stall_seconds=2.0, ceiling_seconds=600.0)
CHUNK = 8192


@dataclass
class ThrottlingProxy:
    """Forwards loopback TCP to ``upstream``; server-to-client bytes paced or stopped.

    ``close`` shuts every socket down and joins every thread BEFORE closing a descriptor. A thread
    still blocked in ``accept``/``recv`` on a closed descriptor is not harmless: any signal that wakes
    it without running a handler (a git child's SIGCHLD, queued while CPython blocks all signals
    around ``vfork``, lands on whichever thread does not block it) makes the kernel restart the call
    with the same descriptor NUMBER, which by then may be the next test's listener: the dead proxy's
    acceptor then took one of that test's connections and dialled the previous, stopped git daemon.
    """

    upstream: tuple[str, int]
    bytes_per_tick: int | None = None  # forward at most this many bytes per 0.1 s; None = unpaced
    stall_after: int | None = None  # stop forwarding (keep the connection open) after this many bytes
    forwarded: int = 0
    first_byte: float | None = None
    last_byte: float | None = None
    upstream_failures: list[str] = field(default_factory=list)
    closing: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> int:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self._spawn(self._accept)
        return int(self.listener.getsockname()[1])

    def close(self) -> None:
        """Stop every thread, then release the descriptors (never the other way round)."""
        self.closing.set()
        with self._guard:  # no connection is registered after this
            sockets = [self.listener, *self._sockets]
        for sock in sockets:
            _shutdown(sock, socket.SHUT_RDWR)  # wakes accept() (EINVAL) and recv() (EOF)
        for thread in self._threads:
            thread.join(timeout=5)
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        assert not stuck, f"proxy threads still running, descriptors left open: {stuck}"
        for sock in sockets:
            sock.close()

    def _spawn(self, target: Callable[..., None], *args: socket.socket) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError as exc:  # say so, and let the client fail at once rather than wait on silence
                self.upstream_failures.append(f"{self.upstream}: {exc!r}")
                client.close()
                continue
            with self._guard:
                if self.closing.is_set():
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
                self._spawn(self._copy, client, server)
                self._spawn(self._throttle, server, client)

    def _copy(self, source: socket.socket, sink: socket.socket) -> None:
        while (data := _recv(source, CHUNK)) and _send(sink, data):
            pass
        _shutdown(sink)

    def _throttle(self, source: socket.socket, sink: socket.socket) -> None:
        size = self.bytes_per_tick or CHUNK
        while data := _recv(source, size):
            if self.stall_after is not None and self.forwarded >= self.stall_after:
                self.closing.wait()  # the connection stays open and silent: a stall, not a reset
                return
            if not _send(sink, data):
                return
            now = time.monotonic()
            self.first_byte = self.first_byte or now
            self.last_byte, self.forwarded = now, self.forwarded + len(data)
            if self.bytes_per_tick:
                self.closing.wait(0.1)  # the pacing IS the behaviour under test
        _shutdown(sink)


def _recv(sock: socket.socket, size: int) -> bytes:
    try:
        return sock.recv(size)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:  # the client gave up (e.g. the watchdog killed git)
        return False
    return True


def _shutdown(sock: socket.socket, how: int = socket.SHUT_WR) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass


@pytest.fixture
def big_sandbox(sandbox: GitOpsSandbox) -> GitOpsSandbox:
    """The sandbox with ~1.5 MB of incompressible data on the deploy branch."""
    sandbox.commit_paths({"platform/model-card.txt": secrets.token_hex(750_000)}, "a large file")
    return sandbox


@pytest.fixture
def proxy(git_daemon: str) -> Iterator[tuple[ThrottlingProxy, str]]:  # noqa: F811
    host_port, _, name = git_daemon.removeprefix("git://").partition("/")
    host, _, port = host_port.partition(":")
    made = ThrottlingProxy((host, int(port)))
    local_port = made.start()
    try:
        yield made, f"git://127.0.0.1:{local_port}/{name}"
    finally:
        made.close()
    assert not made.upstream_failures, f"the proxy could not reach the git daemon: {made.upstream_failures}"


@pytest.mark.network
def test_a_stalled_fetch_is_aborted(
    big_sandbox: GitOpsSandbox, make_repo: MakeRepo, proxy: tuple[ThrottlingProxy, str]
) -> None:
    throttle, url = proxy
    throttle.stall_after = 64 * 1024  # part of the pack, then silence
    repo = make_repo(big_sandbox, url=url, network_limits=LIMITS)
    with pytest.raises(TransientError, match=r"no progress for 2s \(stalled\)") as raised:
        repo.ensure_clone()
    assert url in str(raised.value)
    assert throttle.forwarded >= throttle.stall_after  # it did stall mid-transfer, not before connecting


@pytest.mark.network
def test_a_trickling_fetch_is_not_aborted(
    big_sandbox: GitOpsSandbox, make_repo: MakeRepo, proxy: tuple[ThrottlingProxy, str]
) -> None:
    throttle, url = proxy
    throttle.bytes_per_tick = 16 * 1024  # ~160 KB/s: the ~0.9 MB pack takes several stall periods
    repo = make_repo(big_sandbox, url=url, network_limits=LIMITS)
    repo.ensure_clone()
    assert repo.head() == big_sandbox.head()
    plan = repo.plan(FRAUD)
    assert plan.target is not None and plan.target.name == "fraud-llm/v2.2.0"
    assert throttle.first_byte is not None and throttle.last_byte is not None
    # Precondition, not a speed claim: the transfer outlasted the stall limit, so a wall clock would have cut it.
    assert throttle.last_byte - throttle.first_byte > 1.5 * LIMITS.stall_seconds


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("https://user:token@git.example/x.git", "http"),
        ("http://127.0.0.1:8080/x.git", "http"),
        ("ssh://git@git.example/x.git", "ssh"),
        ("git@git.example:org/x.git", "ssh"),
        ("git://127.0.0.1/x.git", "other"),
        ("file:///srv/x.git", "other"),
        ("/srv/x.git", "other"),
    ],
)
def test_each_transport_gets_its_stall_rule(url: str, transport: str) -> None:
    assert transport_of(url) == transport


def test_ssh_and_http_get_keepalive_and_low_speed_settings() -> None:
    env = network_environment(NetworkLimits(stall_seconds=30), None)
    assert env["GIT_HTTP_LOW_SPEED_LIMIT"] == "1" and env["GIT_HTTP_LOW_SPEED_TIME"] == "30"
    assert "ServerAliveInterval=10" in env["GIT_SSH_COMMAND"] and "ServerAliveCountMax=3" in env["GIT_SSH_COMMAND"]
    assert network_environment(LIMITS, "ssh -i key")["GIT_SSH_COMMAND"] == "ssh -i key"  # the operator's own wins
