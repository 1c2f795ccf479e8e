"""User stories of stock adjustments: real Kafka, real PostgreSQL, the SAP B1 simulator.

Each test runs the real worker with the real stock handler, window flusher and B1 connector
against a protocol-faithful Service Layer, and ends with an independent check: the simulator's
stock per item and warehouse equals the opening stock plus every valid adjustment.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import anyio
import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from config.settings import B1Settings, MappingsSettings, Secret, Settings, StockSettings
from devstack.sims.b1.server import B1Simulator
from handlers.connectors.b1.client import b1_client_from_settings
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.ports.erp import DocumentLine, ErpLocked, StockDocument
from handlers.stock.events import StockAdjusted
from skuflow.app import Worker
from tests.support.stack import produce, settings_for, wait_for
from worker.exceptions import ExceptionStore, republish

pytestmark = [pytest.mark.scenario]

CreateTopics = Callable[..., None]
ITEMS = [f"A{i:04d}" for i in range(40)]
WAREHOUSES = {"LOC-01": "01", "LOC-02": "02"}
OPENING = 1_000


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
        sku, location = rng.choice(ITEMS), rng.choice(list(WAREHOUSES))
        quantity = rng.choice([-3, -2, -1, 1, 2, 5])
        expected[(sku, WAREHOUSES[location])] += quantity
        records.append(adjustment(n, sku, location, quantity))
    return records, expected


class Stack:
    def __init__(self, sim: B1Simulator, worker: Worker, pool: asyncpg.Pool) -> None:
        self.sim = sim
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

    def assert_stock(self, expected: dict[tuple[str, str], int]) -> None:
        for item in ITEMS:
            for warehouse in WAREHOUSES.values():
                want = OPENING + expected.get((item, warehouse), 0)
                assert self.sim.stock(item, warehouse) == want, (item, warehouse)

    def assert_no_duplicate_documents(self) -> None:
        keys = Counter(doc.body.get("JournalMemo") for doc in self.sim.documents)
        assert all(count == 1 for count in keys.values()), keys.most_common(3)


@asynccontextmanager
async def stock_stack(
    settings: Settings,
    *,
    faults: dict[str, Any] | None = None,
    timeout: float = 30.0,
    window_seconds: float = 1.0,
    replicas: int = 1,
) -> AsyncIterator[Stack]:
    sim = B1Simulator(password="b1-secret")
    await sim.start()
    sim.set_faults(**{"conflict_window_ms": 0, **(faults or {})})
    for item in ITEMS:
        sim.add_item(item, stock={code: OPENING for code in WAREHOUSES.values()})
    sim.add_item("OLD", valid=False, stock={"01": 5})
    sim.add_item("LOT", batches=True, stock={"01": 5})
    settings = msgspec.structs.replace(
        settings,
        b1=B1Settings(url=sim.url, password=Secret("b1-secret"), timeout_seconds=timeout),
        mappings=MappingsSettings(warehouses=WAREHOUSES),
        stock=StockSettings(
            window_seconds=window_seconds, window_max_lines=200, retry_max_seconds=4.0
        ),
    )
    workers = [Worker(settings) for _ in range(replicas)]  # replicas: one group, one database
    try:
        async with anyio.create_task_group() as tg:
            for worker in workers:
                await tg.start(worker.run)
            assert workers[0].pool is not None
            try:
                yield Stack(sim, workers[0], workers[0].pool)
            finally:
                for worker in workers:
                    worker.request_stop()
    finally:
        await sim.stop()


def _settings(bootstrap: str, database_url: str, unique: str) -> Settings:
    return settings_for(bootstrap, database_url, f"{unique}.group", f"{unique}.stock")


async def _until_settled(stack: Stack, count: int, timeout: float = 90) -> None:
    with anyio.fail_after(timeout):
        while await stack.settled_lines() < count:
            await anyio.sleep(0.2)


@pytest.mark.timeout(180)
def test_valid_adjustments_post_as_few_documents_and_ghost_stock_becomes_exceptions(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
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

    async def main() -> tuple[Counter[str], int, Stack]:
        async with stock_stack(settings) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, [*records, *bad])
            await _until_settled(stack, len(records))
            await wait_for(lambda: len(stack.sim.documents) > 0, 10, "documents")
            return await stack.exception_kinds(), len(stack.sim.documents), stack

    kinds, documents, stack = anyio.run(main)
    stack.assert_stock(expected)
    stack.assert_no_duplicate_documents()
    assert kinds == Counter(
        {"unknown_sku": 1, "inactive_item": 1, "unmapped_warehouse": 1, "missing_batch": 1}
    )
    assert documents * 20 < len(records)  # summarised: far fewer ERP writes than movements


@pytest.mark.timeout(240)
def test_a_lock_storm_and_ambiguous_timeouts_still_end_with_exact_stock_and_no_duplicates(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    records, expected = valid_traffic(2_000, seed=2)
    faults = {
        "lock_storm_rate": 0.3,  # 30% of postings refused as locked
        "timeout_after_apply_ms": 2_500,  # applied, answered after the client gave up ...
        "timeout_after_apply_rate": 0.2,  # ... for a fifth of the postings
    }

    async def main() -> Stack:
        async with stock_stack(settings, faults=faults, timeout=1.0) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, records)
            await _until_settled(stack, len(records), timeout=180)
            return stack

    stack = anyio.run(main)
    stack.assert_stock(expected)
    stack.assert_no_duplicate_documents()
    locked = sum(1 for r in stack.sim.requests if r.status == 400 and "Inventory" in r.operation)
    assert locked > 0


@pytest.mark.timeout(120)
def test_a_burst_of_2035_answers_is_waited_out_without_exceptions_or_bisection(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    """B1's -2035 "This entry already exists" names no line: it used to bisect each document
    down to single lines, each an erp_rejected exception (60 movements, 60 exceptions)."""
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    records, expected = valid_traffic(60, seed=4)

    async def main() -> tuple[Stack, Counter[str]]:
        async with stock_stack(settings, faults={"collision_count": 4}) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, records)
            await _until_settled(stack, len(records))
            return stack, await stack.exception_kinds()

    stack, kinds = anyio.run(main)
    assert kinds == Counter()
    assert stack.sim.collisions == 4
    stack.assert_stock(expected)
    stack.assert_no_duplicate_documents()
    posts = [r for r in stack.sim.requests if r.method == "POST" and "Inventory" in r.operation]
    assert not any("." in r.body["JournalMemo"] for r in posts)  # never split into slices


@pytest.mark.timeout(180)
def test_one_bad_line_does_not_hold_back_the_rest_of_its_document(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
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
        if event.sku == frozen and expected[(frozen, WAREHOUSES[event.warehouse])] != 0
    )

    async def main() -> tuple[Stack, Counter[str]]:
        async with stock_stack(settings, window_seconds=4.0) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, records)
            with anyio.fail_after(30):  # all validated and staged while the item was fine ...
                while await stack.pool.fetchval("SELECT count(*) FROM skuflow_stock_lines") < len(
                    records
                ):
                    await anyio.sleep(0.05)
            stack.sim.update_item(frozen, frozen=True)  # ... then frozen before its window posts
            await _until_settled(stack, len(records))
            return stack, await stack.exception_kinds()

    stack, kinds = anyio.run(main)
    assert doomed > 0
    assert kinds == Counter({"erp_rejected": doomed})
    for warehouse in WAREHOUSES.values():
        expected.pop((frozen, warehouse), None)  # nothing of the frozen item was posted
    stack.assert_stock(expected)
    stack.assert_no_duplicate_documents()


@pytest.mark.timeout(180)
def test_a_rejected_movement_is_posted_after_the_item_is_fixed_and_the_exception_retried(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    item = ITEMS[7]
    records = [adjustment(1, item, "LOC-01", -4)]

    async def main() -> tuple[Stack, list[str]]:
        async with stock_stack(settings, window_seconds=4.0) as stack:
            await produce(kafka_bootstrap, settings.topics.stock, records)
            with anyio.fail_after(30):
                while not await stack.pool.fetchval("SELECT count(*) FROM skuflow_stock_lines"):
                    await anyio.sleep(0.05)
            stack.sim.update_item(item, frozen=True)
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
                stack.sim.update_item(item, frozen=False)  # the ERP's master data is fixed
                await republish(ExceptionStore(stack.pool), producer, [int(exception_id)])
            finally:
                await producer.stop()
            with anyio.fail_after(60):
                while stack.sim.stock(item, "01") != OPENING - 4:
                    await anyio.sleep(0.1)
            with anyio.fail_after(10):
                while (
                    status := await stack.pool.fetchval(
                        "SELECT status FROM skuflow_exceptions WHERE id = $1", exception_id
                    )
                ) != "resolved":
                    await anyio.sleep(0.1)
            return stack, [status]

    stack, statuses = anyio.run(main)
    assert statuses == ["resolved"]
    stack.assert_no_duplicate_documents()


@pytest.mark.timeout(180)
def test_two_replicas_never_have_two_postings_for_one_item_in_flight(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    """Both replicas flush (one flusher per warehouse across the group, by advisory lock), and
    the same items move in both warehouses: without item locks shared through PostgreSQL, two
    documents for one item would be in flight at once — B1 answers that with -2039."""
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    rng = random.Random(7)
    hot = ITEMS[:4]  # few items, both warehouses: every window touches all of them
    expected: dict[tuple[str, str], int] = defaultdict(int)
    records = []
    for n in range(1_200):
        sku, location = rng.choice(hot), rng.choice(list(WAREHOUSES))
        quantity = rng.choice([-1, 1, 2])
        expected[(sku, WAREHOUSES[location])] += quantity
        records.append(adjustment(n, sku, location, quantity))
    faults = {"post_ms": 40}  # a document holds its items for 40 ms, as B1's transaction does

    async def main() -> Stack:
        async with stock_stack(settings, faults=faults, window_seconds=0.2, replicas=2) as stack:
            # the check is real: two documents for one item at once are refused
            await _concurrent_postings_conflict(stack.sim)
            stack.sim.held_conflicts = 0
            for start in range(0, len(records), 150):  # bursts: many windows in both warehouses
                await produce(kafka_bootstrap, settings.topics.stock, records[start : start + 150])
                await anyio.sleep(0.3)
            await _until_settled(stack, len(records))
            assert stack.worker.engine is not None
            assert stack.worker.engine.assignment()  # (the other replica holds the rest)
            return stack

    stack = anyio.run(main)
    assert stack.sim.held_conflicts == 0
    expected[(ITEMS[5], "01")] += 1  # the probe's one document
    stack.assert_stock(expected)
    stack.assert_no_duplicate_documents()
    postings = {doc.body.get("JournalMemo") for doc in stack.sim.documents}
    assert len(postings) >= 12  # many windows, in both warehouses


async def _concurrent_postings_conflict(sim: B1Simulator) -> None:
    """Two documents for one item sent at once: the second is refused (ODBC -2039)."""
    session = aiohttp.ClientSession()
    b1 = B1Settings(url=sim.url, password=Secret("b1-secret"))
    erp = B1Erp(b1_client_from_settings(b1, session, key_field=KEY_FIELD))
    try:
        line = DocumentLine(
            item_code=ITEMS[5], warehouse_code="01", quantity=Decimal(1), sources=("probe",)
        )
        results = []

        async def post(key: str) -> None:
            document = StockDocument(kind="entry", key=key, lines=(line,), remarks=key)
            try:
                await erp.post_document(document)
                results.append("ok")
            except ErpLocked:
                results.append("locked")

        async with anyio.create_task_group() as tg:
            tg.start_soon(post, "PROBE1")
            tg.start_soon(post, "PROBE2")
        assert sorted(results) == ["locked", "ok"]
        assert sim.held_conflicts == 1
    finally:
        await session.close()
