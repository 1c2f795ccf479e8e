"""The park retrier: parked events come back when due, until they succeed or are escalated.

A handler that returns ``Park`` hands its event to ``skuflow_parked`` (the offset then
commits: the partition is not blocked). Every replica runs a retrier; due rows are *claimed*
with ``FOR UPDATE SKIP LOCKED`` and a lease, so one replica retries a row at a time and a
crashed replica's claims expire. A claimed event runs through its engine's lanes (so it is
serialised with live events of its key) and its outcome ends the row (Done, Reject) or parks
it again with a new time (Park). Most urgent deadlines are claimed first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio
import asyncpg

from worker.exceptions import decode_headers
from worker.messages import Message

log = logging.getLogger("skuflow.parking")


class ParkedTarget:
    """Where claimed events of some topics go (an engine's ``submit_parked``)."""

    def __init__(
        self,
        topics: Sequence[str],
        submit: Callable[[Message], None],
        in_flight: Callable[[], int],
    ) -> None:
        self.topics = list(topics)
        self.submit = submit
        self.in_flight = in_flight


class ParkedRetrier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        targets: Sequence[ParkedTarget],
        *,
        poll_seconds: float = 1.0,
        max_in_flight: int = 64,
        lease_seconds: float = 120.0,
    ) -> None:
        self._pool = pool
        self._targets = list(targets)
        self._poll_seconds = poll_seconds
        self._max_in_flight = max_in_flight
        self._lease_seconds = lease_seconds
        self.retried = 0

    async def run(self) -> None:
        while True:
            for target in self._targets:
                room = self._max_in_flight - target.in_flight()
                if room > 0:
                    try:
                        await self._claim_and_submit(target, room)
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        log.warning(
                            "park retrier cannot reach PostgreSQL",
                            extra={"error": type(exc).__name__},
                        )
            await anyio.sleep(self._poll_seconds)

    async def _claim_and_submit(self, target: ParkedTarget, room: int) -> None:
        rows = await self._pool.fetch(
            """UPDATE skuflow_parked SET claimed_until = now() + make_interval(secs => $3)
               WHERE id IN (
                   SELECT id FROM skuflow_parked
                   WHERE topic = ANY($1::text[]) AND next_attempt_at <= now()
                     AND (claimed_until IS NULL OR claimed_until < now())
                   ORDER BY deadline NULLS LAST, next_attempt_at, id
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED)
               RETURNING id, topic, partition, "offset", key, payload, headers::text AS headers,
                         attempts""",
            target.topics,
            room,
            self._lease_seconds,
        )
        for row in rows:
            message = Message(
                topic=row["topic"],
                partition=row["partition"],
                offset=row["offset"],
                key=row["key"],
                value=row["payload"],
                headers=decode_headers(row["headers"]),
                timestamp_ms=0,
                attempts=row["attempts"],
                parked_id=row["id"],
            )
            target.submit(message)
            self.retried += 1
