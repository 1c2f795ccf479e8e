"""The outbox: an event is published exactly when the change it announces commits, in order."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.stack import read_all
from worker.outbox import OutboxRelay, enqueue
from worker.store import create_pool, migrate, package_migrations

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CreateTopics = Callable[..., None]


async def _pool(database_url: str) -> asyncpg.Pool:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    await migrate(pool, package_migrations("worker", "engine"))
    return pool


async def _rolled_back(pool: asyncpg.Pool, topic: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, topic=topic, key=b"O-1", value=b"rb", event_id="rb")
        raise RuntimeError("the change rolled back")


class _Producer:
    """The real producer behind a test's own view of each send (``before`` / ``after``)."""

    def __init__(self, real: AIOKafkaProducer) -> None:
        self._real, self.sent = real, 0

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> object:
        await self.before()
        result = await self._real.send_and_wait(topic, value=value, key=key, headers=headers)
        self.sent += 1
        await self.after()
        return result

    async def before(self) -> None:
        return None

    async def after(self) -> None:
        return None


class _FailingOnce(_Producer):
    """The n-th send fails after the broker took it (the ack is lost)."""

    def __init__(self, real: AIOKafkaProducer, fail_at: int) -> None:
        super().__init__(real)
        self._fail_at = fail_at

    async def after(self) -> None:
        if self.sent == self._fail_at:
            raise ConnectionResetError("the ack was lost")


class _Stuck(_Producer):
    """Sends after the first ``ok`` never return (a stop arrives meanwhile)."""

    def __init__(self, real: AIOKafkaProducer, ok: int) -> None:
        super().__init__(real)
        self._ok = ok

    async def before(self) -> None:
        if self.sent == self._ok:
            await anyio.sleep_forever()


def test_only_committed_events_are_published_in_enqueue_order_and_once_per_event_id(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic = f"{unique}.released"
    create_topics(topic, partitions=1)

    async def main() -> None:
        pool = await _pool(database_url)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for n in range(5):
                async with pool.acquire() as conn, conn.transaction():
                    assert await enqueue(
                        conn, topic=topic, key=b"O-1", value=f"e{n}".encode(), event_id=f"e{n}",
                        headers=[("h", b"\xff\x00")],
                    )  # fmt: skip
            async with pool.acquire() as conn, conn.transaction():  # the same decision again
                assert not await enqueue(conn, topic=topic, key=b"O-1", value=b"x", event_id="e1")
            with pytest.raises(RuntimeError):
                await _rolled_back(pool, topic)
            relay = OutboxRelay(pool, producer, batch_size=2)
            assert [await relay.relay_once() for _ in range(4)] == [2, 2, 1, 0]
            records = await read_all(kafka_bootstrap, topic, 5)
            assert [value for _, value, _ in records] == [b"e0", b"e1", b"e2", b"e3", b"e4"]
            assert {headers["h"] for _, _, headers in records} == {b"\xff\x00"}
            assert await pool.fetchval("SELECT count(*) FROM skuflow_outbox") == 0
        finally:
            await producer.stop()
            await pool.close()

    anyio.run(main)


def test_a_lost_ack_publishes_the_batch_again_with_the_same_event_ids(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic = f"{unique}.released"
    create_topics(topic, partitions=1)

    async def main() -> None:
        pool = await _pool(database_url)
        real = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await real.start()
        try:
            async with pool.acquire() as conn, conn.transaction():
                for n in range(3):
                    await enqueue(conn, topic=topic, key=b"K", value=f"e{n}".encode(),
                                  event_id=f"e{n}")  # fmt: skip
            relay = OutboxRelay(pool, _FailingOnce(real, fail_at=2), idle_seconds=0.05)
            with anyio.move_on_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(relay.run)
                    while await pool.fetchval("SELECT count(*) FROM skuflow_outbox"):
                        await anyio.sleep(0.05)
                    tg.cancel_scope.cancel()
            records = await read_all(kafka_bootstrap, topic, 4)
            # e0 acknowledged (deleted), e1's ack lost (it stays): e1 again, then e2 — at least
            # once, in order, and only the event whose ack was lost twice
            assert [value for _, value, _ in records] == [b"e0", b"e1", b"e1", b"e2"]
        finally:
            await real.stop()
            await pool.close()

    anyio.run(main)


def test_a_stop_mid_batch_keeps_only_what_kafka_did_not_acknowledge(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic = f"{unique}.released"
    create_topics(topic, partitions=1)

    async def main() -> None:
        pool = await _pool(database_url)
        real = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await real.start()
        try:
            async with pool.acquire() as conn, conn.transaction():
                for n in range(4):
                    await enqueue(conn, topic=topic, key=b"K", value=f"e{n}".encode(),
                                  event_id=f"e{n}")  # fmt: skip
            stuck = _Stuck(real, ok=2)
            async with anyio.create_task_group() as tg:
                tg.start_soon(OutboxRelay(pool, stuck).run)
                while stuck.sent < 2:
                    await anyio.sleep(0.01)
                await anyio.sleep(0.1)  # the third send hangs
                tg.cancel_scope.cancel()  # the stop
            left = await pool.fetch("SELECT event_id FROM skuflow_outbox ORDER BY id")
            assert [r["event_id"] for r in left] == ["e2", "e3"]
            await OutboxRelay(pool, real).relay_once()  # the next relay sends only those
            records = await read_all(kafka_bootstrap, topic, 4)
            assert [value for _, value, _ in records] == [b"e0", b"e1", b"e2", b"e3"]
        finally:
            await real.stop()
            await pool.close()

    anyio.run(main)
