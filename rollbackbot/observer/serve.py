"""``rollbackbot observer serve``: the proxy in this process, the scoring worker in a child process.

Start-up: the worker process starts first and binds the admin port; then the proxy binds the
model-traffic port and prints ``rollbackbot observer admin on http://H:A, listening on http://H:P``.
A supervisor checks the worker every second: a worker that died is replaced by a new one with a
fresh queue (a process killed inside ``Queue.get`` may hold the old queue's lock). SIGTERM/SIGINT:
stop accepting, finish the requests in flight, let the worker score what is queued (bounded), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import sys
from typing import Any

from aiohttp import web

from rollbackbot.errors import ConfigError
from rollbackbot.observer.config import ObserverSettings, load_endpoint_config
from rollbackbot.observer.exporter import ProxyCounters
from rollbackbot.observer.proxy import Proxy
from rollbackbot.observer.worker import STOP, run_worker

WORKER_START_TIMEOUT = 30.0
SUPERVISE_INTERVAL = 1.0
DRAIN_TIMEOUT = 5.0
_CTX = multiprocessing.get_context("spawn")


class WorkerHandle:
    """The scoring worker process and its queue; ``restart`` replaces both."""

    def __init__(self, settings: ObserverSettings, counters: ProxyCounters) -> None:
        self.settings = settings
        self.counters = counters
        self.admin_port = _CTX.Value("i", 0)
        self.process: Any = None
        self.copies: Any = None
        self.restarts = 0

    def start(self) -> None:
        """Start a worker with a new queue and wait until its admin port is bound."""
        ready = _CTX.Event()
        self._abandon_queue()
        self.copies = _CTX.Queue(maxsize=self.settings.queue_size)
        self.process = _CTX.Process(
            target=run_worker,
            args=(self.settings, self.copies, self.counters, self.admin_port, ready),
            name="rollbackbot-observer-worker",
            daemon=True,
        )
        self.process.start()
        if not ready.wait(WORKER_START_TIMEOUT) or not self.process.is_alive():
            self.process.kill()
            raise ConfigError("the observer's scoring worker did not start (is the admin port free?)")

    def stop(self) -> None:
        """Let the worker drain its queue (bounded), then end it."""
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self.copies.put(STOP, timeout=1)
        self.process.join(DRAIN_TIMEOUT)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(DRAIN_TIMEOUT)
        self._abandon_queue()

    def _abandon_queue(self) -> None:
        """Never let copies nobody will read hold up this process's exit (the queue's feeder thread)."""
        if self.copies is not None:
            self.copies.cancel_join_thread()
            self.copies.close()


async def _supervise(worker: WorkerHandle, proxy: Proxy, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SUPERVISE_INTERVAL)
        if not stop.is_set() and not worker.process.is_alive():
            print("rollbackbot observer: scoring worker died; restarting it", file=sys.stderr, flush=True)
            await asyncio.to_thread(worker.start)
            worker.restarts += 1
            proxy.copies = worker.copies


async def _serve(settings: ObserverSettings) -> int:
    config = load_endpoint_config(settings.config)  # fail fast on a bad file, before binding anything
    counters = ProxyCounters()
    worker = WorkerHandle(settings, counters)
    await asyncio.to_thread(worker.start)
    proxy = Proxy(settings, config, counters, worker.copies)
    await proxy.start()
    runner = web.AppRunner(proxy.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    port = int(sockets[0].getsockname()[1]) if sockets else settings.port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    shown = "127.0.0.1" if settings.host in {"0.0.0.0", ""} else settings.host  # noqa: S104
    print(
        f"rollbackbot observer admin on http://{shown}:{worker.admin_port.value}, listening on http://{shown}:{port}",
        flush=True,
    )
    try:
        await _supervise(worker, proxy, stop)
    finally:
        await runner.cleanup()
        await proxy.close()
        await asyncio.to_thread(worker.stop)
    return 0


def serve(settings: ObserverSettings) -> int:
    """Run the observer until SIGTERM/SIGINT; returns the exit code."""
    return asyncio.run(_serve(settings))
