"""Deadline pacing: a rate-limited call granted to the most urgent work *when the token is free*.

A marketplace meters an operation with a token bucket (Amazon's confirmShipment: 2/s, burst
10). When work waits for those tokens, earliest deadline first has to be decided at the
bottleneck, not before it: a runner that picks the earliest dispatch and then queues
first-come-first-served for a token lets a dispatch that arrives later but is due sooner wait
behind every reservation already made. :class:`DeadlinePacer` decides at token time instead:

- **Picks.** A ready queue (:class:`PacedReady`) takes its next lane only when the pacer grants
  it a token, and the pick waits with the rank of *whatever lane is at the head when the token
  is free* (a callable, read at grant time). The lane then runs holding the token (a
  :class:`Permit` in a context variable of the runner), and the connector's first paced call
  spends it without waiting.
- **Retries.** A further call of the same work (a 429 or a 5xx retried in the call) waits with
  the rank it was picked with, so it re-enters by its deadline, not at the back; a 429 also
  tells the pacer that the server's bucket is empty (:meth:`throttled`): no token is granted to
  anyone before the server's ``Retry-After``.
- **Unused tokens** (a duplicate that needs no call, a retry sleeping, a lane whose events were
  revoked) go straight to the best waiter, or back to the source.

One driver (:meth:`run`, owned by the worker's task group) draws one token at a time from a
:class:`TokenSource` — a process-local bucket, or a bucket in PostgreSQL shared by every replica
— only while someone waits, sleeps until that token is usable, and grants it to the waiter of
the lowest rank at that moment. Ranks are ``(deadline, arrival)``: earliest deadline first,
ties by arrival (for one partition, offset order). So within a process the token always goes
to the earliest-deadline work that is ready when it is free; across replicas each holds at most
one reservation on the shared bucket at a time, so a dispatch waits behind at most one token
per other replica beyond that order.

Everything is bounded by the waiters: at most one pick per ready queue plus one per runner.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Protocol

import anyio
from anyio.abc import TaskStatus

from worker.backoff import Backoff

log = logging.getLogger("skuflow.pacing")

#: ``(deadline epoch seconds or inf, arrival sequence)``: lower runs first.
Rank = tuple[float, float]
#: The rank of work without a deadline: after every dated one.
LAST: Rank = (math.inf, math.inf)

__all__ = ["LAST", "DeadlinePacer", "PacerStopped", "Permit", "Rank", "TokenSource", "set_rank"]


class TokenSource(Protocol):
    """Where tokens come from; every method may be called only by the pacer's driver."""

    rate: float

    async def reserve(self) -> float:
        """Draw one token now (into debt if need be); return the seconds until it is usable."""
        ...

    async def refund(self) -> None:
        """Give back one token drawn but not used."""
        ...

    async def drain(self) -> None:
        """The server said its bucket is empty: spend whatever the source thinks is saved up."""
        ...


class PacerStopped(RuntimeError):
    """The pacer's driver is not running: nothing would ever grant a token."""


class Permit:
    """The token a piece of work holds, and the rank it waits with for further tokens."""

    __slots__ = ("held", "rank")

    def __init__(self, rank: Rank, *, held: bool) -> None:
        self.rank = rank
        self.held = held

    def __repr__(self) -> str:
        return f"Permit(rank={self.rank}, held={self.held})"


#: The permit of the work the current task runs (a runner task's own context).
_PERMIT: ContextVar[Permit | None] = ContextVar("skuflow_permit", default=None)


class _Waiter:
    __slots__ = ("event", "granted", "rank")

    def __init__(self, rank: Callable[[], Rank]) -> None:
        self.rank = rank
        self.event = anyio.Event()
        self.granted = False


