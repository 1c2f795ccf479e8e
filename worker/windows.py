"""The window scheduler: flush each group (e.g. a warehouse) by time or by size, staggered.

Generic: it knows groups, a window length, a size threshold and a flush function — nothing of
stock or ERPs. Each group's window closes every ``window_seconds`` at a phase derived from the
group's name (so warehouses do not all post at the same moment), or as soon as the group holds
``max_items`` waiting items. At most ``max_concurrent`` flushes run at once.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Awaitable, Callable

import anyio

log = logging.getLogger("skuflow.windows")


class WindowScheduler:
    def __init__(
        self,
        *,
        groups: Callable[[], Awaitable[list[str]]],
        size: Callable[[str], Awaitable[int]],
        flush: Callable[[str], Awaitable[None]],
        window_seconds: float,
        max_items: int,
        max_concurrent: int = 2,
        poll_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._groups = groups
        self._size = size
        self._flush = flush
        self._window = window_seconds
        self._max_items = max_items
        self._limit = anyio.CapacityLimiter(max_concurrent)
        self._poll = poll_seconds if poll_seconds is not None else min(1.0, window_seconds / 4)
        self._clock = clock
        self._due: dict[str, float] = {}
        self._flushing: set[str] = set()
        self.flushes = 0

    def phase(self, group: str) -> float:
        """The group's offset inside the window: stable, spread by a hash of its name."""
        return (zlib.crc32(group.encode()) % 1000) / 1000 * self._window

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                now = self._clock()
                try:
                    groups = await self._groups()
                except Exception as exc:
                    log.warning("window scheduler cannot list groups", extra={"error": repr(exc)})
                    groups = []
                for group in groups:
                    if group in self._flushing:
                        continue
                    due = self._due.setdefault(group, self._first_due(group, now))
                    if now >= due or await self._size(group) >= self._max_items:
                        self._due[group] = now + self._window
                        self._flushing.add(group)
                        tg.start_soon(self._flush_one, group)
                await anyio.sleep(self._poll)

    def _first_due(self, group: str, now: float) -> float:
        start_of_window = now - (now % self._window)
        due = start_of_window + self.phase(group)
        return due if due > now else due + self._window

    async def _flush_one(self, group: str) -> None:
        try:
            async with self._limit:
                await self._flush(group)
                self.flushes += 1
        except Exception:
            log.exception("flush failed", extra={"group": group})
        finally:
            self._flushing.discard(group)
