"""The benchmark's data: realistic ``stock.adjusted`` events, produced once per topic.

Every contender reads the same records: a key is a SKU (``SKU-000042``), a value the JSON of a
:class:`handlers.events.StockAdjusted` (about 300 bytes), keys drawn uniformly from ``keys`` SKUs
with a fixed seed. Records go to the partition the default (Java-compatible murmur2)
partitioner would choose, written with aiokafka's batch API so producing is not the bottleneck.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from handlers.stock.events import StockAdjusted

PARTITIONS = 6
_WAREHOUSES = ("WH-BER-1", "WH-HAM-2", "WH-MUC-1", "WH-LEJ-3")
_REASONS = ("cycle count correction", "damaged in storage", "found during audit", "returned")
_EPOCH = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
_BATCH_BYTES = 512 * 1024


def sku(index: int) -> str:
    return f"SKU-{index:06d}"


def partition_of(key: bytes, partitions: int = PARTITIONS) -> int:
    """What aiokafka's (and the Java client's) default partitioner picks for ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def events(count: int, keys: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """``count`` (key, JSON value) pairs over ``keys`` SKUs."""
    rng = random.Random(seed)
    encoder = msgspec.json.Encoder()
    for n in range(count):
        item = rng.randrange(keys)
        quantity = rng.randint(1, 40) * rng.choice((-1, 1))
        event = StockAdjusted(
            event_id=f"{rng.getrandbits(128):032x}",
            occurred_at=_EPOCH + timedelta(milliseconds=n),
            source="sap-s4hana",
            source_ref=f"MATDOC-{4_900_000_000 + n}-0001",
            sku=sku(item),
            warehouse=_WAREHOUSES[item % len(_WAREHOUSES)],
            quantity=Decimal(quantity),
            reason=rng.choice(_REASONS),
        )
        yield sku(item).encode(), encoder.encode(event)


async def create_topics(bootstrap: str, *names: str, partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        topics = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
        response = await admin.create_topics(topics, timeout_ms=30_000)
        errors = [err for err in response.topic_errors if err[1] != 0]
        if errors:
            raise RuntimeError(f"create_topics failed: {errors}")
    finally:
        await admin.close()


def traced(
    records: Iterator[tuple[bytes, bytes]], sampled: float, seed: int
) -> Iterator[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """``records`` with a producer's W3C ``traceparent`` each, ``sampled`` of them sampled."""
    rng = random.Random(seed)
    for key, value in records:
        flags = "01" if rng.random() < sampled else "00"
        parent = f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-{flags}"
        yield key, value, [("traceparent", parent.encode())]


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterator[tuple[bytes, bytes]] | Iterator[tuple[bytes, bytes, list[Any]]],
) -> int:
    """Write ``records`` (key, value[, headers]) to ``topic`` (acks=all); return the count."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=_BATCH_BYTES, linger_ms=5
    )
    await producer.start()
    count = 0
    try:
        await producer.partitions_for(topic)  # metadata first: send_batch needs it
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        sent: list[Any] = []  # asyncio futures of RecordMetadata
        for record in records:
            key, value = record[0], record[1]
            headers = record[2] if len(record) > 2 else []
            partition = partition_of(key)
            batch = batches[partition]
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                sent.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
            count += 1
            if len(sent) >= 64:
                for future in sent:
                    await future
                sent.clear()
        for partition, batch in batches.items():
            if batch.record_count():
                sent.append(await producer.send_batch(batch, topic, partition=partition))
        for future in sent:
            await future
    finally:
        await producer.stop()
    return count