class DeadlinePacer:
    """Grants tokens of one ``source`` to the lowest-ranked waiter at the moment each is free."""

    def __init__(
        self,
        source: TokenSource,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
        retry: Backoff | None = None,
    ) -> None:
        self.source = source
        self._clock = clock
        self._sleep = sleep
        self._retry = retry or Backoff(0.5, 10.0)
        self._waiters: list[_Waiter] = []
        self._demand: anyio.Event | None = None
        self._running = False
        self._not_before = 0.0  # no grant before this (monotonic): the server's Retry-After
        self._drain = False
        self._refunds = 0
        self._anonymous = 0
        #: Tokens granted so far, and how many of them went to a retry of work already started.
        self.granted = 0
        self.granted_to_retries = 0

    def __repr__(self) -> str:
        return f"DeadlinePacer({self.source!r}, waiting={len(self._waiters)})"

    @property
    def rate(self) -> float:
        return self.source.rate

    @property
    def waiting(self) -> int:
        """Picks and calls waiting for a token (tokens are the bottleneck while > 0)."""
        return len(self._waiters)

    # -- the driver ------------------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Draw and grant tokens until cancelled; waiters get :class:`PacerStopped` after it."""
        if self._running:
            raise RuntimeError("the pacer is already running")
        self._demand = anyio.Event()
        self._running = True
        task_status.started()
        failures = 0
        try:
            while True:
                try:
                    await self._settle_source()
                    if not self._waiters:
                        self._demand = anyio.Event()
                        await self._demand.wait()
                        continue
                    wait = await self.source.reserve()
                except Exception as exc:  # e.g. the shared bucket's PostgreSQL is unreachable
                    failures += 1
                    delay = self._retry.delay(failures)
                    log.warning(
                        "rate-limit source unavailable; retrying",
                        extra={"error": type(exc).__name__, "retry_in_s": round(delay, 3)},
                    )
                    await self._sleep(delay)
                    continue
                failures = 0
                if wait > 0:
                    await self._sleep(wait)
                while (pause := self._not_before - self._clock()) > 0:
                    await self._sleep(pause)  # (a 429 during the sleep extends it: look again)
                if not self._grant_best():
                    self._refunds += 1  # everyone left while the token matured
        finally:
            self._running = False
            for waiter in self._waiters:
                waiter.event.set()  # not granted: they raise PacerStopped
            self._waiters.clear()

    async def _settle_source(self) -> None:
        if self._drain:
            self._drain = False
            await self.source.drain()
        while self._refunds:
            await self.source.refund()
            self._refunds -= 1

    def _grant_best(self) -> bool:
        """Hand one token to the lowest rank waiting now; False if nobody waits."""
        if not self._waiters:
            return False
        best = min(self._waiters, key=lambda waiter: waiter.rank())
        self._waiters.remove(best)
        best.granted = True
        best.event.set()
        self.granted += 1
        return True

    # -- the doors -------------------------------------------------------------------------------
    async def pick(self, rank: Callable[[], Rank]) -> None:
        """Wait for a token for whatever ``rank()`` names when it is free (a ready queue's
        head), then hold it in the current task: the work picked next spends it."""
        await self._wait(rank)
        _PERMIT.set(Permit(LAST, held=True))

    def holding(self) -> Permit | None:
        """The current task's permit if it holds an unspent token."""
        permit = _PERMIT.get()
        return permit if permit is not None and permit.held else None

    async def acquire(self) -> float:
        """Before a paced call: spend the held token, or wait by the current work's rank.

        Returns the seconds waited (the same door as a plain token bucket's ``acquire``)."""
        permit = _PERMIT.get()
        if permit is not None and permit.held:
            permit.held = False
            return 0.0
        if permit is not None:
            rank = permit.rank
        else:  # a call from outside the engine's runners: after every ranked one, in order
            self._anonymous += 1
            rank = (math.inf, float(self._anonymous))
        started = self._clock()
        await self._wait(lambda: rank)
        if permit is not None:
            self.granted_to_retries += 1
        return self._clock() - started

    def release(self) -> None:
        """The current work is done or about to sleep: an unspent token goes to the next."""
        permit = _PERMIT.get()
        if permit is not None and permit.held:
            permit.held = False
            self._give_back()

    def throttled(self, seconds: float) -> None:
        """The server refused a call for lack of tokens: grant nothing for ``seconds`` and
        forget what the source thought was saved up."""
        self._not_before = max(self._not_before, self._clock() + max(0.0, seconds))
        self._drain = True

    # -- internals -------------------------------------------------------------------------------
    async def _wait(self, rank: Callable[[], Rank]) -> None:
        if not self._running or self._demand is None:
            raise PacerStopped("the rate-limit pacer is not running")
        waiter = _Waiter(rank)
        self._waiters.append(waiter)
        self._demand.set()
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self._give_back()  # granted just as we were cancelled: pass it on
            elif waiter in self._waiters:  # (the driver clears the list when it stops)
                self._waiters.remove(waiter)
            raise
        if not waiter.granted:
            raise PacerStopped("the rate-limit pacer stopped")

    def _give_back(self) -> None:
        if self._grant_best():
            self.granted -= 1  # the same token, handed on: not a new grant
            return
        self._refunds += 1
        if self._demand is not None:
            self._demand.set()


def set_rank(rank: Rank) -> None:
    """Name the rank of the work the current task just picked (its further calls wait by it)."""
    permit = _PERMIT.get()
    if permit is not None:
        permit.rank = rank
