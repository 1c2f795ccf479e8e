"""Order capture on the real PostgreSQL and Kafka broker, against the SP-API simulator: every
order revision published once — through 429s, restarts mid-pagination, expired tokens,
late-visible orders, crashes before publishing, and a leader whose connection dies."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import aiohttp
import anyio
import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from config.settings import OrdersSettings, Secret
from devstack.sims.spapi.orders import ItemSpec, OrderChange, OrderSpec, Window
from devstack.sims.spapi.server import Faults, SpApiSimulator
from handlers.connectors.ratelimit import TokenBucket
from handlers.connectors.spapi.client import LwaTokenProvider, RetryPolicy, SpApiClient
from handlers.connectors.spapi.orders import OrdersClient, OrdersPage
from handlers.orders.capture import OrderCapture
from worker.store import create_pool, migrate, package_migrations

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET, REFRESH = "amzn1.application-oa2-client.t", "secret", "Atzr|seller"
SELLER, UK = "SELLER1", "A1F83G8C2ARO7P"
PARTITIONS = 3
#: The simulator's "before must be this old" rule, shrunk from 2 minutes; the poller settles
#: a little longer (as it does by 10 s against Amazon).
MIN_AGE, SETTLE = 1.0, 1.3
ONE_SEND = RetryPolicy(attempts=1)
CreateTopics = Callable[..., None]


class Recording:
    """An order source that records each search's page token and may stall one call."""

    def __init__(self, inner: OrdersClient, *, stall_at: int | None = None) -> None:
        self.inner, self.stall_at = inner, stall_at
        self.calls: list[dict[str, Any]] = []

    async def search_orders(self, **query: Any) -> OrdersPage:
        self.calls.append(query)
        if self.stall_at is not None and len(self.calls) >= self.stall_at:
            await anyio.sleep_forever()  # "crash" here: the test cancels the capture
        return await self.inner.search_orders(**query)


class StuckProducer:
    """A producer whose sends never complete (a crash before Kafka acknowledged)."""

    async def send_and_wait(self, *_args: Any, **_kwargs: Any) -> object:
        await anyio.sleep_forever()
        return None


@dataclass
class Stack:
    sim: SpApiSimulator
    pool: asyncpg.Pool
    client: OrdersClient
    producer: AIOKafkaProducer
    database_url: str
    bootstrap: str
    topic: str
    created: list[str] = field(default_factory=list)

    def capture(
        self,
        source: Any = None,
        *,
        pool: asyncpg.Pool | None = None,
        producer: Any = None,
        page_size: int = 100,
        **options: Any,
    ) -> OrderCapture:
        options.setdefault("overlap_seconds", 10.0)
        options.setdefault("settle_seconds", SETTLE)
        options.setdefault("follower_retry_seconds", 0.3)
        options.setdefault("lease_check_seconds", 0.5)
        settings = OrdersSettings(
            capture=True,
            seller_id=SELLER,
            marketplace_ids=[UK],
            capture_poll_seconds=0.2,
            capture_page_size=page_size,
            capture_lookback_seconds=3600.0,
        )
        return OrderCapture(
            pool or self.pool,
            source or self.client,
            producer or self.producer,
            self.topic,
            settings,
            **options,
        )

    def order(self, *items: ItemSpec, **fields: Any) -> str:
        fields.setdefault("marketplace_id", UK)
        order_id = self.sim.create_order(
            OrderSpec(items=list(items or [ItemSpec(seller_sku="A")]), **fields)
        )
        self.created.append(order_id)
        return order_id

    async def published(self) -> list[tuple[bytes, dict[str, Any]]]:
        return await read_topic(self.bootstrap, self.topic)

    async def outbox(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM skuflow_order_outbox"))

    async def page_token(self) -> str | None:
        token: str | None = await self.pool.fetchval(
            "SELECT page_token FROM skuflow_order_capture WHERE seller = $1", SELLER
        )
        return token

    async def cursor(self) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM skuflow_order_capture WHERE seller = $1", SELLER
        )
        assert row is not None
        return row


class Env(NamedTuple):
    database_url: str
    bootstrap: str
    topic: str


@pytest.fixture
def env(database_url: str, kafka_bootstrap: str, unique: str, create_topics: CreateTopics) -> Env:
    """A fresh database and a fresh orders topic on the session's broker."""
    topic = f"{unique}.orders"
    create_topics(topic, partitions=PARTITIONS)
    return Env(database_url, kafka_bootstrap, topic)


