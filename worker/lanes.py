"""Per-key lanes: one event of a key at a time, in arrival order; many keys at once.

Invariant 1 (key order) lives here and only here. A lane exists for a key exactly while it has
queued work, and a lane is owned by exactly one party at a time: either it sits once in the
ready queue, or one runner is working through it. So two events of one key can never run
concurrently, and they run in the order they were submitted (the fetch order, which for one
partition is offset order).

Runners are a fixed pool of ``max_in_flight`` tasks, so concurrency is bounded without a task
per event; the ready queue (FIFO, or earliest deadline first for urgent work) holds at most one
entry per lane, and lanes hold only submitted work, which the engine bounds (buffered messages).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from worker.ready import FifoReady, ReadyQueue
from worker.slicing import LoopSlice

T = TypeVar("T")

#: A runner keeps a busy lane for at most this many items before letting other lanes go first.
FAIRNESS_QUANTUM = 16
#: A runner yields to the event loop at least once per this many lanes.
YIELD_EVERY = 32


class KeyLanes(Generic[T]):
    """Runs ``process(item)`` for submitted items: per key sequential, across keys concurrent."""

    def __init__(
        self,
        process: Callable[[T], Awaitable[None]],
        *,
        max_in_flight: int,
        max_lanes: int,
        skip: Callable[[T], bool] | None = None,
        ready: ReadyQueue | None = None,
        deadline: Callable[[T], float | None] | None = None,
        quantum: int = FAIRNESS_QUANTUM,
        loop_slice: LoopSlice | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if quantum < 1:
            raise ValueError("quantum must be >= 1")
        #: Items a runner takes from one lane before the lane goes back to the ready queue
        #: (1 when every item must be picked on its own, e.g. at a rate limiter's token).
        self._quantum = quantum
        #: Background work: each item waits for room in the event loop's current slice.
        self._slice = loop_slice
        self._process = process
        self._skip = skip
        self._max_in_flight = max_in_flight
        self._max_lanes = max_lanes
        self._lanes: dict[Hashable, deque[T]] = {}
        self._ready: ReadyQueue = ready if ready is not None else FifoReady()
        self._deadline = deadline or (lambda _item: None)
        self._running: dict[Hashable, T] = {}
        self._scopes: dict[Hashable, anyio.CancelScope] = {}
        self._queued = 0
        self._closed = False

    # -- introspection -------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Items submitted and not yet started."""
        return self._queued

    @property
    def in_flight(self) -> int:
        """Items being processed right now."""
        return len(self._running)

    @property
    def active_keys(self) -> int:
        """Keys with queued or running work."""
        return len(self._lanes)

    @property
    def blocked_keys(self) -> int:
        """Keys whose next item waits behind a running one of the same key."""
        return sum(1 for key, lane in self._lanes.items() if key in self._running and len(lane) > 1)

    def running_items(self) -> list[T]:
        return list(self._running.values())

    # -- submission ----------------------------------------------------------------------------
    def submit(self, key: Hashable, item: T) -> None:
        """Queue ``item`` behind earlier items of ``key``. Never blocks."""
        self._queued += 1
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(item)
            return
        if len(self._lanes) >= self._max_lanes:
            raise RuntimeError("lane budget exceeded: the caller's buffer bound is broken")
        self._lanes[key] = deque((item,))
        # Bounded: at most one ready entry per lane, and lanes <= max_lanes.
        self._ready.put(key, self._deadline(item))

    def discard(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove queued (not running) items matching ``predicate``; return them."""
        removed: list[T] = []
        for key, lane in self._lanes.items():
            running = self._running.get(key)
            keep: deque[T] = deque()
            for index, item in enumerate(lane):
                if index == 0 and running is item:
                    keep.append(item)
                elif predicate(item):
                    removed.append(item)
                else:
                    keep.append(item)
            if len(keep) != len(lane):
                lane.clear()
                lane.extend(keep)
        self._queued -= len(removed)
        return removed

    # -- running -------------------------------------------------------------------------------
    def earliest_waiting_deadline(self) -> float | None:
        """The most urgent deadline among lanes waiting for a runner."""
        return self._ready.earliest_deadline()

    @property
    def waiting_lanes(self) -> int:
        """Lanes ready to run but waiting for a free runner."""
        return len(self._ready)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the runner pool until cancelled or :meth:`close` is called."""
        async with anyio.create_task_group() as tg:
            for _ in range(self._max_in_flight):
                tg.start_soon(self._runner)
            task_status.started()

    def close(self) -> None:
        """Stop starting items: runners finish the item in hand and stop; the rest stay queued."""
        self._closed = True
        self._ready.close()

    def cancel_running(self, predicate: Callable[[T], bool]) -> int:
        """Cancel the running items matching ``predicate`` (their lanes go on); return how many."""
        cancelled = 0
        for key, item in list(self._running.items()):
            if predicate(item):
                self._scopes[key].cancel()
                cancelled += 1
        return cancelled

    async def _runner(self) -> None:
        # One cancel scope per runner, not per item: a scope costs microseconds, and only
        # cancel_running() needs one. A cancelled runner abandons its item and carries on.
        while True:
            draining: Hashable | None = None
            with anyio.CancelScope() as scope:
                lanes_since_yield = 0
                while True:
                    key = await self._ready.get()
                    if key is None or self._closed:
                        return
                    draining = key
                    await self._drain_lane(key, scope)
                    draining = None
                    lanes_since_yield += 1
                    if lanes_since_yield >= YIELD_EVERY:
                        # Handlers that never suspend must not starve the fetch loop.
                        lanes_since_yield = 0
                        await anyio.lowlevel.checkpoint()
            if draining is not None:
                self._requeue(draining)  # the cancelled item was dropped; its lane goes on

    async def _drain_lane(self, key: Hashable, scope: anyio.CancelScope) -> None:
        lane = self._lanes[key]
        for _ in range(self._quantum):
            if self._slice is not None:
                await self._slice.turn()  # room in this loop iteration (the lane stays ours)
            if not lane:
                del self._lanes[key]
                return
            if self._closed:
                return
            item = lane[0]
            if self._skip is not None and self._skip(item):
                lane.popleft()
                self._queued -= 1
                continue
            self._queued -= 1
            self._running[key] = item
            self._scopes[key] = scope
            try:
                await self._process(item)
            finally:
                del self._running[key]
                del self._scopes[key]
                lane.popleft()
        self._requeue(key)

    def _requeue(self, key: Hashable) -> None:
        """A lane leaves its runner: back in the ready queue if it has items, else gone."""
        lane = self._lanes.get(key)
        if lane:
            # Let other lanes go first; back in the queue with the new head's deadline. When
            # closing, the remaining items simply stay queued (uncommitted).
            self._ready.put(key, self._deadline(lane[0]))
        elif lane is not None:
            del self._lanes[key]
