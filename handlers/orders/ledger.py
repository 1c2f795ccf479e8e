"""What the order flow's background work shares: exception records of ledger rows, backoff,
the outbox events for the warehouse, and the per-cycle leadership across replicas."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import asyncpg
import msgspec

from handlers.orders.events import OrderHeld, OrderReleased, ReleasedLine
from handlers.ports.erp import SalesOrderRef
from worker.backoff import Backoff
from worker.exceptions import ExceptionStore
from worker.messages import Message
from worker.outbox import enqueue
from worker.store import advisory_lock_id

log = logging.getLogger("skuflow.orders")

_ENCODE = msgspec.json.Encoder(decimal_format="number").encode


def message_of(row: asyncpg.Record) -> Message:
    """The message a ledger row was made from (its exception records name it)."""
    return Message(
        topic=row["topic"],
        partition=row["partition"],
        offset=row["offset"],
        key=row["key"],
        value=row["payload"],
        headers=(),
        timestamp_ms=0,
    )


async def record_exception(
    store: ExceptionStore, conn: asyncpg.Connection, row: asyncpg.Record, kind: str, reason: str
) -> int:
    """An exception record for the message behind ``row`` — opened again if a retry had
    resolved it (the same problem came back)."""
    trace = row["traceparent"]
    exception_id = await store.record(
        message_of(row),
        kind=kind,
        reason=reason,
        event_id=row["event_id"],
        trace_id=trace.split("-")[1] if trace else None,
    )
    await conn.execute(
        "UPDATE skuflow_exceptions SET status = 'open', resolution = NULL "
        "WHERE id = $1 AND status = 'resolved'",
        exception_id,
    )
    return exception_id


def next_attempt(backoff: Backoff, attempts: int) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=backoff.delay(attempts))


def ref_of(raw: str | None) -> SalesOrderRef | None:
    return None if raw is None else msgspec.json.decode(raw, type=SalesOrderRef)


def encode_ref(ref: SalesOrderRef) -> str:
    return msgspec.json.encode(ref).decode()


class Announcer:
    """Writes ``order.released`` / ``order.held`` for the warehouse into the outbox, in the
    caller's transaction (event ids are deterministic: a decision taken twice publishes once)."""

    def __init__(self, topic: str, wake: Any = None) -> None:
        self.topic = topic
        self._wake = wake

    async def released(self, conn: asyncpg.Connection, row: Mapping[str, Any], number: int) -> None:
        ref = ref_of(row["erp_ref"])
        lines = [
            ReleasedLine(
                order_item_id=line["order_item_id"],
                sku=line["sku"],
                quantity=Decimal(line["quantity"]),
            )
            for line in json.loads(row["lines"])
        ]
        event = OrderReleased(
            event_id=f"{row['channel']}-{row['order_id']}-released-{number}",
            occurred_at=datetime.now(UTC),
            source="skuflow",
            source_ref=str(ref.doc_num if ref else ""),
            channel=row["channel"],
            order_id=row["order_id"],
            marketplace_id=row["marketplace_id"],
            erp_order=str(ref.doc_num if ref else ""),
            warehouse=row["location"],
            ship_by=row["ship_by"],
            lines=lines,
        )
        await self._enqueue(conn, row["order_id"], event.event_id, _ENCODE(event))

    async def held(
        self, conn: asyncpg.Connection, row: Mapping[str, Any], number: int, holds: list[str]
    ) -> None:
        ref = ref_of(row["erp_ref"])
        event = OrderHeld(
            event_id=f"{row['channel']}-{row['order_id']}-held-{number}",
            occurred_at=datetime.now(UTC),
            source="skuflow",
            source_ref=str(ref.doc_num if ref else ""),
            channel=row["channel"],
            order_id=row["order_id"],
            erp_order=str(ref.doc_num if ref else ""),
            holds=holds,
        )
        await self._enqueue(conn, row["order_id"], event.event_id, _ENCODE(event))

    async def _enqueue(
        self, conn: asyncpg.Connection, order_id: str, event_id: str, value: bytes
    ) -> None:
        await enqueue(conn, topic=self.topic, key=order_id.encode(), value=value, event_id=event_id)
        if self._wake is not None:
            self._wake()


class Cycles:
    """A background loop: ``cycle`` at least every ``period`` seconds, at once when woken;
    PostgreSQL unreachable → backoff, then again (the work is all in the database)."""

    def __init__(self, what: str, period: float, backoff: Backoff) -> None:
        self._what, self._period, self._backoff = what, period, backoff
        self._wake = anyio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, cycle: Callable[[], Awaitable[object]]) -> None:
        failures = 0
        while True:
            try:
                await cycle()
                failures = 0
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                failures += 1
                log.warning("%s waits for PostgreSQL", self._what, extra={"error": str(exc)})
                await anyio.sleep(self._backoff.delay(failures))
            with anyio.move_on_after(self._period):
                await self._wake.wait()
            self._wake = anyio.Event()


@asynccontextmanager
async def leading(pool: asyncpg.Pool, name: str) -> AsyncIterator[asyncpg.Connection | None]:
    """This replica's turn at ``name`` (a session advisory lock for one cycle of work), or
    None while another replica has it."""
    lock = advisory_lock_id("orders", name)
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock):
            yield None
            return
        try:
            yield conn
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock)
