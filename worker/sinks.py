"""Where non-trivial outcomes become durable: exception records, dead letters, parked events.

Each method returns only once its effect is durable; the engine completes the offset after it.
"""

from __future__ import annotations

import logging
from typing import Protocol

import asyncpg
from aiokafka.errors import MessageSizeTooLargeError

from worker.exceptions import ExceptionStore, encode_headers, retry_of
from worker.messages import DecodeFailure, EventInfo, Message
from worker.outcomes import Park
from worker.tracing import inject

log = logging.getLogger("skuflow.outcomes")


class DeadLetterProducer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> object: ...


class OutcomeSinks:
    """Makes reject / park / done outcomes durable."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: DeadLetterProducer,
        dead_letter_topic: str,
    ) -> None:
        self._pool = pool
        self._exceptions = ExceptionStore(pool)
        self._producer = producer
        self._dead_letter_topic = dead_letter_topic

    async def reject(
        self, message: Message, failure: DecodeFailure, info: EventInfo | None
    ) -> None:
        headers = [
            *[(k, v) for k, v in message.headers if not k.startswith("skuflow.error.")],
            ("skuflow.error.kind", failure.kind.encode()),
            ("skuflow.error.reason", failure.reason.encode("utf-8", "replace")[:4096]),
            ("skuflow.original.topic", message.topic.encode()),
            ("skuflow.original.partition", str(message.partition).encode()),
            ("skuflow.original.offset", str(message.offset).encode()),
        ]
        # The dead letter carries the context of the span that rejected it onward.
        try:
            await self._producer.send_and_wait(
                self._dead_letter_topic,
                value=message.value,
                key=message.key,
                headers=inject(headers),
            )
        except MessageSizeTooLargeError:
            # Too large for the producer or the dead-letter topic (e.g. a payload_too_large
            # message from a topic that allows big records): retrying can never succeed, so the
            # letter goes with an empty value; the exception record keeps the original bytes.
            headers.append(("skuflow.original.size", str(len(message.value)).encode()))
            await self._producer.send_and_wait(
                self._dead_letter_topic, value=b"", key=message.key, headers=inject(headers)
            )
        exception_id = await self._exceptions.record(
            message,
            kind=failure.kind,
            reason=failure.reason,
            event_id=info.event_id if info else None,
            sku=info.sku if info else None,
        )
        await self._unpark(message)
        log.warning(
            "exception recorded",
            extra={
                "exception_id": exception_id,
                "kind": failure.kind,
                "reason": failure.reason,
                "messaging.destination.name": message.topic,
                "messaging.destination.partition.id": message.partition,
                "messaging.kafka.offset": message.offset,
            },
        )

    async def park(self, message: Message, park: Park, info: EventInfo | None) -> None:
        await self._pool.execute(
            """INSERT INTO skuflow_parked
                 (topic, partition, "offset", key, ordering_key, event_id, payload, headers,
                  reason, attempts, next_attempt_at, deadline)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12)
               ON CONFLICT (topic, partition, "offset") DO UPDATE
                 SET reason = EXCLUDED.reason, attempts = EXCLUDED.attempts,
                     next_attempt_at = EXCLUDED.next_attempt_at, deadline = EXCLUDED.deadline,
                     claimed_until = NULL""",
            message.topic,
            message.partition,
            message.offset,
            message.key,
            info.ordering_key if info else None,
            info.event_id if info else None,
            message.value,
            encode_headers(message.headers),
            park.reason,
            message.attempts,
            park.next_attempt_at,
            park.deadline,
        )
        await self._settle(message)

    @staticmethod
    def settles(message: Message) -> bool:
        """A done message has something to settle (a retried exception, a parked row): only
        then is :meth:`done` called (most messages: nothing to write, no await)."""
        return message.parked_id is not None or retry_of(message) is not None

    async def done(self, message: Message) -> None:
        await self._settle(message)
        await self._unpark(message)

    async def alert(self, message: Message, kind: str, reason: str, info: EventInfo) -> None:
        """A deadline alert: an exception record (no dead letter: the event is still live)."""
        await self._exceptions.record(
            message, kind=kind, reason=reason, event_id=info.event_id, sku=info.sku
        )

    async def close_alert(self, message: Message, kind: str, note: str, *, resolve: bool) -> None:
        await self._exceptions.annotate(message, kind, note, resolve=resolve)

    async def _settle(self, message: Message) -> None:
        if retry_of(message) is not None:
            await self._exceptions.settle_retry(message)

    async def _unpark(self, message: Message) -> None:
        """A parked event reached a final outcome: its row leaves the park store."""
        if message.parked_id is not None:
            await self._pool.execute("DELETE FROM skuflow_parked WHERE id = $1", message.parked_id)
