"""An independent client (kcat / librdkafka) produces; the engine consumes it correctly."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import anyio
import pytest
from aiokafka.partitioner import DefaultPartitioner

from devstack.kcat import kcat_path, kcat_produce
from tests.support.recording import Recorder, TestEvent, encode
from tests.support.stack import running_worker, settings_for, wait_for
from worker.messages import Message
from worker.outcomes import Outcome

pytestmark = [pytest.mark.integration]

CreateTopics = Callable[..., None]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.timeout(120)
def test_events_produced_by_kcat_are_consumed_in_per_sku_order_with_their_headers(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    assert kcat_path() is not None, "kcat is installed by `make test` (make tools)"
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=6)
    events = [(f"SKU-{i % 40:02d}", i // 40) for i in range(2_000)]
    lines = [(sku, encode(sku, seq).decode()) for sku, seq in events]
    kcat_produce(kafka_bootstrap, topic, lines, {"traceparent": TRACEPARENT, "source": "kcat"})

    seen_headers: list[dict[str, bytes]] = []

    async def capture(_event: TestEvent, message: Message) -> Outcome | None:
        seen_headers.append(dict(message.headers))
        return None

    recorder = Recorder(before=capture)
    settings = settings_for(kafka_bootstrap, database_url, group, topic)

    async def main() -> None:
        async with running_worker(settings, recorder.router()):
            await wait_for(lambda: len(recorder.handled) == len(events), 60, "all events")

    anyio.run(main)
    per_sku: dict[str, list[int]] = defaultdict(list)
    offsets: dict[str, list[int]] = defaultdict(list)
    for sku, seq, _partition, offset, _stamp in recorder.handled:
        per_sku[sku].append(seq)
        offsets[sku].append(offset)
    for sku, seqs in per_sku.items():
        assert offsets[sku] == sorted(offsets[sku]), f"{sku} handled out of offset order"
        assert seqs == sorted(seqs), f"{sku} out of order: {seqs} at offsets {offsets[sku]}"
    assert sum(len(s) for s in per_sku.values()) == len(events)
    for headers in seen_headers:
        assert headers["traceparent"] == TRACEPARENT.encode()
    # With murmur2 (as the README tells producers), kcat agrees with the Java/aiokafka clients.
    partitions = {sku: {p for s, _q, p, *_ in recorder.handled if s == sku} for sku in per_sku}
    partitioner = DefaultPartitioner()
    for sku, found in partitions.items():
        assert found == {partitioner(sku.encode(), list(range(6)), list(range(6)))}


@pytest.mark.timeout(60)
def test_librdkafkas_default_partitioner_splits_keys_differently_from_murmur2(
    kafka_bootstrap: str, unique: str, create_topics: CreateTopics
) -> None:
    """The trap the README warns about: mixed producers put one SKU on two partitions."""
    topic = f"{unique}.stock"
    create_topics(topic, partitions=6)
    keys = [f"SKU-{i:02d}" for i in range(12)]
    kcat_produce(kafka_bootstrap, topic, [(k, "{}") for k in keys], partitioner=None)
    recorder_partitions = anyio.run(_partitions_by_key, kafka_bootstrap, topic, len(keys))
    partitioner = DefaultPartitioner()
    murmur = {k: partitioner(k.encode(), list(range(6)), list(range(6))) for k in keys}
    assert any(recorder_partitions[k] != murmur[k] for k in keys)


async def _partitions_by_key(bootstrap: str, topic: str, count: int) -> dict[str, int]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: dict[str, int] = {}
    try:
        with anyio.fail_after(30):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        assert record.key is not None
                        found[record.key.decode()] = record.partition
    finally:
        await consumer.stop()
    return found