@asynccontextmanager
async def stack(
    env: Env, *, client_plan: tuple[float, int] = (1000.0, 1000), **knobs: Any
) -> AsyncIterator[Stack]:
    database_url, bootstrap, topic = env
    knobs.setdefault("min_before_age_seconds", MIN_AGE)
    # The tests poll every 0.2 s: Amazon's plan (a search per 3 min) only where a test says.
    knobs.setdefault("usage_plans", {"searchOrders": (100.0, 100)})
    sim = SpApiSimulator(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH,
        seller_id=SELLER,
        faults=Faults(**knobs),
        seed=11,
    )
    await sim.start()
    pool = await create_pool(database_url, max_size=5)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        await migrate(pool, capture_migrations())
        async with aiohttp.ClientSession() as session:
            tokens = LwaTokenProvider(
                sim.lwa_endpoint, CLIENT_ID, Secret(CLIENT_SECRET), Secret(REFRESH), session
            )
            # One send per call, as for searchOrders against Amazon (a token is 178 s there,
            # beyond the client's in-call retries): every 429 reaches the orders client.
            spapi = SpApiClient(
                sim.endpoint, tokens, session, TokenBucket(1000, 1000), 5.0, retry=ONE_SEND
            )
            client = OrdersClient(spapi, TokenBucket(*client_plan))
            yield Stack(sim, pool, client, producer, database_url, bootstrap, topic)
    finally:
        await producer.stop()
        await pool.close()
        await sim.stop()


def capture_migrations() -> list[Any]:
    """This module's migration only (the orders flow's own are not this test's subject)."""
    found = package_migrations("handlers.orders", "handlers")
    return [m for m in found if m.version == "0011_order_capture"]


