"""The engine on the real broker and database: order, no loss, handover, poison, drain."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import anyio
import asyncpg
import msgspec
import pytest

from tests.support.recording import Recorder, TestEvent, encode, random_latency
from tests.support.stack import produce, read_all, running_worker, settings_for, wait_for
from worker.messages import Message
from worker.outcomes import Outcome, Park, Retry

pytestmark = [pytest.mark.integration]

CreateTopics = Callable[..., None]


def _events(count: int, skus: int, seed: int = 7) -> list[tuple[str, int]]:
    """``count`` events over ``skus`` SKUs; seq is the per-SKU production order."""
    rng = random.Random(seed)
    next_seq: dict[str, int] = defaultdict(int)
    events = []
    for _ in range(count):
        sku = f"SKU-{rng.randrange(skus):05d}"
        events.append((sku, next_seq[sku]))
        next_seq[sku] += 1
    return events


def _records(events: list[tuple[str, int]]) -> list[tuple[bytes | None, bytes]]:
    return [(sku.encode(), encode(sku, seq)) for sku, seq in events]


def _per_sku(handled: list[tuple[str, int, int, int, int]]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = defaultdict(list)
    for sku, seq, _partition, _offset, _stamp in handled:
        seen[sku].append(seq)
    return seen


@pytest.mark.timeout(300)
def test_100k_events_over_2k_skus_keep_per_sku_order_while_a_second_worker_joins_and_leaves(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=6)
    events = _events(100_000, 2_000)

    # Bounded concurrency and 0-10 ms handlers keep the run long enough (~15 s) for a member
    # to join, take a share and leave while events are still flowing.
    first = Recorder("first", latency=random_latency(0.010, seed=1))
    second = Recorder("second", latency=random_latency(0.010, seed=2))
    settings = settings_for(kafka_bootstrap, database_url, group, topic, max_in_flight=32)

    async def main() -> None:
        async with running_worker(settings, first.router()):
            await produce(kafka_bootstrap, topic, _records(events))
            await wait_for(lambda: len(first.handled) > 10_000, 120, "first worker progress")
            async with running_worker(settings, second.router()) as joined:
                await wait_for(lambda: len(second.handled) > 5_000, 120, "second worker share")
                assert joined.engine is not None
                assert joined.engine.assignment()
            # The second worker left (drained, committed); the first takes everything back.
            await wait_for(
                lambda: len(first.handled) + len(second.handled) >= len(events), 180, "all"
            )

    anyio.run(main)

    handled = first.handled + second.handled
    expected = _per_sku([(sku, seq, 0, 0, 0) for sku, seq in events])
    # Nothing lost and nothing applied twice: graceful handovers commit what was done.
    assert sorted((h[0], h[1]) for h in handled) == sorted(events)
    assert len(second.handled) > 5_000
    assert len(first.handled) + len(second.handled) == len(events)
    # Per SKU, effects happened in production order, across both handovers too.
    for sku, seqs in _per_sku(sorted(handled, key=lambda h: h[4])).items():
        assert seqs == expected[sku], f"{sku} reordered"


@pytest.mark.timeout(120)
def test_poison_payloads_become_exceptions_and_dead_letters_while_the_partition_moves_on(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, f"{topic}.dlq", partitions=1)
    poison = [
        (b"A", b"\xff\xfe not utf-8"),
        (b"A", b'{"type": "test.event", "event_id": "x"'),  # truncated JSON
        (b"A", b'{"type": "test.event", "event_id": "x", "sku": "A", "seq": "one"}'),
        (b"A", b'{"type": "no.such.type", "event_id": "x"}'),
        (None, b"[]"),
        (b"A", b'{"event_id": "x", "sku": "A", "seq": 1}'),
    ]
    good = [(b"A", encode("A", 0)), (b"B", encode("B", 0))]
    recorder = Recorder()
    settings = settings_for(kafka_bootstrap, database_url, group, topic)

    async def main() -> list[asyncpg.Record]:
        async with running_worker(settings, recorder.router()):
            await produce(kafka_bootstrap, topic, [good[0], *poison, good[1]])
            await wait_for(lambda: len(recorder.handled) == 2, 60, "good events")
            pool = await asyncpg.connect(database_url)
            try:
                await wait_for_rows(pool, len(poison))
                return list(
                    await pool.fetch(
                        'SELECT kind, reason, "offset", key FROM skuflow_exceptions '
                        'ORDER BY "offset"'
                    )
                )
            finally:
                await pool.close()

    rows = anyio.run(main)
    assert [r["kind"] for r in rows] == [
        "undecodable",
        "undecodable",
        "schema_violation",
        "unknown_type",
        "schema_violation",
        "unknown_type",
    ]
    assert "$.seq" in rows[2]["reason"]
    dead = anyio.run(read_all, kafka_bootstrap, f"{topic}.dlq", len(poison))
    # Keyless records run in their own lane, so dead letters are compared in offset order.
    dead.sort(key=lambda d: int(d[2]["skuflow.original.offset"]))
    assert [d[0] for d in dead] == [p[0] for p in poison]
    assert [d[1] for d in dead] == [p[1] for p in poison]
    for _key, _value, headers in dead:
        assert {
            "skuflow.error.kind",
            "skuflow.error.reason",
            "skuflow.original.topic",
            "skuflow.original.partition",
            "skuflow.original.offset",
        } <= set(headers)
        assert headers["skuflow.original.topic"] == topic.encode()


async def wait_for_rows(conn: asyncpg.Connection, count: int) -> None:
    with anyio.fail_after(30):
        while await conn.fetchval("SELECT count(*) FROM skuflow_exceptions") < count:
            await anyio.sleep(0.05)


@pytest.mark.timeout(120)
def test_a_retrying_event_blocks_its_sku_but_not_others_and_a_parked_one_lets_it_move_on(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=1)
    attempts: dict[tuple[str, int], int] = defaultdict(int)

    async def flaky(event: TestEvent, _message: Message) -> Outcome | None:
        attempts[(event.sku, event.seq)] += 1
        if event.sku == "RETRY" and event.seq == 0 and attempts[("RETRY", 0)] < 3:
            return Retry("ERP record locked", after=0.3)
        if event.sku == "PARK" and event.seq == 0:
            return Park("marketplace outage", next_attempt_at=datetime.now(UTC))
        return None

    recorder = Recorder(before=flaky)
    settings = settings_for(kafka_bootstrap, database_url, group, topic)
    records = [
        (b"RETRY", encode("RETRY", 0)),
        (b"RETRY", encode("RETRY", 1)),
        (b"PARK", encode("PARK", 0)),
        (b"PARK", encode("PARK", 1)),
        (b"OTHER", encode("OTHER", 0)),
    ]

    async def main() -> int:
        async with running_worker(settings, recorder.router()):
            await produce(kafka_bootstrap, topic, records)
            await wait_for(lambda: len(recorder.handled) == 4, 30, "handled")
            conn = await asyncpg.connect(database_url)
            try:
                return int(await conn.fetchval("SELECT count(*) FROM skuflow_parked"))
            finally:
                await conn.close()

    parked = anyio.run(main)
    order = [(sku, seq) for sku, seq, *_ in recorder.handled]
    # RETRY/1 waited behind RETRY/0's retries; OTHER and PARK/1 did not wait for them.
    assert order.index(("RETRY", 0)) < order.index(("RETRY", 1))
    assert order.index(("OTHER", 0)) < order.index(("RETRY", 0))
    assert order.index(("PARK", 1)) < order.index(("RETRY", 0))
    assert attempts[("RETRY", 0)] == 3
    assert ("PARK", 0) not in order
    assert parked == 1


@pytest.mark.timeout(120)
def test_an_outage_of_a_dependency_is_waited_out_and_never_uses_up_the_events_attempts(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    """Regression (chaos: PostgreSQL restarted mid-run): handler failures caused by a dependency
    being down counted toward max_attempts and turned valid events into retries_exhausted."""
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=1)
    calls: dict[str, int] = defaultdict(int)

    async def outage(event: TestEvent, _message: Message) -> Outcome | None:
        calls[event.sku] += 1
        if calls[event.sku] <= 5:  # more failures than max_attempts (3)
            if event.sku == "DB":
                raise ConnectionRefusedError("connect call failed ('127.0.0.1', 5432)")
            if event.sku == "ERP":
                return Retry("ERP master data unavailable", after=0.01, dependency=True)
        return None

    recorder = Recorder(before=outage)
    settings = settings_for(
        kafka_bootstrap, database_url, group, topic,
        max_attempts=3, retry_initial_seconds=0.01, retry_max_seconds=0.05,
    )  # fmt: skip
    records = [(b"DB", encode("DB", 0)), (b"ERP", encode("ERP", 0)), (b"DB", encode("DB", 1))]

    async def main() -> int:
        async with running_worker(settings, recorder.router()):
            await produce(kafka_bootstrap, topic, records)
            await wait_for(lambda: len(recorder.handled) == 3, 30, "handled")
            conn = await asyncpg.connect(database_url)
            try:
                return int(await conn.fetchval("SELECT count(*) FROM skuflow_exceptions"))
            finally:
                await conn.close()

    exceptions = anyio.run(main)
    assert exceptions == 0
    assert [(sku, seq) for sku, seq, *_ in recorder.handled if sku == "DB"] == [
        ("DB", 0),
        ("DB", 1),
    ]
    assert calls["DB"] == 7  # 5 refused + DB/0 + DB/1
    assert calls["ERP"] == 6


@pytest.mark.timeout(180)
def test_a_backlog_far_beyond_the_buffer_is_consumed_with_bounded_buffers_and_pauses(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=3)
    events = _events(30_000, 3_000)
    budget, fetch = 1_000, 200
    recorder = Recorder(latency=random_latency(0.004, seed=3))
    settings = settings_for(
        kafka_bootstrap,
        database_url,
        group,
        topic,
        max_buffered_messages=budget,
        fetch_max_records=fetch,
        max_in_flight=64,
    )
    peak_buffered = 0
    paused_seen = 0

    async def main() -> None:
        nonlocal peak_buffered, paused_seen
        await produce(kafka_bootstrap, topic, _records(events))
        async with running_worker(settings, recorder.router()) as worker:
            with anyio.fail_after(150):
                while len(recorder.handled) < len(events):
                    engine = worker.engine
                    if engine is not None:
                        peak_buffered = max(peak_buffered, engine.buffered)
                        paused_seen = max(paused_seen, engine.paused_partitions)
                    await anyio.sleep(0.01)

    anyio.run(main)
    # One fetch may land on top of a full budget; never more.
    assert budget <= peak_buffered <= budget + 3 * fetch
    assert paused_seen == 3
    assert sorted((h[0], h[1]) for h in recorder.handled) == sorted(events)


@pytest.mark.timeout(120)
def test_a_worker_blocked_past_max_poll_interval_with_a_full_buffer_keeps_its_partitions(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A long outage of what the handlers write to fills the buffer and pauses every
    partition; the consumer must still count as polling, or after ``max_poll_interval_ms`` the
    Kafka client leaves the group and hands every partition away."""
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=2)
    events = _events(400, 40)
    max_poll_interval_ms = 1_500
    released: list[anyio.Event] = []

    async def hold(_event: TestEvent, _message: Message) -> Outcome | None:
        await released[0].wait()  # the outage
        return None

    caplog.set_level(logging.INFO, logger="skuflow.engine")
    recorder = Recorder(before=hold)
    settings = settings_for(
        kafka_bootstrap, database_url, group, topic,
        max_buffered_messages=50, fetch_max_records=50, max_in_flight=8,
    )  # fmt: skip
    settings = msgspec.structs.replace(
        settings,
        kafka=msgspec.structs.replace(settings.kafka, max_poll_interval_ms=max_poll_interval_ms),
    )

    async def main() -> None:
        released.append(anyio.Event())
        await produce(kafka_bootstrap, topic, _records(events))
        async with running_worker(settings, recorder.router()) as worker:

            def full() -> bool:
                engine = worker.engine
                return (
                    engine is not None and engine.buffered >= 50 and engine.paused_partitions == 2
                )

            await wait_for(full, 60, "a full buffer, every partition paused")
            engine = worker.engine
            assert engine is not None
            buffered, before = engine.buffered, len(caplog.records)
            # Three poll intervals with every partition paused and every runner blocked. A
            # consumer that left its group has its queued work discarded at once (the
            # revocation's log line comes only once the blocked runners give up).
            await anyio.sleep(3 * max_poll_interval_ms / 1000)
            assert engine.buffered == buffered, "the consumer left its group"
            assert engine.paused_partitions == 2
            revoked = [
                r for r in caplog.records[before:]
                if r.name == "skuflow.engine" and r.getMessage() == "partitions revoked"
            ]  # fmt: skip
            assert not revoked
            assert not recorder.handled
            released[0].set()
            await wait_for(lambda: len(recorder.handled) >= len(events), 60, "every event")

    anyio.run(main)
    assert sorted((h[0], h[1]) for h in recorder.handled) == sorted(events)
