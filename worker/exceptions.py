"""Exception records: every message that cannot be applied, visible and retryable.

A message becomes one row (unique on topic/partition/offset, so a redelivery bumps ``attempts``
instead of adding a row) and one dead-letter record. A retried exception is re-published to its
original topic with the header ``skuflow.retry-of``; when that copy is processed the outcome is
written back onto the *same* record (resolved on success, open again with the new reason on
failure), so operators follow one record per problem.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from worker.listing import FETCH_ROWS, ListingCounts, keyset
from worker.messages import Message
from worker.tracing import inject, trace_id_hex

RETRY_OF_HEADER = "skuflow.retry-of"

STATUSES = ("open", "retrying", "resolved")

#: The columns of a listed record (``ExceptionRecord``'s fields).
_LISTED = """id, kind, reason, topic, partition, "offset", key, event_id, sku, payload,
             first_seen, last_seen, attempts, status, resolution"""


class ExceptionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One exception, in the stable shape of ``skuflow exceptions list/show --json``."""

    id: int
    kind: str
    reason: str
    topic: str
    partition: int
    offset: int
    key: str | None
    event_id: str | None
    sku: str | None
    payload: str
    first_seen: datetime
    last_seen: datetime
    attempts: int
    status: str
    resolution: str | None


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return raw.decode("utf-8", errors="backslashreplace")


def _record(row: asyncpg.Record) -> ExceptionRecord:
    return ExceptionRecord(
        id=row["id"],
        kind=row["kind"],
        reason=row["reason"],
        topic=row["topic"],
        partition=row["partition"],
        offset=row["offset"],
        key=_text(row["key"]),
        event_id=row["event_id"],
        sku=row["sku"],
        payload=_text(row["payload"]) or "",
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        attempts=row["attempts"],
        status=row["status"],
        resolution=row["resolution"],
    )


def storable(text: str) -> str:
    """``text`` for a PostgreSQL text/jsonb column, which cannot hold U+0000 (shown as ``\\u0000``).

    Reasons echo input (msgspec quotes a bad ``type`` value, a marketplace echoes an id): a NUL
    in one would make the exception record unwritable and its message retried forever.
    """
    return text.replace("\x00", "\\u0000") if "\x00" in text else text


def encode_headers(headers: Any) -> str:
    """Headers as JSON ``[[name, base64(value)], ...]``: exact bytes, any encoding (names with
    U+0000, which jsonb refuses, are stored with ``\\u0000``)."""
    return json.dumps(
        [[storable(k), base64.b64encode(v or b"").decode("ascii")] for k, v in headers]
    )


def decode_headers(text: str) -> list[tuple[str, bytes]]:
    return [(k, base64.b64decode(v)) for k, v in json.loads(text)]


def retry_of(message: Message) -> int | None:
    raw = message.header(RETRY_OF_HEADER)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


