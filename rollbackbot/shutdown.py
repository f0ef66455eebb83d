"""Graceful shutdown of ``rollbackbot serve`` on SIGTERM (what Kubernetes sends before it kills a pod).

1. Intake closes at once: ``/readyz`` answers 503 (``shutdown`` problem) and the Alertmanager webhook
   answers 503 with ``Retry-After``, so Alertmanager re-delivers to another replica or to this pod's
   successor. The port stays open meanwhile: endpoints are removed from the Service only after a
   delay, and a refused connection would tell Alertmanager less than a 503. Webhooks accepted
   before are decided into their incidents (docs/intake.md); rows not decided within the grace
   period stay in the durable inbox for the next start.
2. Each incident finishes the step it is in (a push, an Argo CD sync and its health wait), persists
   the result and stops; waiting incidents stop waiting. This lasts at most
   ``ROLLBACKBOT_SHUTDOWN_GRACE_SECONDS`` (default 25: keep it a few seconds below the pod's
   ``terminationGracePeriodSeconds``, 30 in manifests/deployment.yaml).
3. Steps still running at the deadline are cancelled before they persist anything, so their
   incident stays at its last persisted state and resumes from there at the next start (a pushed
   commit is recognised by its Rollback-Incident trailer and never written twice).
4. The process exits 0. A second SIGTERM, or SIGINT, stops at once as uvicorn does by default.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from rollbackbot.service import Service

log = logging.getLogger("rollbackbot.shutdown")

GIL_SWITCH_SECONDS = 0.0005
CONNECTION_CLOSE_SECONDS = 3.0  # after draining: open HTTP connections get this long to finish


class GracefulServer(uvicorn.Server):
    """uvicorn whose first SIGTERM drains the service before the server stops."""

    def __init__(self, config: uvicorn.Config, service: Service, grace_seconds: float) -> None:
        super().__init__(config)
        self.service = service
        self.grace_seconds = grace_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._loop is not None and self._drain is None and not self.should_exit:
            # Not recorded as a captured signal: uvicorn would re-raise it at exit, and the exit code be -15.
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        log.info(
            f"SIGTERM: not taking new alerts; letting steps in flight finish (up to {self.grace_seconds:g}s)",
            extra={"grace_seconds": self.grace_seconds},
        )
        try:
            finished = await self.service.drain(self.grace_seconds)
        except Exception:
            log.exception("draining failed; stopping now")
            finished = False
        if finished:
            log.info("every step in flight finished; exiting")
        else:
            log.warning("grace period over: unfinished steps are cancelled and resume at the next start")
        self.should_exit = True


def serve(app: FastAPI, host: str, port: int, grace_seconds: float) -> int:
    """Run the app until SIGTERM (drained, exit 0) or SIGINT; ``app.state.service`` is drained."""
    # The inbox's writer and drainer threads hold the GIL in bursts; the event loop answering the
    # webhook gets it back after at most this long (Python's default is 5 ms, a whole answer budget).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    # Everything built so far (modules, the app, policies) lives as long as the process: out of the
    # collector's sight, a full collection in an alert storm walks only what the storm allocated.
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(CONNECTION_CLOSE_SECONDS),
    )
    GracefulServer(config, app.state.service, grace_seconds).run()
    return 0
