"""The embedded stack itself: real Kafka round trips, commit metadata, PostgreSQL, kcat interop."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import OffsetMetadataTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata

from devstack.kcat import kcat_path, kcat_produce
from tests.conftest import CreateTopics

pytestmark = pytest.mark.integration


async def _consume(bootstrap: str, topic: str, partitions: int, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        records: list[Any] = []
        async with asyncio.timeout(20):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for batch_records in batch.values():
                    records.extend(batch_records)
        return records
    finally:
        await consumer.stop()


@pytest.mark.timeout(60, func_only=True)
def test_produce_consume_round_trip(
    kafka_bootstrap: str, unique: str, create_topics: CreateTopics
) -> None:
    topic = f"{unique}.stock"
    create_topics(topic, partitions=3)

    async def scenario() -> list[Any]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(
                    topic,
                    json.dumps({"sku": f"sku-{i % 3}", "qty": i}).encode(),
                    key=f"sku-{i % 3}".encode(),
                    headers=[("source", b"test")],
                )
        finally:
            await producer.stop()
        return await _consume(kafka_bootstrap, topic, 3, 10)

    records = asyncio.run(scenario())
    assert len(records) == 10
    by_key: dict[bytes, list[int]] = {}
    for record in records:
        assert record.headers == (("source", b"test"),)
        value = json.loads(record.value)
        by_key.setdefault(record.key, []).append(value["qty"])
    assert by_key == {b"sku-0": [0, 3, 6, 9], b"sku-1": [1, 4, 7], b"sku-2": [2, 5, 8]}


@pytest.mark.timeout(60, func_only=True)
def test_commit_metadata_round_trips_through_admin(
    kafka_bootstrap: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=2)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    # the engine stores the in-flight offset map of a partition in the commit metadata
    offset_map = json.dumps({"done": list(range(1000, 1300, 3)), "v": 1}, separators=(",", ":"))

    async def scenario() -> tuple[int, dict[TopicPartition, OffsetAndMetadata]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
        )
        await admin.start()
        try:
            node_id = (await admin.describe_cluster())["brokers"][0]["node_id"]
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.BROKER, str(node_id))]
            )
            configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
            max_bytes = int(configs["offset.metadata.max.bytes"])

            await consumer.start()
            consumer.assign([tp0, tp1])
            await consumer.commit({tp0: OffsetAndMetadata(1000, offset_map)})
            await consumer.commit({tp1: OffsetAndMetadata(7, "x" * max_bytes)})
            with pytest.raises(OffsetMetadataTooLargeError):
                await consumer.commit({tp1: OffsetAndMetadata(8, "x" * (max_bytes + 1))})
            return max_bytes, await admin.list_consumer_group_offsets(group)
        finally:
            await consumer.stop()
            await admin.close()

    max_bytes, offsets = asyncio.run(scenario())
    assert max_bytes == 4096  # Kafka's default; the broker checks String.length() (UTF-16 units)
    assert offsets[tp0] == OffsetAndMetadata(1000, offset_map)
    assert offsets[tp1] == OffsetAndMetadata(7, "x" * max_bytes)


@pytest.mark.timeout(30, func_only=True)
def test_fresh_postgres_database(database_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")

    async def scenario() -> tuple[str, int, list[str]]:
        conn = await asyncpg.connect(database_url)
        try:
            tables = await conn.fetchval(
                "select count(*) from information_schema.tables where table_schema = 'public'"
            )
            await conn.execute("create table t (sku text primary key, qty int not null)")
            await conn.executemany("insert into t values ($1, $2)", [("a", 1), ("b", 2)])
            rows = await conn.fetch("select sku from t order by sku")
            return await conn.fetchval("select current_database()"), tables, [r[0] for r in rows]
        finally:
            await conn.close()

    assert asyncio.run(scenario()) == (name, 0, ["a", "b"])


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.skipif(kcat_path() is None, reason="kcat not installed (apt-get install kcat)")
def test_kcat_produces_keys_and_headers_with_the_java_partitioner(
    kafka_bootstrap: str, unique: str, create_topics: CreateTopics
) -> None:
    topic = f"{unique}.in"
    create_topics(topic, partitions=6)
    lines = [(f"sku-{i}", json.dumps({"sku": f"sku-{i}", "qty": i})) for i in range(12)]
    kcat_produce(kafka_bootstrap, topic, lines, {"source": "kcat", "trace": "t-1"})

    records = asyncio.run(_consume(kafka_bootstrap, topic, 6, len(lines)))
    partitioner = DefaultPartitioner()
    got = {}
    for record in records:
        key: bytes = record.key
        assert record.headers == (("source", b"kcat"), ("trace", b"t-1"))
        # same partition aiokafka (murmur2) would choose for this key
        assert record.partition == partitioner(key, list(range(6)), list(range(6)))
        got[key.decode()] = record.value.decode()
    assert got == dict(lines)
