"""A real domain-shaped router for engine tests: decodes ``test.event`` and records handling.

Not a mock of an engine collaborator: it is a handler, the thing the engine exists to call.
Each handled event is appended to ``handled`` (in memory) and, when a pool is given, to the
``test_handled`` table, so a separate process (SIGKILL tests) can be checked afterwards.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg
import msgspec

from handlers.common.router import DomainRouter, Family
from worker.messages import Message
from worker.outcomes import DONE, Outcome


class TestEvent(msgspec.Struct, frozen=True, kw_only=True, tag="test.event", tag_field="type"):
    __test__ = False  # not a pytest test class

    event_id: str
    sku: str
    seq: int

    def problems(self) -> list[tuple[str, str]]:
        return []


def encode(sku: str, seq: int) -> bytes:
    return msgspec.json.encode(TestEvent(event_id=f"{sku}-{seq}", sku=sku, seq=seq))


TABLE = """CREATE TABLE IF NOT EXISTS test_handled (
    worker TEXT NOT NULL, sku TEXT NOT NULL, seq INTEGER NOT NULL,
    partition INTEGER NOT NULL, "offset" BIGINT NOT NULL,
    at TIMESTAMPTZ DEFAULT clock_timestamp())"""


#: A process-wide completion order, comparable across the recorders of one test.
_stamps = itertools.count()


class Recorder:
    """Handles ``test.event``: optional latency, optional per-SKU behaviour, records it."""

    def __init__(
        self,
        name: str = "w",
        *,
        latency: Callable[[TestEvent], float] | None = None,
        pool: asyncpg.Pool | None = None,
        before: Callable[[TestEvent, Message], Awaitable[Outcome | None]] | None = None,
    ) -> None:
        self.name = name
        #: (sku, seq, partition, offset, completion stamp) per handled event
        self.handled: list[tuple[str, int, int, int, int]] = []
        self._latency = latency
        self._pool = pool
        self._before = before
        self._running: set[str] = set()

    async def handle(self, event: TestEvent, message: Message) -> Outcome:
        assert event.sku not in self._running, f"two events of {event.sku} ran at once"
        self._running.add(event.sku)
        try:
            if self._before is not None:
                outcome = await self._before(event, message)
                if outcome is not None:
                    return outcome
            if self._latency is not None:
                delay = self._latency(event)
                if delay:
                    await anyio.sleep(delay)
            if self._pool is not None:
                await self._pool.execute(
                    'INSERT INTO test_handled (worker, sku, seq, partition, "offset") '
                    "VALUES ($1, $2, $3, $4, $5)",
                    self.name,
                    event.sku,
                    event.seq,
                    message.partition,
                    message.offset,
                )
            self.handled.append(
                (event.sku, event.seq, message.partition, message.offset, next(_stamps))
            )
            return DONE
        finally:
            self._running.discard(event.sku)

    def router(self) -> DomainRouter:
        family = Family(
            event=TestEvent,
            ordering_key=lambda event: f"sku:{event.sku}",
            handler=self.handle,
            sku=lambda event: event.sku,
        )
        return DomainRouter([family])


def random_latency(max_seconds: float, seed: int = 0) -> Callable[[Any], float]:
    rng = random.Random(seed)
    return lambda _event: rng.random() * max_seconds
