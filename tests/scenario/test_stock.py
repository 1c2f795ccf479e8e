"""User stories of stock adjustments: real Kafka, real PostgreSQL, an ERP simulator.

Each story runs twice, against SAP Business One and against SAP ECC (the ``erp`` fixture,
:mod:`tests.support.erps`): the real worker wired by ``erp.kind``, with the real stock handler,
window flusher and connector, against a protocol-faithful Service Layer or an ECC applying
IDocs out of sequence and in parallel. Each ends with an independent check in the ERP's own
books: the simulator's stock per item and location equals the opening stock plus every valid
adjustment, and no posting key is held twice. Where the ERPs answer differently (a lock, a
collision, a frozen item), each run checks its own ERP's answer.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio
import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from config.settings import Settings, StockSettings
from handlers.stock.events import StockAdjusted
from skuflow.app import Worker
from tests.support.erps import ERP_KINDS, ErpUnderTest, erp_under_test
from tests.support.stack import produce, settings_for, wait_for
from worker.exceptions import ExceptionStore, republish

pytestmark = [pytest.mark.scenario]

CreateTopics = Callable[..., None]
ITEMS = [f"A{i:04d}" for i in range(40)]
LOCATIONS = ("LOC-01", "LOC-02")
OPENING = 1_000


@pytest.fixture(params=ERP_KINDS)
def erp(request: pytest.FixtureRequest) -> ErpUnderTest:
    """The ERP the story posts to: each story runs once per ERP."""
    return erp_under_test(request.param, LOCATIONS)


def adjustment(n: int, sku: str, location: str, quantity: int, **extra: Any) -> tuple[bytes, bytes]:
    event = StockAdjusted(
        event_id=f"adj-{n}", occurred_at=datetime.now(UTC), source="ims",
        source_ref=f"IMS-ADJ-{n}", sku=sku, warehouse=location,
        quantity=Decimal(quantity), reason="count", **extra,
    )  # fmt: skip
    return sku.encode(), msgspec.json.encode(event)


def valid_traffic(
    count: int, seed: int
) -> tuple[list[tuple[bytes, bytes]], dict[tuple[str, str], int]]:
    """Random adjustments that never take stock below zero; and the expected net per place."""
    rng = random.Random(seed)
    expected: dict[tuple[str, str], int] = defaultdict(int)
    records = []
    for n in range(count):
        sku, location = rng.choice(ITEMS), rng.choice(LOCATIONS)
        quantity = rng.choice([-3, -2, -1, 1, 2, 5])
        expected[(sku, location)] += quantity
        records.append(adjustment(n, sku, location, quantity))
    return records, expected


class Stack:
    def __init__(self, worker: Worker, pool: asyncpg.Pool) -> None:
        self.worker = worker
        self.pool = pool

    async def settled_lines(self) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM skuflow_stock_lines "
                "WHERE state IN ('posted', 'settled', 'rejected')"
            )
        )

    async def exception_kinds(self) -> Counter[str]:
        rows = await self.pool.fetch("SELECT kind FROM skuflow_exceptions")
        return Counter(r["kind"] for r in rows)

    async def exception_reasons(self, kind: str) -> list[str]:
        rows = await self.pool.fetch("SELECT reason FROM skuflow_exceptions WHERE kind = $1", kind)
        return [str(r["reason"]) for r in rows]


def assert_stock(erp: ErpUnderTest, expected: dict[tuple[str, str], int]) -> None:
    """The ERP's stock of every item at every location is its opening stock plus ``expected``."""
    for item in ITEMS:
        for location in LOCATIONS:
            want = OPENING + expected.get((item, location), 0)
            assert erp.stock(item, location) == want, (erp.kind, item, location)


def assert_no_duplicate_documents(erp: ErpUnderTest) -> None:
    keys = Counter(erp.document_keys())
    assert all(count == 1 for count in keys.values()), keys.most_common(3)


@asynccontextmanager
async def stock_stack(
    settings: Settings,
    erp: ErpUnderTest,
    *,
    timeout: float = 30.0,
    window_seconds: float = 1.0,
    replicas: int = 1,
) -> AsyncIterator[Stack]:
    for item in ITEMS:
        erp.add_item(item, dict.fromkeys(LOCATIONS, OPENING))
    erp.add_item("OLD", {"LOC-01": 5}, valid=False)
    erp.add_item("LOT", {"LOC-01": 5}, batches=True)
    await erp.start()
    try:
        settings = msgspec.structs.replace(
            erp.configure(settings, timeout=timeout),
            stock=StockSettings(
                window_seconds=window_seconds, window_max_lines=200, retry_max_seconds=4.0
            ),
        )
        workers = [Worker(settings) for _ in range(replicas)]  # replicas: one group, one database
        async with anyio.create_task_group() as tg:
            for worker in workers:
                await tg.start(worker.run)
            assert workers[0].pool is not None
            try:
                yield Stack(workers[0], workers[0].pool)
            finally:
                for worker in workers:
                    worker.request_stop()
    finally:
        await erp.stop()


