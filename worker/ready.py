"""Ready queues: which lane a free runner takes next.

``FifoReady`` serves lanes in the order they became ready (normal work). ``DeadlineReady``
serves the lane whose head event has the earliest deadline first, ties by arrival (urgent
work: earliest deadline first). ``PacedReady`` is earliest deadline first decided at the
rate limiter: a lane is taken only when the pacer grants a token, and it is whichever lane is
most urgent at that moment. All hold at most one entry per lane, so they are bounded by the
lanes, which the engine's buffer budget bounds.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Hashable
from typing import Protocol

import anyio

from worker.pacing import LAST, DeadlinePacer, Rank, set_rank


class ReadyQueue(Protocol):
    def put(self, key: Hashable, deadline: float | None) -> None:
        """A lane became ready; ``deadline`` is its head event's (epoch seconds) or None."""
        ...

    async def get(self) -> Hashable | None:
        """The next lane to run; None once closed."""
        ...

    def close(self) -> None:
        """Wake every waiting runner with None; later gets return None at once."""
        ...

    def __len__(self) -> int: ...

    def earliest_deadline(self) -> float | None:
        """The most urgent deadline waiting (None: nothing with a deadline waits)."""
        ...


class _Base:
    """Waiting without a per-get checkpoint: a runner that finds work takes it synchronously
    (the runners yield to the loop themselves), and only an empty queue costs an Event.

    Wake-ups are chained, one at a time: a put wakes one idle runner unless one is already
    woken and not yet running; a runner that takes a lane and leaves more behind wakes the
    next. A burst of puts therefore costs one wake-up instead of one per lane, while every
    waiting lane still gets a runner as soon as the taker before it suspends (the woken runner
    takes the next lane when the loop gets to it). Handlers that never suspend are run by the
    few runners that are awake, with no task switch per lane.
    """

    def __init__(self) -> None:
        self._waiters: deque[anyio.Event] = deque()
        self._closed = False
        #: A runner was woken and has not taken its lane yet (the baton of the chain).
        self._waking = False
        #: Runners woken so far (a wake-up is a task switch; profiling and tests read it).
        self.wakeups = 0

    def close(self) -> None:
        self._closed = True
        while self._waiters:
            self._waiters.popleft().set()

    def _signal(self) -> None:
        if self._waiters and not self._waking:
            self._waking = True
            self.wakeups += 1
            self._waiters.popleft().set()

    def _empty(self) -> bool:
        raise NotImplementedError

    def _pop(self) -> Hashable:
        raise NotImplementedError

    async def get(self) -> Hashable | None:
        while not self._closed:
            if not self._empty():
                key = self._pop()
                if not self._empty():
                    self._signal()  # more lanes wait: pass the baton on
                return key
            waiter = anyio.Event()
            self._waiters.append(waiter)
            try:
                await waiter.wait()
            except BaseException:  # cancelled: the baton, if this runner had it, moves on
                if waiter.is_set():
                    self._waking = False
                    if not self._empty():
                        self._signal()
                else:
                    self._waiters.remove(waiter)
                raise
            self._waking = False
        return None


class FifoReady(_Base):
    def __init__(self) -> None:
        super().__init__()
        self._keys: deque[Hashable] = deque()

    def put(self, key: Hashable, deadline: float | None) -> None:
        self._keys.append(key)
        self._signal()

    def _empty(self) -> bool:
        return not self._keys

    def _pop(self) -> Hashable:
        return self._keys.popleft()

    def __len__(self) -> int:
        return len(self._keys)

    def earliest_deadline(self) -> float | None:
        return None


class DeadlineReady(_Base):
    """Earliest deadline first; events without a deadline go after every dated one."""

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._arrival = itertools.count()

    def put(self, key: Hashable, deadline: float | None) -> None:
        rank = math.inf if deadline is None else deadline
        heapq.heappush(self._heap, (rank, next(self._arrival), key))
        self._signal()

    def _empty(self) -> bool:
        return not self._heap

    def _pop(self) -> Hashable:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)

    def earliest_deadline(self) -> float | None:
        if not self._heap or self._heap[0][0] == math.inf:
            return None
        return self._heap[0][0]


class PacedReady(DeadlineReady):
    """Earliest deadline first, decided when the pacer's token is free (see
    :mod:`worker.pacing`): one runner at a time picks; it waits for a token with the rank of
    whichever lane is at the head *when the token is granted*, then takes that lane holding the
    token. Runners that are not picking wait their turn on a lock (they hold nothing)."""

    def __init__(self, pacer: DeadlinePacer) -> None:
        super().__init__()
        self._pacer = pacer
        self._lock: anyio.Lock | None = None
        self._picking: anyio.CancelScope | None = None

    def close(self) -> None:
        super().close()
        if self._picking is not None:
            self._picking.cancel()

    def _head_rank(self) -> Rank:
        if not self._heap:
            return LAST
        rank, arrival, _key = self._heap[0]
        return (rank, float(arrival))

    async def get(self) -> Hashable | None:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            while not self._closed:
                if self._empty():
                    waiter = anyio.Event()
                    self._waiters.append(waiter)
                    try:
                        await waiter.wait()
                    finally:
                        if not waiter.is_set():
                            self._waiters.remove(waiter)
                        self._waking = False
                    continue
                if self._pacer.holding() is None:
                    with anyio.CancelScope() as self._picking:
                        await self._pacer.pick(self._head_rank)
                    self._picking = None
                    continue  # closed meanwhile, or the lanes left: look again
                rank, arrival, key = heapq.heappop(self._heap)
                set_rank((rank, float(arrival)))
                return key
            self._pacer.release()
            return None
