"""The transactional outbox: events published as the effect of a database change.

A flow that decides something worth telling another system (an order is released to the
warehouse, a captured marketplace order) writes the event with :func:`enqueue` **in the same
transaction** as the change itself, so the decision and its announcement are durable together
or not at all. :class:`OutboxRelay` sends the rows to Kafka in id order and deletes each one
once Kafka acknowledged it.

Guarantees: an event is published at least once, in enqueue order per topic and key (one
relay sends at a time, across replicas: the rows are claimed ``FOR UPDATE`` in a transaction,
so a second relay waits for the first one's batch). An event is published twice only if the
relay dies after Kafka acknowledged it and before the delete committed (a stop is not such a
death: it deletes what was acknowledged before it lets go), or a send interrupted by a stop
had in fact arrived; it then carries the same ``event_id`` again (an ``event_id`` is unique
in the outbox), which consumers drop as a duplicate. The relay's backlog is bounded by the
database, not by memory: it reads ``batch_size`` rows at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import anyio
import asyncpg
from asyncpg.transaction import Transaction

from worker.backoff import Backoff
from worker.exceptions import decode_headers, encode_headers

log = logging.getLogger("skuflow.outbox")


@runtime_checkable
class Producer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> object: ...


async def enqueue(
    conn: asyncpg.Connection,
    *,
    topic: str,
    key: bytes | None,
    value: bytes,
    event_id: str,
    headers: Sequence[tuple[str, bytes]] = (),
) -> bool:
    """Add an event to the outbox inside the caller's transaction; False if an event with
    this ``event_id`` is already there (the same decision taken twice publishes once)."""
    encoded = encode_headers(headers)
    row = await conn.fetchval(
        """INSERT INTO skuflow_outbox (topic, key, value, headers, event_id)
           VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (event_id) DO NOTHING RETURNING id""",
        topic,
        key,
        value,
        encoded,
        event_id,
    )
    return row is not None


class OutboxRelay:
    """Sends outbox rows to Kafka, oldest first; :meth:`wake` after an enqueue sends at once
    (otherwise the relay looks every ``idle_seconds``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: Producer,
        *,
        batch_size: int = 100,
        idle_seconds: float = 0.5,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._wake = anyio.Event()
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff, failures = Backoff(0.5, 30.0), 0
        while True:
            try:
                sent = await self.relay_once()
                failures = 0
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                failures += 1
                log.warning("outbox relay waits", extra={"error": str(exc)})
                await anyio.sleep(backoff.delay(failures))
                continue
            except Exception as exc:  # a Kafka error: the rows stay, sent again later
                failures += 1
                log.warning("outbox relay could not publish", extra={"error": repr(exc)})
                await anyio.sleep(backoff.delay(failures))
                continue
            if sent < self._batch_size:
                with anyio.move_on_after(self._idle_seconds):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def relay_once(self) -> int:
        """Publish and delete up to ``batch_size`` of the oldest rows; how many were sent.

        A stop (cancellation) mid-batch does not roll back what Kafka already acknowledged:
        those rows are deleted before it lets go (the send in flight itself is not known to
        have arrived: its row stays and is sent again, with its event id)."""
        async with self._pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            sent: list[int] = []
            try:
                rows = await conn.fetch(
                    "SELECT id, topic, key, value, headers FROM skuflow_outbox "
                    "ORDER BY id LIMIT $1 FOR UPDATE",
                    self._batch_size,
                )
                for row in rows:
                    await self._producer.send_and_wait(
                        row["topic"],
                        value=row["value"],
                        key=row["key"],
                        headers=decode_headers(row["headers"]),
                    )
                    sent.append(row["id"])
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._settle(conn, transaction, sent)
                raise
            await self._settle(conn, transaction, sent)
        self.published += len(sent)
        return len(sent)

    @staticmethod
    async def _settle(conn: asyncpg.Connection, transaction: Transaction, sent: list[int]) -> None:
        """Delete what Kafka acknowledged and commit (or roll back when nothing was)."""
        if not sent:
            await transaction.rollback()
            return
        try:
            await conn.execute("DELETE FROM skuflow_outbox WHERE id = ANY($1::bigint[])", sent)
            await transaction.commit()
        except BaseException:
            await transaction.rollback()
            raise