def _settings(bootstrap: str, database_url: str, unique: str) -> Settings:
    return settings_for(bootstrap, database_url, f"{unique}.group", f"{unique}.stock")


async def _until_settled(stack: Stack, count: int, timeout: float = 90) -> None:
    with anyio.fail_after(timeout):
        while await stack.settled_lines() < count:
            await anyio.sleep(0.2)


@pytest.mark.timeout(180)
def test_valid_adjustments_post_as_few_documents_and_ghost_stock_becomes_exceptions(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    erp: ErpUnderTest,
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    records, expected = valid_traffic(3_000, seed=1)
    bad = [
        adjustment(90_001, "NOT-AN-ITEM", "LOC-01", 1),  # unknown SKU: ghost stock
        adjustment(90_002, "OLD", "LOC-01", -1),  # inactive item
        adjustment(90_003, ITEMS[0], "LOC-99", 1),  # unmapped location
        adjustment(90_004, "LOT", "LOC-01", -1),  # batch-managed, no batch
    ]

    async def main() -> Counter[str]:
        async with stock_stack(settings, erp) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, [*records, *bad])
            await _until_settled(stack, len(records))
            await wait_for(lambda: len(erp.document_keys()) > 0, 10, "documents")
            return await stack.exception_kinds()

    kinds = anyio.run(main)
    assert_stock(erp, expected)
    assert_no_duplicate_documents(erp)
    assert kinds == Counter(
        {"unknown_sku": 1, "inactive_item": 1, "unmapped_warehouse": 1, "missing_batch": 1}
    )
    # summarised: far fewer ERP documents than movements
    assert len(erp.document_keys()) * 20 < len(records)


@pytest.mark.timeout(240)
def test_a_lock_storm_and_ambiguous_timeouts_still_end_with_exact_stock_and_no_duplicates(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    erp: ErpUnderTest,
) -> None:
    """Postings refused as locked (B1 -2039; ECC IDoc status 51 M3 897) and postings whose
    answer never arrives although the ERP applied them (B1: answered after the 1 s client
    timeout; ECC: the IDoc stored, the connection cut)."""
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    records, expected = valid_traffic(2_000, seed=2)
    erp.lock_storm()
    erp.lose_answers()

    async def main() -> None:
        async with stock_stack(settings, erp, timeout=1.0) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, records)
            await _until_settled(stack, len(records), timeout=180)

    anyio.run(main)
    assert_stock(erp, expected)
    assert_no_duplicate_documents(erp)
    assert erp.locks() > 0
    assert erp.lost_answers() > 0


@pytest.mark.timeout(120)
def test_a_burst_of_collisions_is_waited_out_without_exceptions_or_bisection(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    erp: ErpUnderTest,
) -> None:
    """Answers that refuse a document without any line being at fault. B1's -2035 "This entry
    already exists" names no line: it used to bisect each document down to single lines, each
    an erp_rejected exception (60 movements, 60 exceptions). ECC's equivalent is IDoc status
    51 M3 897 "The plant data of the material ... is locked": it names a material, but the line
    is not bad — taken for a rejection, that line would become an exception."""
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    records, expected = valid_traffic(60, seed=4)
    erp.collide_next(4)

    async def main() -> Counter[str]:
        async with stock_stack(settings, erp) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, records)
            await _until_settled(stack, len(records))
            return await stack.exception_kinds()

    kinds = anyio.run(main)
    assert kinds == Counter()
    assert erp.collisions() == 4
    assert_stock(erp, expected)
    assert_no_duplicate_documents(erp)
    assert not any("." in key for key in erp.sent_keys())  # never split into slices


@pytest.mark.timeout(180)
def test_one_bad_line_does_not_hold_back_the_rest_of_its_document(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    erp: ErpUnderTest,
) -> None:
    """An item frozen between staging and posting (B1: ``Frozen``, refused with code -10; ECC:
    a plant status, IDoc status 51 M7 162): only its line is refused, with the ERP's code."""
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    records, expected = valid_traffic(400, seed=3)
    frozen = ITEMS[5]
    # The frozen item's movements are rejected where they net to something; where they net to
    # zero they post nothing and are settled without the ERP.
    doomed = sum(
        1
        for _key, value in records
        for event in [msgspec.json.decode(value, type=StockAdjusted)]
        if event.sku == frozen and expected[(frozen, event.warehouse)] != 0
    )

    async def main() -> list[str]:
        async with stock_stack(settings, erp, window_seconds=4.0) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, records)
            with anyio.fail_after(30):  # all validated and staged while the item was fine ...
                while await stack.pool.fetchval("SELECT count(*) FROM skuflow_stock_lines") < len(
                    records
                ):
                    await anyio.sleep(0.05)
            erp.freeze(frozen)  # ... then frozen before its window posts
            await _until_settled(stack, len(records))
            return await stack.exception_reasons("erp_rejected")

    reasons = anyio.run(main)
    assert doomed > 0
    assert len(reasons) == doomed
    assert all(erp.frozen_refusal in reason and frozen in reason for reason in reasons), reasons[0]
    for location in LOCATIONS:
        expected.pop((frozen, location), None)  # nothing of the frozen item was posted
    assert_stock(erp, expected)
    assert_no_duplicate_documents(erp)


