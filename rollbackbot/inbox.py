"""The durable inbox: the webhook only appends; a drainer decides, off the event loop.

Intake (``Inbox.append``): the webhook hands the raw body, the time it was accepted and the ids it
will answer to one writer thread, which commits every body pending at that moment in one
transaction (group commit) and then wakes each waiting handler; only then is 202 sent. A failed
commit fails every handler of its group with ``StoreUnavailable`` (503, nothing recorded).

Deciding (``Inbox.run``): one task per process takes rows oldest first (PostgreSQL: ``FOR UPDATE
SKIP LOCKED``, so replicas share the rows), decides each in a worker thread (``decide``: store
work only) and then schedules on the event loop (``act``), and deletes the rows once their
incidents are stored. A row decided again after a crash changes nothing (``receiving``). It
defers while webhook handlers are in flight, at most ``max_defer`` seconds per batch, so answering
comes first and deciding is never starved.

A row that fails ``poison_after`` times is kept aside (``error`` set; logged, counted) and the
others go on. Read-your-writes: ``caught_up`` waits (bounded) until every row this process
accepted before the call is decided; it returns at once when there is none.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from rollbackbot.errors import Fault, classify, describe
from rollbackbot.failpoints import checkpoint
from rollbackbot.metrics import INBOX_DRAIN_ERRORS, INBOX_DRAINED, INBOX_GROUP_ROWS
from rollbackbot.ports import InboxRow, InboxRows

T = TypeVar("T")

log = logging.getLogger("rollbackbot.inbox")

READ_YOUR_WRITES_SECONDS = 2.0
STUCK_SECONDS = 60.0  # a drainer that has not come round for this long fails /healthz
BEHIND_SECONDS = 10.0  # the oldest pending row older than this: say so in the log
BEHIND_LOG_SECONDS = 30.0
ADOPT_SECONDS = 1.0  # another replica's rows are decided here once they waited this long (it died or stalls)
INTAKE_BUSY_SECONDS = 0.1  # a webhook accepted this recently: incident steps are spaced (intake_first)
BUSY_BATCH = 4  # rows per drainer pass while webhooks arrive
STEP_SPACING = 0.005  # while intake is busy, at most one incident step starts per this many seconds
_Row = tuple[datetime, bytes, list[str]]


@dataclass(frozen=True)
class RowOutcome:
    """What deciding one row gave: the decision for ``act``, or the error."""

    seq: int
    decided: Any = None
    error: str | None = None


class GroupCommit:
    """One writer thread: every body handed over while it commits goes into its next transaction."""

    def __init__(self, append: Callable[[list[_Row]], int]) -> None:
        self._append = append
        self._cond = threading.Condition()
        self._pending: list[tuple[_Row, asyncio.Future[int]]] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    async def append(self, row: _Row) -> int:
        """Commit ``row`` (with whatever else is pending); its seq, or the store's error."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the inbox writer is closed")
            self._pending.append((row, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()
            self._cond.notify()
        return await future

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                group, self._pending = self._pending, []
            outcome: int | BaseException
            try:
                outcome = self._append([row for row, _ in group])
                checkpoint("after_inbox_commit")
                INBOX_GROUP_ROWS.observe(len(group))
            except BaseException as exc:  # every handler of the group answers 503; nothing was committed
                outcome = exc
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[int]]] = {}
            for _, future in group:
                by_loop.setdefault(future.get_loop(), []).append(future)
            for loop, futures in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, futures, outcome)
                except RuntimeError:
                    pass  # that loop is closed: nobody waits any more


