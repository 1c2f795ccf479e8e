"""ERP master data with a TTL cache: items and warehouses, refreshed on a miss.

A hit younger than ``ttl`` is served from memory; anything else asks the ERP. A *miss* (the
ERP does not know the code) is remembered only for ``negative_ttl`` so that fixing master data
in the ERP takes effect quickly (``skuflow exceptions retry`` re-validates). Concurrent lookups
of one code share one ERP call. The cache is bounded (least recently refreshed evicted).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

from handlers.ports.erp import ItemMaster, MasterDataSource, WarehouseMaster

V = TypeVar("V")


class _Cache(Generic[V]):
    def __init__(
        self,
        fetch: Callable[[str], Awaitable[V | None]],
        *,
        ttl: float,
        negative_ttl: float,
        max_entries: int,
        clock: Callable[[], float],
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V | None]] = OrderedDict()
        self._locks: dict[str, anyio.Lock] = {}
        self.fetches = 0

    async def get(self, code: str) -> V | None:
        found = self._fresh(code)
        if found is not None:
            return found[0]
        lock = self._locks.setdefault(code, anyio.Lock())
        async with lock:
            found = self._fresh(code)  # another task may have fetched it meanwhile
            if found is not None:
                return found[0]
            self.fetches += 1
            value = await self._fetch(code)
            self._entries[code] = (self._clock(), value)
            self._entries.move_to_end(code)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        self._locks.pop(code, None)
        return value

    def _fresh(self, code: str) -> tuple[V | None] | None:
        entry = self._entries.get(code)
        if entry is None:
            return None
        fetched_at, value = entry
        ttl = self._ttl if value is not None else self._negative_ttl
        return (value,) if self._clock() - fetched_at < ttl else None


class MasterData:
    def __init__(
        self,
        erp: MasterDataSource,
        *,
        ttl: float = 300.0,
        negative_ttl: float = 30.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.items: _Cache[ItemMaster] = _Cache(
            erp.get_item, ttl=ttl, negative_ttl=negative_ttl, max_entries=max_entries, clock=clock
        )
        self.warehouses: _Cache[WarehouseMaster] = _Cache(
            erp.get_warehouse, ttl=ttl, negative_ttl=negative_ttl, max_entries=1000, clock=clock
        )

    async def item(self, item_code: str) -> ItemMaster | None:
        return await self.items.get(item_code)

    async def warehouse(self, code: str) -> WarehouseMaster | None:
        return await self.warehouses.get(code)