class ExceptionStore:
    """Reads and writes ``skuflow_exceptions``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(
        self,
        message: Message,
        *,
        kind: str,
        reason: str,
        event_id: str | None = None,
        sku: str | None = None,
        trace_id: str | None = None,
    ) -> int:
        """Record (or bump) the exception for ``message``; return its id.

        The record names the trace it happened in (the current span's, unless given).
        """
        trace_id = trace_id or trace_id_hex()
        # Reasons and ids echo input (msgspec quotes a bad ``type``): no U+0000 in text columns.
        reason = storable(reason)
        event_id = None if event_id is None else storable(event_id)
        sku = None if sku is None else storable(sku)
        original = retry_of(message)
        if original is not None:
            row_id = await self._pool.fetchval(
                """UPDATE skuflow_exceptions
                   SET kind = $2, reason = $3, last_seen = now(), attempts = attempts + 1,
                       status = 'open', resolution = NULL
                   WHERE id = $1 RETURNING id""",
                original,
                kind,
                reason,
            )
            if row_id is not None:
                return int(row_id)
        row_id = await self._pool.fetchval(
            """INSERT INTO skuflow_exceptions
                 (kind, reason, topic, partition, "offset", key, event_id, sku, payload, headers,
                  trace_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
               ON CONFLICT (topic, partition, "offset", kind) DO UPDATE
                 SET reason = EXCLUDED.reason, last_seen = now(),
                     attempts = skuflow_exceptions.attempts + 1,
                     status = CASE WHEN skuflow_exceptions.status = 'resolved'
                                   THEN 'resolved' ELSE 'open' END
               RETURNING id""",
            kind,
            reason,
            message.topic,
            message.partition,
            message.offset,
            message.key,
            event_id,
            sku,
            message.value,
            encode_headers(message.headers),
            trace_id,
        )
        return int(row_id)

    async def annotate(self, message: Message, kind: str, note: str, *, resolve: bool) -> None:
        """Add a resolution note to the message's record of ``kind`` (and resolve it)."""
        await self._pool.execute(
            """UPDATE skuflow_exceptions
               SET resolution = $5, last_seen = now(),
                   status = CASE WHEN $6 THEN 'resolved' ELSE status END
               WHERE topic = $1 AND partition = $2 AND "offset" = $3 AND kind = $4""",
            message.topic,
            message.partition,
            message.offset,
            kind,
            note,
            resolve,
        )

    async def settle_retry(self, message: Message) -> None:
        """A retried copy was applied: resolve its original record."""
        original = retry_of(message)
        if original is None:
            return
        await self._pool.execute(
            """UPDATE skuflow_exceptions
               SET status = 'resolved', last_seen = now(),
                   resolution = 'retried: applied from ' || $2
               WHERE id = $1 AND status <> 'resolved'""",
            original,
            f"{message.topic}[{message.partition}]@{message.offset}",
        )

    async def listing(
        self,
        status: str = "open",
        *,
        emit: Callable[[ExceptionRecord], None],
        after: int | None = None,
        limit: int | None = 1000,
        fetch: int = FETCH_ROWS,
    ) -> ListingCounts:
        """Emit the records with ``status`` (or ``all``) in id order, beyond ``after``, at most
        ``limit`` (None: every one, streamed); return what was shown against the database."""
        return await keyset(
            self._pool,
            table="skuflow_exceptions",
            columns=_LISTED,
            where="TRUE" if status == "all" else "status = $1",
            params=() if status == "all" else (status,),
            after=after,
            limit=limit,
            fetch=fetch,
            emit=lambda row: emit(_record(row)),
        )

    async def get(self, exception_id: int) -> ExceptionRecord | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM skuflow_exceptions WHERE id = $1", exception_id
        )
        return None if row is None else _record(row)

    async def raw(
        self, exception_id: int
    ) -> tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]:
        """Topic, key, payload and headers of the original message."""
        row = await self._pool.fetchrow(
            "SELECT topic, key, payload, headers::text AS headers FROM skuflow_exceptions "
            "WHERE id = $1",
            exception_id,
        )
        if row is None:
            raise LookupError(exception_id)
        return row["topic"], row["key"], row["payload"], decode_headers(row["headers"])

    async def mark_retrying(self, exception_id: int) -> None:
        await self._pool.execute(
            "UPDATE skuflow_exceptions SET status = 'retrying', last_seen = now() WHERE id = $1",
            exception_id,
        )

    async def resolve(self, exception_id: int, note: str) -> bool:
        result: str = await self._pool.execute(
            "UPDATE skuflow_exceptions SET status = 'resolved', resolution = $2, last_seen = now() "
            "WHERE id = $1",
            exception_id,
            note,
        )
        return result.endswith(" 1")

    async def ids(self, status: str) -> list[int]:
        rows = await self._pool.fetch(
            "SELECT id FROM skuflow_exceptions WHERE status = $1 ORDER BY id", status
        )
        return [int(r["id"]) for r in rows]


async def republish(store: ExceptionStore, producer: Any, ids: list[int]) -> int:
    """Send each exception's original message to its topic again, tagged ``retry-of``."""
    count = 0
    for exception_id in ids:
        topic, key, payload, headers = await store.raw(exception_id)
        headers = [(k, v) for k, v in headers if k != RETRY_OF_HEADER]
        headers.append((RETRY_OF_HEADER, str(exception_id).encode()))
        # The record keeps its original trace context, unless a span is current here.
        await producer.send_and_wait(topic, value=payload, key=key, headers=inject(headers))
        await store.mark_retrying(exception_id)
        count += 1
    return count
