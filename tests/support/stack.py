"""Helpers for tests on the real broker and database: settings, producing, running workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from config.settings import (
    DatabaseSettings,
    EngineSettings,
    HealthSettings,
    KafkaSettings,
    LogSettings,
    Secret,
    Settings,
    TopicsSettings,
)
from skuflow.app import Worker, engine_options
from worker.messages import Router


def settings_for(
    bootstrap: str, database_url: str, group: str, topic: str, **engine: Any
) -> Settings:
    engine.setdefault("commit_interval_seconds", 0.2)
    engine.setdefault("revoke_timeout_seconds", 10.0)
    engine.setdefault("drain_timeout_seconds", 10.0)
    return Settings(
        kafka=KafkaSettings(bootstrap=bootstrap, group=group, session_timeout_ms=10_000),
        database=DatabaseSettings(url=Secret(database_url)),
        topics=TopicsSettings(
            stock=topic, dispatch=f"{topic}.dispatch", dead_letter=f"{topic}.dlq"
        ),
        health=HealthSettings(port=0, host="127.0.0.1", stall_seconds=5.0),
        log=LogSettings(format="console"),
        engine=EngineSettings(**engine),
    )


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> int:
    """Produce keyed records (default partitioner: murmur2, like the Java client)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, acks="all", enable_idempotence=True
    )
    await producer.start()
    count = 0
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value=value, key=key, headers=headers))
            count += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


@asynccontextmanager
async def running_worker(settings: Settings, router: Router) -> AsyncIterator[Worker]:
    """A worker running in this event loop; stopped (drained) on exit."""
    worker = Worker(settings, router=router, options=engine_options(settings))
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        try:
            yield worker
        finally:
            worker.request_stop()


async def wait_for(condition: Any, timeout: float, what: str, poll: float = 0.05) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(poll)
    _ = what


async def read_all(
    bootstrap: str, topic: str, count: int
) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """The first ``count`` records of ``topic`` (key, value, headers), within 30 s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
    try:
        with anyio.fail_after(30):
            while len(out) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    out.extend((r.key, r.value, dict(r.headers)) for r in records)
    finally:
        await consumer.stop()
    return out