@asynccontextmanager
async def running(*captures: OrderCapture) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for capture in captures:
            tg.start_soon(capture.run)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, Any]]]:
    """Every record now in ``topic``: (key, decoded value), per partition in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[tuple[bytes, dict[str, Any]]] = []
        with anyio.fail_after(20):
            while True:
                positions = [await consumer.position(tp) for tp in partitions]
                if all(at >= ends[tp] for at, tp in zip(positions, partitions, strict=True)):
                    break
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    out += [(r.key, msgspec.json.decode(r.value)) for r in records]
        return out
    finally:
        await consumer.stop()


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    try:
        with anyio.fail_after(timeout):
            while not await check():
                await anyio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def kinds(records: Sequence[tuple[bytes, dict[str, Any]]]) -> Counter[tuple[str, str]]:
    return Counter((value["order_id"], value["type"]) for _, value in records)


async def all_published(s: Stack, expected: Counter[tuple[str, str]]) -> None:
    async def done() -> bool:
        return kinds(await s.published()) >= expected and await s.outbox() == 0

    await until(done, f"{sum(expected.values())} events")


def once_each(records: Sequence[tuple[bytes, dict[str, Any]]]) -> None:
    ids = Counter(value["event_id"] for _, value in records)
    assert [i for i, n in ids.items() if n > 1] == []


async def crash_after_the_first_page(s: Stack) -> asyncpg.Record:
    """A capture that stops for good in its second search (pages of 10): its cursor then."""
    async with running(s.capture(Recording(s.client, stall_at=2), page_size=10)):

        async def first_page_committed() -> bool:
            return await s.page_token() is not None

        await until(first_page_committed, "the first page")
    return await s.cursor()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


# --- pages, quota, restarts ---


@pytest.mark.timeout(120)
def test_many_orders_over_several_pages_through_429s_are_all_published_once(env: Env) -> None:
    async def scenario() -> None:
        # Amazon grants 4 searches/s (burst 2); the client paces itself far faster.
        plans = {"searchOrders": (4.0, 2)}
        async with stack(env, usage_plans=plans) as s:
            for index in range(45):
                s.order(ItemSpec(seller_sku=f"SKU-{index}"), lag=float(45 - index) / 10)
            async with running(s.capture(page_size=10)):
                await all_published(s, Counter((o, "order.received") for o in s.created))
            records = await s.published()
            assert len(records) == 45
            once_each(records)
            statuses = Counter(r.status for r in s.sim.requests if r.operation == "searchOrders")
            assert statuses[429] > 0  # throttled, and nothing lost for it
            assert statuses[200] >= 5  # 45 orders, 10 a page
            assert s.client.throttles > 0
            assert all(key == value["order_id"].encode() for key, value in records)

    run(scenario)


@pytest.mark.timeout(120)
def test_a_restart_mid_pagination_continues_with_the_next_page(env: Env) -> None:
    async def scenario() -> None:
        async with stack(env) as s:
            for index in range(30):
                s.order(lag=float(30 - index) / 10)
            await anyio.sleep(SETTLE + 1)  # all in the first window (its end is whole seconds)
            saved = await crash_after_the_first_page(s)
            second = Recording(s.client)
            async with running(s.capture(second, page_size=10)):
                await all_published(s, Counter((o, "order.received") for o in s.created))
            resumed = second.calls[0]
            assert resumed["pagination_token"] == saved["page_token"]
            assert (resumed["last_updated_after"], resumed["last_updated_before"]) == (
                saved["window_after"],
                saved["window_before"],
            )
            records = await s.published()
            once_each(records)
            assert len(records) == 30

    run(scenario)


@pytest.mark.timeout(120)
def test_an_expired_page_token_restarts_its_window_from_its_start(env: Env) -> None:
    async def scenario() -> None:
        async with stack(env) as s:
            for index in range(30):
                s.order(lag=float(30 - index) / 10)
            await anyio.sleep(SETTLE + 1)
            saved = await crash_after_the_first_page(s)
            s.sim.expire_pagination_tokens()  # (the model: 24 h; the capture was down longer)
            second = Recording(s.client)
            async with running(s.capture(second, page_size=10)):
                await all_published(s, Counter((o, "order.received") for o in s.created))
            refused, again = second.calls[:2]
            assert refused["pagination_token"] == saved["page_token"]
            assert again["pagination_token"] is None
            assert again["last_updated_after"] == saved["window_after"]
            assert again["last_updated_before"] == saved["window_before"]
            searches = [r.status for r in s.sim.requests if r.operation == "searchOrders"]
            assert 400 in searches
            records = await s.published()
            assert len(records) == 30  # the first page's ten again, decided already: nothing
            once_each(records)

    run(scenario)


# --- the overlap ---


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overlap", [30.0, 0.0], ids=["within the overlap", "without one"])
def test_an_order_visible_only_after_the_cursor_passed_its_update_time_is_caught_by_the_overlap(
    env: Env, overlap: float
) -> None:
    async def scenario() -> None:
        async with stack(env) as s:
            capture = s.capture(overlap_seconds=overlap)
            async with running(capture):
                early = s.order(lag=0.0)
                await all_published(s, Counter({(early, "order.received"): 1}))
                # Its update was 20 s ago, but the search index shows it only now.
                late = s.order(lag=20.0)
                created = datetime.now(UTC)

                async def cursor_passed() -> bool:
                    return capture.cursor is not None and capture.cursor.reached > created

                await until(cursor_passed, "the cursor past the late order's visibility")
                if overlap:
                    await all_published(s, Counter({(late, "order.received"): 1}))
                else:
                    await anyio.sleep(1.0)
                    assert (late, "order.received") not in kinds(await s.published())

    run(scenario)


# --- revisions: received, changed, cancelled, replays ---


@pytest.mark.timeout(120)
def test_changes_and_cancellations_are_published_once_each_and_replays_publish_nothing(
    env: Env,
) -> None:
    async def scenario() -> None:
        async with stack(env) as s:
            priced = ItemSpec(
                seller_sku="ABC-123",
                quantity=2,
                unit_price=Decimal("19.99"),
                tax=Decimal("6.66"),
                promotion=Decimal("2.00"),
                reporting_scheme="UOSS",
                order_item_id="12345678901234",
            )
            ship_by = datetime(2026, 12, 1, 18, tzinfo=UTC)
            main = s.order(
                priced, currency_code="GBP", ship_by_window=Window(latest_date_time=ship_by)
            )
            fba = s.order(fulfilled_by="AMAZON")
            pending = s.order(fulfillment_status="PENDING")
            cancelled_first = s.order(fulfillment_status="CANCELLED")
            async with running(s.capture()):
                await all_published(s, Counter([(main, "order.received"), (fba, "order.received")]))
                s.sim.change_order(
                    main, OrderChange(items=[msgspec.structs.replace(priced, quantity=3)])
                )
                s.sim.change_order(pending, OrderChange(fulfillment_status="UNSHIPPED"))
                await all_published(
                    s, Counter([(main, "order.changed"), (pending, "order.received")])
                )
                s.sim.ship_order(fba)
                s.sim.cancel_order(main, reason="Buyer requested cancellation")
                await all_published(s, Counter([(fba, "order.changed"), (main, "order.cancelled")]))
                s.sim.change_order(main, OrderChange(items=[priced]))  # after the cancellation
                since: datetime = (await s.cursor())["reached"]

                async def two_more_windows() -> bool:
                    reached: datetime = (await s.cursor())["reached"]
                    return reached > since + timedelta(seconds=1)

                await until(two_more_windows, "two more windows")
            # Every revision read again from the start: nothing new to publish.
            await s.pool.execute(
                "UPDATE skuflow_order_capture SET reached = reached - interval '1 hour'"
            )
            replay = s.capture()
            async with running(replay):

                async def replayed() -> bool:
                    cursor = replay.cursor
                    return cursor is not None and cursor.reached > datetime.now(UTC) - timedelta(
                        seconds=SETTLE + 1
                    )

                await until(replayed, "the replayed hour")
            records = await s.published()
            once_each(records)
            assert kinds(records) == Counter(
                [
                    *((main, t) for t in ("order.received", "order.changed", "order.cancelled")),
                    *((fba, t) for t in ("order.received", "order.changed")),
                    (pending, "order.received"),  # not while PENDING (no prices yet)
                ]
            )  # and nothing for the order first seen CANCELLED
            assert cancelled_first not in {value["order_id"] for _, value in records}
            events = [value for key, value in records if value["order_id"] == main]
            received = next(e for e in events if e["type"] == "order.received")
            revision = s.sim.order_revision(main)
            assert revision is not None
            assert received == {
                "type": "order.received",
                "event_id": received["event_id"],
                "occurred_at": received["revision"],
                "source": "amazon",
                "source_ref": main,
                "channel": "amazon",
                "order_id": main,
                "marketplace_id": UK,
                "revision": received["revision"],
                "purchased_at": received["purchased_at"],
                "status": "UNSHIPPED",
                "fulfilled_by": "MERCHANT",
                "ship_by": "2026-12-01T18:00:00Z",
                "currency": "GBP",
                "warehouse": None,
                "lines": [
                    {
                        "order_item_id": "12345678901234",
                        "sku": "ABC-123",
                        "quantity": "2",
                        "unit_price": "19.99",
                        "item_tax": "6.66",
                        "promotion_discount": "2.00",
                        "tax_code": "UOSS",
                    }
                ],
            }
            stamp = datetime.fromisoformat(received["revision"])
            micros = (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            assert received["event_id"] == f"amazon-order-{main}-{micros}"
            fba_received = next(v for _, v in records if v["order_id"] == fba)
            assert fba_received["fulfilled_by"] == "AMAZON"
            cancelled = next(e for e in events if e["type"] == "order.cancelled")
            assert cancelled["reason"] == "Buyer requested cancellation"
            # Per order, the events are in revision order (one key, one partition).
            for order_id in (main, fba):
                stamps = [v["revision"] for _, v in records if v["order_id"] == order_id]
                assert stamps == sorted(stamps, key=datetime.fromisoformat)

    run(scenario)


# --- leadership, crashes ---


@pytest.mark.timeout(120)
def test_two_pollers_for_one_seller_only_one_polls_and_the_other_takes_over_from_a_dead_leader(
    env: Env,
) -> None:
    async def scenario() -> None:
        async with stack(env) as s:
            other_pool = await create_pool(env.database_url, max_size=5)
            sources = [Recording(s.client), Recording(s.client)]
            pollers = [s.capture(sources[0]), s.capture(sources[1], pool=other_pool)]
            try:
                async with running(*pollers):

                    async def one_leads() -> bool:
                        return any(p.leading for p in pollers)

                    await until(one_leads, "a leader")
                    for _ in range(10):
                        s.order()
                    await all_published(s, Counter((o, "order.received") for o in s.created))
                    leader = next(i for i, p in enumerate(pollers) if p.leading)
                    follower = 1 - leader
                    assert not pollers[follower].leading
                    assert sources[follower].calls == []  # it never polled
                    # The leader's lock connection dies: it stops; the other one takes over.
                    killed = await s.pool.fetchval(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND granted AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                    assert killed

                    async def handed_over() -> bool:
                        return pollers[follower].leading and not pollers[leader].leading

                    await until(handed_over, "the follower leading")
                    calls_then = len(sources[leader].calls)
                    first = s.created[0]
                    s.sim.change_order(
                        first, OrderChange(items=[ItemSpec(seller_sku="A", quantity=2)])
                    )
                    for _ in range(10):
                        s.order()
                    expected = Counter((o, "order.received") for o in s.created)
                    expected[first, "order.changed"] += 1
                    await all_published(s, expected)
                    assert len(sources[leader].calls) == calls_then  # deposed: polls no more
                    assert sources[follower].calls
            finally:
                await other_pool.close()
            records = await s.published()
            once_each(records)
            assert kinds(records) == expected

    run(scenario)


@pytest.mark.timeout(120)
def test_events_written_to_the_outbox_before_a_crash_are_published_on_restart(env: Env) -> None:
    async def scenario() -> None:
        async with stack(env) as s:
            for _ in range(12):
                s.order()
            async with running(s.capture(producer=StuckProducer(), send_timeout=0.5)):

                async def written() -> bool:
                    return await s.outbox() == 12

                await until(written, "the outbox")
            assert await s.published() == []  # the crash came before Kafka had any of them
            async with running(s.capture()):
                await all_published(s, Counter((o, "order.received") for o in s.created))
            records = await s.published()
            assert len(records) == 12
            once_each(records)

    run(scenario)
