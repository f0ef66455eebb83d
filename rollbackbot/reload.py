"""Policy reload without a restart: on SIGHUP, and when the policy directory's content changes.

Kubernetes updates a mounted ConfigMap by writing a new timestamped directory and swapping the
``..data`` symlink to it; the policy files are symlinks through ``..data``, so nothing in the
directory itself changes. The reloader therefore compares a hash of the files' names and content
as read through the symlinks (``policy_set_fingerprint``) every ``ROLLBACKBOT_POLICY_POLL_SECONDS``
(default 5; 0 = only on SIGHUP), with no inotify dependency.

A new set replaces the old one only as a whole. If any file has a problem, the set is empty, or it
fails the service's own checks (a ``mode: propose`` policy without Slack credentials), the old set
stays active, ``rollbackbot_policy_reload_total{result="failure"}`` counts it and one error log
line lists every problem; the same broken content is not retried until it changes again or SIGHUP
asks. Success counts ``result="success"`` and sets
``rollbackbot_policy_last_reload_success_timestamp_seconds``. Incidents already open keep the
policy stored with them, so editing, renaming or removing a policy never changes a rollback in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from rollbackbot.core.policy import Policy
from rollbackbot.errors import PolicyError, RollbackBotError
from rollbackbot.metrics import POLICY_LAST_RELOAD_SUCCESS, POLICY_RELOADS
from rollbackbot.policy_files import load_policies, policy_set_fingerprint

log = logging.getLogger("rollbackbot.reload")

STABLE_READ_ATTEMPTS = 3  # a set read while it was being swapped is read again
POLICY_RELOADS.labels("success")
POLICY_RELOADS.labels("failure")


class PolicyReloader:
    """Loads the policy directory again when asked or when its content changed, and applies it whole."""

    def __init__(
        self,
        directory: Path,
        apply: Callable[[list[Policy]], None],
        *,
        check: Callable[[Sequence[Policy]], None] = lambda _policies: None,
        poll_seconds: float = 5.0,
        loaded_fingerprint: str | None = None,
    ) -> None:
        self.directory = directory
        self.apply = apply
        self.check = check
        self.poll_seconds = poll_seconds
        # What the active set was loaded from (taken before loading it, so a change meanwhile is seen).
        self._seen = loaded_fingerprint or policy_set_fingerprint(directory)
        self._asked = asyncio.Event()
        POLICY_LAST_RELOAD_SUCCESS.set(time.time())

    def request(self) -> None:
        """Reload at once (the SIGHUP handler); call from the event loop's thread."""
        self._asked.set()

    def changed(self) -> bool:
        """Whether the directory's content differs from what was last tried."""
        return policy_set_fingerprint(self.directory) != self._seen

    def reload(self, reason: str) -> bool:
        """Load and apply the directory as a whole; False, with the old set still active, on any problem."""
        for _ in range(STABLE_READ_ATTEMPTS):
            before = policy_set_fingerprint(self.directory)
            try:
                policies = self._load()
            except RollbackBotError as exc:
                if policy_set_fingerprint(self.directory) != before:
                    continue
                self._seen = before
                self._refused(reason, exc)
                return False
            if policy_set_fingerprint(self.directory) != before:
                continue
            self._seen = before
            self.apply(policies)
            POLICY_RELOADS.labels("success").inc()
            POLICY_LAST_RELOAD_SUCCESS.set(time.time())
            names = ", ".join(p.name for p in policies)
            log.info(f"policies reloaded ({reason}): {names}", extra={"policies": names, "reason": reason})
            return True
        log.warning("policy directory kept changing while being read; trying again later", extra={"reason": reason})
        return False

    def _load(self) -> list[Policy]:
        policies = load_policies(self.directory)
        if not policies:
            raise PolicyError("no policy files", str(self.directory))
        self.check(policies)
        return policies

    def _refused(self, reason: str, exc: RollbackBotError) -> None:
        POLICY_RELOADS.labels("failure").inc()
        problems = str(exc)
        log.error(
            f"policy reload refused ({reason}); the previous policies stay active: {problems}",
            extra={"reason": reason, "problems": problems},
        )

    async def run(self) -> None:
        """Reload whenever asked (SIGHUP) or the directory's content changed; runs until cancelled."""
        while True:
            timeout = self.poll_seconds if self.poll_seconds > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._asked.wait(), timeout)
            try:
                await self._tick()
            except Exception:  # the watcher must outlive any surprise; the active set stays as it is
                POLICY_RELOADS.labels("failure").inc()
                log.exception("policy reload failed unexpectedly; the previous policies stay active")

    async def _tick(self) -> None:
        # Loading runs on the loop (a few small files): the swap must not interleave with an alert's intake.
        if self._asked.is_set():
            self._asked.clear()
            self.reload("SIGHUP")
        elif await asyncio.to_thread(self.changed):
            self.reload("policy directory changed")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Poll in the background and reload on SIGHUP while the block runs (the service's lifespan)."""
        loop = asyncio.get_running_loop()
        hup = _listen_for_sighup(loop, self.request)
        task = loop.create_task(self.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)


def _listen_for_sighup(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> bool:
    try:
        loop.add_signal_handler(signal.SIGHUP, handler)
    except (RuntimeError, ValueError):  # not the main thread (an in-process test client): polling only
        log.debug("SIGHUP reload unavailable outside the main thread")
        return False
    return True
