"""Loop slices: background work gives the event loop back after a few milliseconds of CPU.

An asyncio loop iteration runs every callback that was ready when it began, then polls the
sockets. When a saturating class of background work (a stock backlog: hundreds of runners whose
handlers wake together) shares the loop with urgent work, one iteration can run for tens of
milliseconds, and an urgent record needs several iterations to travel from the socket through
the Kafka client's fetcher to a runner: every hop waits for the whole iteration.

:class:`LoopSlice` bounds the background class's share of one iteration. Its runners (and its
fetch loop, between chunks of admitted records) call :meth:`turn` before each piece of work:
while less than ``seconds`` of the current iteration has gone to them it returns at once (no
suspension: a clock read); after that they wait for the *next* iteration, by which time the
loop has polled its sockets and run whatever urgent work became ready. The background class
loses no throughput when the loop is otherwise idle (the next iteration comes at once); it only
stops monopolising an iteration.

How an iteration is recognised without hooking the loop: the first :meth:`turn` of an
iteration schedules a ``call_soon`` callback, which asyncio (and uvloop) run in the following
iteration, after the sockets were polled; that callback opens the next slice and wakes the
waiters, in the order they came.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["MAX_FIT", "LoopSlice"]

#: The most pieces let go in one iteration.
MAX_FIT = 1024


class LoopSlice:
    """``await slice.turn()`` before each piece of background work (see the module)."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.perf_counter) -> None:
        if not seconds > 0:
            raise ValueError("seconds must be > 0")
        self.seconds = seconds
        self._clock = clock
        self._started: float | None = None  # when this iteration's slice began (None: not yet)
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: While work waits: pieces let go per iteration, tuned so an iteration lasts ~seconds.
        self.fit = 16
        self._granted_at: float | None = None
        #: Times a piece of work waited for a later iteration (tests and profiling read it).
        self.deferred = 0

    def __repr__(self) -> str:
        waiting = len(self._waiters)
        return f"LoopSlice({self.seconds * 1000:g} ms, fit={self.fit}, waiting={waiting})"

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        now = self._clock()
        if self._started is None:
            self._started = now
            loop.call_soon(self._next_iteration)
        if not self._waiters and now - self._started < self.seconds:
            return
        # This iteration's slice is spent (or others wait already): a later iteration lets
        # this piece go, in the order the pieces came.
        self.deferred += 1
        waiter = loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def _next_iteration(self) -> None:
        """Runs one loop iteration after the slice began (the sockets have been polled since):
        let ``fit`` waiting pieces go, and keep doing so each iteration while any wait."""
        now = self._clock()
        if self._granted_at is not None:
            # The whole last iteration (the pieces let go, their completions, everyone else's
            # callbacks) against the slice: fewer pieces if it ran long, a few more if not.
            if now - self._granted_at > self.seconds:
                self.fit = max(1, self.fit * 3 // 4)
            else:
                self.fit = min(MAX_FIT, self.fit + 1 + self.fit // 8)
        waiters = self._waiters
        granted = 0
        while waiters and granted < self.fit:
            waiter = waiters.popleft()
            if not waiter.done():  # (a cancelled piece left the queue)
                waiter.set_result(None)
                granted += 1
        if waiters:
            self._started = now
            self._granted_at = now
            asyncio.get_running_loop().call_soon(self._next_iteration)
        else:
            self._started = None
            self._granted_at = None