def _settle(futures: list[asyncio.Future[int]], outcome: int | BaseException) -> None:
    for future in futures:
        if future.done():
            continue  # the client went away; its row is stored all the same (at-least-once)
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class Inbox:
    """Append for the webhook, the drainer, and read-your-writes for readers."""

    def __init__(
        self,
        rows: InboxRows,
        decide: Callable[[Sequence[InboxRow]], Any],
        act: Callable[[Any], None],
        *,
        batch: int = 16,
        poison_after: int = 3,
        poll_seconds: float = 0.5,
        max_defer: float = 0.5,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        replica: str | None = None,
    ) -> None:
        """``decide(rows)``: store work for rows, in order (runs in a thread); ``act(decided)``: on the loop."""
        self.rows = rows
        self._decide = decide
        self._act = act
        self.batch = batch
        self.poison_after = poison_after
        self.poll_seconds = poll_seconds
        self.max_defer = max_defer
        self._now = now
        self.replica = replica
        self._backlog = 0  # rows up to this seq were there at start: taken whoever accepted them
        self._writer = GroupCommit(partial(rows.append, replica=replica))
        self.last_accepted = 0  # the highest seq this process committed (or found at start)
        self._drained_below = 1  # every row with a lower seq is decided (or kept aside)
        self._progress = asyncio.Event()
        self._wake = asyncio.Event()
        self.in_flight = 0  # webhook handlers between reading the body and answering
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-drainer")
        self._stopping = False
        self._started = False
        self.heartbeat = time.monotonic()
        self._behind_logged = 0.0
        self._last_accept = float("-inf")  # loop time of the last webhook accepted here
        self._last_step = float("-inf")  # loop time an incident step last started (intake_first)

    # ---- intake ----

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Around a webhook handler's work: the drainer defers to it."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def append(self, accepted_at: datetime, body: bytes, answer: list[str]) -> None:
        """Durably store one webhook (group commit); raises StoreUnavailable when nothing could be stored."""
        seq = await self._writer.append((accepted_at, body, answer))
        self.last_accepted = max(self.last_accepted, seq)
        self._last_accept = asyncio.get_running_loop().time()
        if not self._started:
            self.start()  # served without the service's start() (an app without lifespan): drain anyway
        self._wake.set()

    @property
    def busy(self) -> bool:
        """Webhooks are arriving: one is being handled, or one was accepted within ``INTAKE_BUSY_SECONDS``."""
        return bool(self.in_flight) or asyncio.get_running_loop().time() - self._last_accept < INTAKE_BUSY_SECONDS

    async def store_call(self, call: Callable[..., T], *args: Any) -> T:
        """An incident step's store call: in a thread while webhooks arrive, else right here on the loop.

        In a storm a step's store calls (read the incident, read the app's history, save) cost
        2–5 ms of the loop each, as the drainer and the writer share the GIL: a webhook arriving
        meanwhile waited for all of them. In a thread the loop keeps answering between them. When
        intake is quiet the call stays on the loop: a thread hop per call would only slow a rollback.
        """
        if self.busy:
            return await asyncio.to_thread(call, *args)
        return call(*args)

    async def intake_first(self) -> None:
        """Before an incident step (``Service``): while webhooks arrive, start at most one step per ``STEP_SPACING``.

        Steps run their store calls on the event loop (about a millisecond each); eight workers ready
        together would hold it for one pass of ~10 ms before it polls the sockets again. Spaced, the
        loop reads new requests between any two steps. Never starved: one step starts every
        ``STEP_SPACING`` at least, so incidents always make progress, only slower while a storm is answered.
        """
        loop = asyncio.get_running_loop()
        while self.busy and loop.time() - self._last_step < STEP_SPACING:
            await asyncio.sleep(STEP_SPACING)
        self._last_step = loop.time()

    # ---- read-your-writes ----

    @property
    def pending_here(self) -> bool:
        """Rows this process accepted (or found at start) are not all decided yet."""
        return self.last_accepted >= self._drained_below

    async def caught_up(self, timeout: float = READ_YOUR_WRITES_SECONDS) -> bool:
        """Wait until the rows accepted before this call are decided; False when ``timeout`` ran out first."""
        target = self.last_accepted
        if target < self._drained_below:
            return True  # the common case: nothing to wait for, no store call
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._wake.set()
        while target >= self._drained_below:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._task is None or self._task.done():
                return False
            progress = self._progress
            try:
                await asyncio.wait_for(progress.wait(), timeout=remaining)
            except TimeoutError:
                return False
        return True

    # ---- the drainer ----

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function`` in the drainer's own thread: one thread, so one malloc arena and one connection."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def start(self) -> None:
        """Start draining: rows left by an earlier process first (they count for read-your-writes)."""
        self._backlog = self.rows.newest()
        self.last_accepted = max(self.last_accepted, self._backlog)
        if self._writer.closed:  # started again after a stop (an app served twice)
            self._writer = GroupCommit(partial(self.rows.append, replica=self.replica))
        self._stopping = False
        self._started = True
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop_draining(self) -> None:
        """Stop the drainer (accepted rows stay, durable); ``start()`` again to resume."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def stop(self) -> None:
        await self.stop_draining()
        await asyncio.to_thread(self._writer.close)

    async def run(self) -> None:
        """Drain for ever: a pass, then wait for a new row (or ``poll_seconds``, for rows of other replicas)."""
        failures = 0
        while not self._stopping:
            self.heartbeat = time.monotonic()
            try:
                more = await self._pass()
                failures = 0
            except Exception as exc:
                failures += 1
                INBOX_DRAIN_ERRORS.labels("store" if classify(exc) is Fault.store else "pass").inc()
                delay = min(5.0, 0.05 * 2**failures)
                log.warning(
                    "inbox drainer failed; trying again", extra={"error": describe(exc), "retry_in": round(delay, 2)}
                )
                await asyncio.sleep(delay)
                continue
            if not more:
                await self._housekeeping()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    pass

    async def _housekeeping(self) -> None:
        try:
            await self._in_thread(self.rows.checkpoint)
        except Exception as exc:  # the next pass will say more; a checkpoint is never urgent
            log.debug("inbox housekeeping failed", extra={"error": describe(exc)})

    async def _pass(self) -> bool:
        """Decide one batch of rows; True when there may be more right away."""
        await self._defer_to_intake()
        adopt_before = self._now() - timedelta(seconds=ADOPT_SECONDS)
        # While webhooks arrive, small passes: a pass holds the GIL in bursts that answers wait behind.
        batch = BUSY_BATCH if self.busy else self.batch
        claim = await self._in_thread(self.rows.claim, batch, self.replica, self._backlog, adopt_before)
        if not claim.rows:
            await self._advance()
            return False
        self._say_if_behind(claim.rows[0])
        try:
            outcomes = await self._in_thread(self._decide_all, claim.rows)
        except BaseException:
            await self._in_thread(self.rows.release, claim)
            raise
        done = [o.seq for o in outcomes if o.error is None]
        failed = {o.seq: self._poison(o, claim.rows) for o in outcomes if o.error is not None}
        await self._in_thread(self.rows.finish, claim, done, failed)
        for outcome in outcomes:
            if outcome.decided is not None:
                self._act(outcome.decided)
        INBOX_DRAINED.inc(len(done))
        await self._advance()
        return len(claim.rows) == batch

    def _say_if_behind(self, oldest: InboxRow) -> None:
        """A log line (at most every ``BEHIND_LOG_SECONDS``) while accepted webhooks wait long to be decided."""
        waited = (self._now() - oldest.accepted_at).total_seconds()
        moment = time.monotonic()
        if waited > BEHIND_SECONDS and moment - self._behind_logged > BEHIND_LOG_SECONDS:
            self._behind_logged = moment
            log.warning(
                f"inbox drainer behind: the oldest accepted webhook has waited {waited:.0f}s to be decided",
                extra={"seq": oldest.seq, "waited_seconds": round(waited, 1)},
            )

    def _decide_all(self, rows: Sequence[InboxRow]) -> list[RowOutcome]:
        """Decide the rows together (its thread); when that fails, one by one, so only the bad row is marked.

        A store outage stops the batch: nothing is the rows' fault, the whole claim goes back.
        """
        checkpoint("before_inbox_decide")
        try:
            decided = self._decide(rows)
            outcomes = [RowOutcome(rows[0].seq, decided), *(RowOutcome(row.seq) for row in rows[1:])]
        except Exception as exc:
            if classify(exc) is Fault.store:
                raise
            outcomes = (
                [self._decide_one(row) for row in rows]
                if len(rows) > 1
                else [RowOutcome(rows[0].seq, error=describe(exc))]
            )
        checkpoint("after_inbox_decide")
        return outcomes

    def _decide_one(self, row: InboxRow) -> RowOutcome:
        try:
            return RowOutcome(row.seq, self._decide([row]))
        except Exception as exc:
            if classify(exc) is Fault.store:
                raise
            return RowOutcome(row.seq, error=describe(exc))

    def _poison(self, outcome: RowOutcome, rows: Sequence[InboxRow]) -> str | None:
        """The error text when the row has now failed ``poison_after`` times (kept aside), else None (retried)."""
        attempts = next(r.attempts for r in rows if r.seq == outcome.seq) + 1
        INBOX_DRAIN_ERRORS.labels("row").inc()
        if attempts < self.poison_after:
            log.warning(
                "inbox row could not be decided; trying again",
                extra={"seq": outcome.seq, "attempt": attempts, "error": outcome.error},
            )
            return None
        INBOX_DRAIN_ERRORS.labels("poison").inc()
        log.error(
            "inbox row kept aside after failing every attempt: its alerts are not decided",
            extra={"seq": outcome.seq, "attempts": attempts, "error": outcome.error},
        )
        return f"{outcome.error} (after {attempts} attempts)"

    async def _advance(self) -> None:
        """Move the read-your-writes mark to the oldest row still pending (anyone's), and wake readers."""
        accepted = self.last_accepted  # read before the query: a row committed after it is not covered
        oldest = await self._in_thread(self.rows.oldest_pending)
        below = accepted + 1 if oldest is None else oldest
        if below > self._drained_below:
            self._drained_below = below
            self._progress.set()
            self._progress = asyncio.Event()

    async def _defer_to_intake(self) -> None:
        """Let webhook handlers in flight answer first, for at most ``max_defer`` seconds."""
        if not self.in_flight:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_defer
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.002)

    # ---- liveness ----

    def problem(self) -> str | None:
        """For /healthz: the drainer died, or has not come round for ``STUCK_SECONDS``."""
        if self._task is None:
            return None
        if self._task.done() and not self._stopping:
            error = self._task.exception() if not self._task.cancelled() else None
            return f"inbox drainer stopped: {describe(error) if error else 'cancelled'}"
        silent = time.monotonic() - self.heartbeat
        if silent > STUCK_SECONDS:
            return f"inbox drainer stuck: no pass for {silent:.0f}s"
        return None
