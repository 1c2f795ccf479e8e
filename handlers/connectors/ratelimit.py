"""An async token bucket: ``rate`` tokens a second, at most ``burst`` saved up, FIFO-fair.

SP-API throttles every operation with a token bucket (a usage plan of *rate* and *burst*);
pacing our own calls with the same shape keeps us under the plan instead of learning it from
429s. One :class:`TokenBucket` per operation is created at start-up and shared by every task
of the process.

How it waits: ``acquire()`` takes its token at once, even when that drives the level below
zero (a debt), then sleeps until the debt it sees is repaid at ``rate``. Reservations are made
in call order and each wait grows with the debt, so waiters are released first-come,
first-served, each with one timer: no polling, no busy loop, no lock. A waiter cancelled while
it is the last in line hands its token back; one cancelled with others queued behind it
forfeits the token, so nobody can overtake them.

Invariant (tested with hypothesis): over any window of length T, the grants number at most
``burst + rate * T``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import msgspec

__all__ = ["BucketStatistics", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


class BucketStatistics(msgspec.Struct, frozen=True):
    """A snapshot: ``tokens`` < 0 is the debt of the ``waiting`` reservations."""

    rate: float
    burst: int
    tokens: float
    waiting: int


class TokenBucket:
    """``await bucket.acquire()`` before each call; returns the seconds it waited."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("rate must be a finite number > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._waiting = 0
        self._tickets = 0  # reservations made so far; the newest one may give its token back

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, burst={self.burst})"

    def statistics(self) -> BucketStatistics:
        self._refill()
        return BucketStatistics(self.rate, self.burst, self._tokens, self._waiting)

    def try_acquire(self) -> bool:
        """Take a token if one is free now (never jumps the queue); never waits."""
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        self._tickets += 1
        return True

    async def acquire(self) -> float:
        """Wait for a token, first come first served; returns the seconds waited."""
        self._refill()
        self._tokens -= 1.0
        self._tickets += 1
        if self._tokens >= 0.0:
            return 0.0
        ticket = self._tickets
        wait = -self._tokens / self.rate
        self._waiting += 1
        try:
            await self._sleep(wait)
        except BaseException:
            if ticket == self._tickets:  # nobody queued behind us: hand the token back
                self._refill()
                self._tokens = min(float(self.burst), self._tokens + 1.0)
            raise
        finally:
            self._waiting -= 1
        return wait

    # -- a token source for worker.pacing.DeadlinePacer (it draws one token at a time) ---------
    async def reserve(self) -> float:
        """Draw a token now, into debt if need be; the seconds until it is usable."""
        self._refill()
        self._tokens -= 1.0
        self._tickets += 1
        return max(0.0, -self._tokens / self.rate)

    async def refund(self) -> None:
        """A token drawn but not used comes back (never above ``burst``)."""
        self._refill()
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    async def drain(self) -> None:
        """The server's bucket is empty: whatever is saved up here is not really there."""
        self._refill()
        self._tokens = min(self._tokens, 0.0)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._stamp = now