@pytest.mark.timeout(180)
def test_a_rejected_movement_is_posted_after_the_item_is_fixed_and_the_exception_retried(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    erp: ErpUnderTest,
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    item = ITEMS[7]
    records = [adjustment(1, item, "LOC-01", -4)]

    async def main() -> list[str]:
        async with stock_stack(settings, erp, window_seconds=4.0) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, records)
            with anyio.fail_after(30):
                while not await stack.pool.fetchval("SELECT count(*) FROM skuflow_stock_lines"):
                    await anyio.sleep(0.05)
            erp.freeze(item)
            await _until_settled(stack, 1)
            exception_id = await stack.pool.fetchval("SELECT id FROM skuflow_exceptions")
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                # Retried too early (the item is still frozen): refused again, and the same
                # record is open again — one record per problem.
                await republish(ExceptionStore(stack.pool), producer, [int(exception_id)])
                with anyio.fail_after(60):
                    while (
                        await stack.pool.fetchval(
                            "SELECT attempts > 1 AND status = 'open' FROM skuflow_exceptions "
                            "WHERE id = $1",
                            exception_id,
                        )
                        is not True
                    ):
                        await anyio.sleep(0.1)
                assert await stack.pool.fetchval("SELECT count(*) FROM skuflow_exceptions") == 1
                erp.freeze(item, frozen=False)  # the ERP's master data is fixed
                await republish(ExceptionStore(stack.pool), producer, [int(exception_id)])
            finally:
                await producer.stop()
            with anyio.fail_after(60):
                while erp.stock(item, "LOC-01") != OPENING - 4:
                    await anyio.sleep(0.1)
            with anyio.fail_after(10):
                while (
                    status := await stack.pool.fetchval(
                        "SELECT status FROM skuflow_exceptions WHERE id = $1", exception_id
                    )
                ) != "resolved":
                    await anyio.sleep(0.1)
            return [status]

    statuses = anyio.run(main)
    assert statuses == ["resolved"]
    assert_no_duplicate_documents(erp)


@pytest.mark.timeout(180)
def test_two_replicas_never_have_two_postings_for_one_item_in_flight(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    erp: ErpUnderTest,
) -> None:
    """Both replicas flush (one flusher per warehouse across the group, by advisory lock), and
    the same items move in both warehouses: without item locks shared through PostgreSQL, two
    documents for one item would be in flight at once — B1 answers that with -2039, ECC
    applying two IDocs of one material at once with 51 M3 897 (its plant data locked)."""
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    rng = random.Random(7)
    hot = ITEMS[:4]  # few items, both warehouses: every window touches all of them
    expected: dict[tuple[str, str], int] = defaultdict(int)
    records = []
    for n in range(1_200):
        sku, location = rng.choice(hot), rng.choice(LOCATIONS)
        quantity = rng.choice([-1, 1, 2])
        expected[(sku, location)] += quantity
        records.append(adjustment(n, sku, location, quantity))
    erp.hold_items(40)  # a document holds its items for 40 ms, as the ERP's transaction does

    async def main() -> Stack:
        async with stock_stack(settings, erp, window_seconds=0.2, replicas=2) as stack:
            # the check is real: two documents for one item at once, one is refused
            assert await erp.post_twice_at_once(ITEMS[5], "LOC-01") == ["locked", "ok"]
            assert erp.conflicts() == 1
            erp.forget_conflicts()
            for start in range(0, len(records), 150):  # bursts: many windows in both warehouses
                await produce(kafka_bootstrap, settings.topics.stock, records[start : start + 150])
                await anyio.sleep(0.3)
            await _until_settled(stack, len(records))
            assert stack.worker.engine is not None
            assert stack.worker.engine.assignment()  # (the other replica holds the rest)
            return stack

    anyio.run(main)
    assert erp.conflicts() == 0
    expected[(ITEMS[5], "LOC-01")] += 1  # the probe's one document
    assert_stock(erp, expected)
    assert_no_duplicate_documents(erp)
    assert len(set(erp.document_keys())) >= 12  # many windows, in both warehouses
