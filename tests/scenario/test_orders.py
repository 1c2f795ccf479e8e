"""User stories of Amazon orders into the ERP and back: real Kafka, real PostgreSQL, the SP-API
simulator and an ERP simulator, the real worker (both classes, the order flow's background work).

Each story runs once per ERP (the ``erp`` fixture, :mod:`tests.support.order_erps`): SAP Business
One and SAP ECC through the real wiring (``erp.kind``), ECC taking its ORDERS IDocs
asynchronously. Each produces contract events (``order.received`` / ``order.changed`` /
``order.cancelled``, ``dispatch.confirmed``, ``return.received``) and checks the ERP's documents
at the simulator and what the warehouse was told on ``topics.released``. What skuflow publishes,
its ledger and its exceptions are the same words for both ERPs; where the ERPs differ (the text
of a hold, a credit note following a return, returns stock), each run expects its own ERP's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from config.settings import OrdersSettings, Secret, Settings, SpApiSettings
from devstack.sims.spapi.orders import ItemSpec, OrderSpec
from devstack.sims.spapi.server import SpApiSimulator
from handlers.dispatch.events import DispatchConfirmed, DispatchLine
from handlers.orders.events import (
    OrderCancelled,
    OrderChanged,
    OrderLine,
    OrderReceived,
    ReturnLine,
    ReturnReceived,
)
from skuflow.app import Worker
from tests.support.erps import ERP_KINDS
from tests.support.events import MARKETPLACE
from tests.support.order_erps import OrderErp, order_erp
from tests.support.stack import produce, settings_for, wait_for
from worker.exceptions import ExceptionStore, republish

pytestmark = [pytest.mark.scenario]

CreateTopics = Callable[..., None]
CLIENT_ID, CLIENT_SECRET, REFRESH = "amzn1.application-oa2-client.sim", "sim-secret", "Atzr|sim"
UK, DE = MARKETPLACE, "A1PA6795UKMFR9"
LOCATIONS = ("LOC-01", "LOC-DMG")  # the warehouse's stock, and where damaged returns go
ITEMS = ("A1", "A2")
OPENING = 100  # of each item at LOC-01
CUSTOMERS = {UK: "C-UK", "*": "C-DE"}
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=ERP_KINDS)
def erp(request: pytest.FixtureRequest) -> OrderErp:
    """The ERP the orders go to: each story runs once per ERP."""
    stock = {"LOC-01": OPENING, "LOC-DMG": 0}
    return order_erp(request.param, LOCATIONS, dict.fromkeys(ITEMS, stock), CUSTOMERS.values())


def order_event(
    order_id: str,
    lines: list[tuple[str, str, int]],
    *,
    revision: int = 0,
    marketplace: str = UK,
    price: str = "10.00",
    event: type[OrderReceived] = OrderReceived,
) -> bytes:
    """An order of ``lines`` (order item id, SKU, quantity) at ``price`` each."""
    return msgspec.json.encode(
        event(
            event_id=f"ord-{order_id}-{revision}", occurred_at=T0, source="amazon",
            source_ref=order_id, channel="amazon", order_id=order_id, marketplace_id=marketplace,
            revision=T0 + timedelta(minutes=revision), purchased_at=T0, currency="GBP",
            warehouse="LOC-01", ship_by=datetime.now(UTC) + timedelta(days=2),
            lines=[
                OrderLine(order_item_id=i, sku=s, quantity=Decimal(q), unit_price=Decimal(price))
                for i, s, q in lines
            ],
        )
    )  # fmt: skip


def cancel_event(order_id: str, revision: int) -> bytes:
    return msgspec.json.encode(
        OrderCancelled(
            event_id=f"cxl-{order_id}-{revision}", occurred_at=T0, source="amazon",
            source_ref=order_id, channel="amazon", order_id=order_id, marketplace_id=UK,
            revision=T0 + timedelta(minutes=revision), reason="buyer cancelled",
        )
    )  # fmt: skip


def dispatch_event(order_id: str, package: str, lines: list[tuple[str, str, int]]) -> bytes:
    return msgspec.json.encode(
        DispatchConfirmed(
            event_id=f"dsp-{order_id}-{package}", occurred_at=datetime.now(UTC), source="seko",
            source_ref=f"SEKO-{order_id}-{package}", channel="amazon", order_id=order_id,
            marketplace_id=UK, ship_by=datetime.now(UTC) + timedelta(days=1),
            ship_date=datetime.now(UTC), carrier_code="Royal Mail",
            tracking_number=f"RM{order_id}{package}",
            package_reference_id=package, warehouse="LOC-01",
            lines=[DispatchLine(order_item_id=i, sku=s, quantity=Decimal(q)) for i, s, q in lines],
        )
    )  # fmt: skip


def return_event(order_id: str, ref: str, lines: list[tuple[str, int, str]]) -> bytes:
    return msgspec.json.encode(
        ReturnReceived(
            event_id=f"ret-{ref}", occurred_at=datetime.now(UTC), source="wms",
            source_ref=ref, channel="amazon", order_id=order_id, warehouse="LOC-01",
            return_ref=ref,
            lines=[ReturnLine(sku=s, quantity=Decimal(q), condition=c) for s, q, c in lines],  # type: ignore[arg-type]
        )
    )  # fmt: skip


class Released:
    """Everything published on ``topics.released``, read as it comes."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.events: list[dict[str, Any]] = []

    async def run(self) -> None:
        await self._consumer.start()
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    self.events.extend(msgspec.json.decode(r.value) for r in records)
        finally:
            await self._consumer.stop()

    def of(self, order_id: str) -> list[str]:
        return [e["type"] for e in self.events if e["order_id"] == order_id]


class OrderStack:
    def __init__(
        self, erp: OrderErp, spapi: SpApiSimulator, worker: Worker, released: Released
    ) -> None:
        self.erp, self.spapi, self.worker, self.released = erp, spapi, worker, released
        assert worker.pool is not None
        self.pool: asyncpg.Pool = worker.pool

    async def state(self, order_id: str) -> str | None:
        value = await self.pool.fetchval(
            "SELECT state FROM skuflow_orders WHERE order_id = $1", order_id
        )
        return None if value is None else str(value)

    async def holds(self, order_id: str) -> list[str]:
        value = await self.pool.fetchval(
            "SELECT holds FROM skuflow_orders WHERE order_id = $1", order_id
        )
        return list(value or [])

    async def until_state(self, order_id: str, *states: str, timeout: float = 30) -> None:
        async def reached() -> bool:
            return await self.state(order_id) in states

        await self.until(reached, timeout)

    async def until(self, condition: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
        """Wait for ``await condition()``; on timeout say what the ledger and exceptions hold."""
        deadline = anyio.current_time() + timeout
        while not await condition():
            if anyio.current_time() > deadline:
                rows = await self.pool.fetch(
                    "SELECT kind, reason FROM skuflow_exceptions ORDER BY id"
                )
                docs = await self.pool.fetch(
                    "SELECT order_id, kind, state, last_error FROM skuflow_order_documents"
                )
                orders = await self.pool.fetch(
                    "SELECT order_id, state, holds, last_error FROM skuflow_orders"
                )
                raise AssertionError(
                    f"{self.erp.kind}: timed out; exceptions {[tuple(r) for r in rows]}; "
                    f"documents {[tuple(d) for d in docs]}; orders {[tuple(o) for o in orders]}"
                )
            await anyio.sleep(0.1)

    async def until_released(self, order_id: str, events: list[str]) -> None:
        async def published() -> bool:
            return self.released.of(order_id) == events

        await self.until(published, 30)

    async def until_exception(self, kind: str, timeout: float = 60) -> None:
        async def recorded() -> bool:
            return (await self.exceptions())[kind] >= 1

        await self.until(recorded, timeout)

    async def until_documents(self, order_id: str, *expected: tuple[str, str]) -> None:
        """Wait until the ledger holds exactly ``expected`` (kind, state) for the order."""

        async def there() -> bool:
            return sorted(await self.documents(order_id)) == sorted(expected)

        await self.until(there)

    async def exceptions(self) -> Counter[str]:
        rows = await self.pool.fetch("SELECT kind FROM skuflow_exceptions WHERE status = 'open'")
        return Counter(r["kind"] for r in rows)

    async def documents(self, order_id: str) -> list[tuple[str, str]]:
        rows = await self.pool.fetch(
            "SELECT kind, state FROM skuflow_order_documents WHERE order_id = $1 ORDER BY id",
            order_id,
        )
        return [(r["kind"], r["state"]) for r in rows]


@asynccontextmanager
async def order_stack(
    settings: Settings, bootstrap: str, erp: OrderErp, **orders: Any
) -> AsyncIterator[OrderStack]:
    spapi = SpApiSimulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH)
    await erp.start()
    await spapi.start()
    try:
        settings = msgspec.structs.replace(
            erp.configure(settings, timeout=5),
            spapi=SpApiSettings(
                endpoint=spapi.endpoint, lwa_endpoint=spapi.lwa_endpoint, client_id=CLIENT_ID,
                client_secret=Secret(CLIENT_SECRET), refresh_token=Secret(REFRESH),
                shared_rate_limit=False,
            ),
            orders=OrdersSettings(**{
                "default_customers": CUSTOMERS, "watch_seconds": 0.5,
                "window_seconds": 0.5, "retry_max_seconds": 2.0,
                "return_locations": {"damaged": "LOC-DMG"}, **orders,
            }),
        )  # fmt: skip
        released = Released(bootstrap, settings.topics.released)
        worker = Worker(settings)
        async with anyio.create_task_group() as tg:
            tg.start_soon(released.run)
            await tg.start(worker.run)
            try:
                yield OrderStack(erp, spapi, worker, released)
            finally:
                worker.request_stop()
                tg.cancel_scope.cancel()
    finally:
        await spapi.stop()
        await erp.stop()


def _settings(bootstrap: str, database_url: str, unique: str, create: CreateTopics) -> Settings:
    base = settings_for(bootstrap, database_url, f"{unique}.group", f"{unique}.stock")
    topics = msgspec.structs.replace(
        base.topics,
        orders=f"{unique}.orders",
        returns=f"{unique}.returns",
        released=f"{unique}.released",
    )
    settings = msgspec.structs.replace(base, topics=topics)
    create(
        topics.stock, topics.dispatch, topics.dead_letter, topics.orders, topics.returns,
        topics.released,
    )  # fmt: skip
    return settings


def _key(order_id: str) -> bytes:
    return order_id.encode()


@pytest.mark.timeout(120)
def test_an_order_on_credit_hold_reaches_the_warehouse_only_once_the_erp_releases_it(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics,
    erp: OrderErp,
) -> None:  # fmt: skip
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)
    topic = settings.topics.orders

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap, erp) as stack:
            erp.hold_new_orders("C-UK")
            await produce(kafka_bootstrap, topic, [
                (_key("UK-1"), order_event("UK-1", [("i1", "A1", 1)])),
                (_key("DE-1"), order_event("DE-1", [("i1", "A2", 1)], marketplace=DE)),
            ])  # fmt: skip
            await stack.until_released("DE-1", ["order.released"])
            await stack.until_state("UK-1", "in_erp")

            async def held_by_the_erp() -> bool:
                return await stack.holds("UK-1") == [erp.customer_hold]

            await stack.until(held_by_the_erp, 30)
            # several watch cycles later the held order is still not in the warehouse's topic
            await anyio.sleep(3)
            assert stack.released.of("UK-1") == []
            assert await stack.state("UK-1") == "in_erp"
            assert len(erp.orders("UK-1")) == 1
            erp.release_orders("C-UK")
            await stack.until_released("UK-1", ["order.released"])
            # the ERP puts a released order on hold: the warehouse is told to stop picking it
            erp.put_on_hold("DE-1")
            await wait_for(lambda: stack.released.of("DE-1")[-1:] == ["order.held"], 30, "held")
            erp.lift_hold("DE-1")
            await wait_for(lambda: len(stack.released.of("DE-1")) == 3, 30, "released again")
            await anyio.sleep(1.5)  # nothing more comes
            assert stack.released.of("DE-1") == ["order.released", "order.held", "order.released"]
            assert stack.released.of("UK-1") == ["order.released"]
            held = [e for e in stack.released.events if e["type"] == "order.held"]
            assert held[0]["holds"] == [erp.order_hold], held

    anyio.run(main)


@pytest.mark.timeout(120)
def test_an_order_awaiting_approval_is_released_once_approved_and_never_created_twice(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics,
    erp: OrderErp,
) -> None:  # fmt: skip
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)
    topic = settings.topics.orders

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap, erp) as stack:
            erp.require_approval(above=Decimal(100))
            big = order_event("UK-BIG", [("i1", "A1", 20)])
            replayed = [
                (_key("UK-BIG"), big),
                (_key("UK-BIG"), big),  # a redelivery
                (_key("UK-BIG"), order_event("UK-BIG", [("i1", "A1", 20)], revision=1,
                                             event=OrderChanged)),  # a status-only revision
            ]  # fmt: skip
            await produce(kafka_bootstrap, topic, replayed)
            await stack.until_state("UK-BIG", "in_erp")

            async def awaiting() -> bool:
                return await stack.holds("UK-BIG") == [erp.approval_hold]

            await stack.until(awaiting, 30)
            await anyio.sleep(2)
            assert stack.released.of("UK-BIG") == []
            assert erp.awaiting_approval("UK-BIG") == 1
            erp.approve("UK-BIG")
            await stack.until_released("UK-BIG", ["order.released"])
            (order,) = erp.orders("UK-BIG")
            (event,) = [e for e in stack.released.events if e["order_id"] == "UK-BIG"]
            assert event["erp_order"] == order.number
            assert event["lines"] == [{"order_item_id": "i1", "sku": "A1", "quantity": 20}]

    anyio.run(main)


@pytest.mark.timeout(150)
def test_partial_and_multi_package_shipments_deliver_and_invoice_exactly_what_shipped(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics,
    erp: OrderErp,
) -> None:  # fmt: skip
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap, erp) as stack:
            lines = [("i1", "A1", 3), ("i2", "A2", 1)]
            stack.spapi.add_order("UK-2", UK, datetime.now(UTC) + timedelta(days=1), lines)
            await produce(kafka_bootstrap, settings.topics.orders,
                          [(_key("UK-2"), order_event("UK-2", lines))])  # fmt: skip
            await stack.until_released("UK-2", ["order.released"])
            dispatch = settings.topics.dispatch
            await produce(kafka_bootstrap, dispatch, [
                (_key("UK-2"), dispatch_event("UK-2", "1", [("i1", "A1", 2)])),
                (_key("UK-2"), dispatch_event("UK-2", "2", [("i1", "A1", 1), ("i2", "A2", 1)])),
                (_key("UK-2"), dispatch_event("UK-2", "1", [("i1", "A1", 2)])),  # redelivered
            ])  # fmt: skip
            posted = ("delivery", "posted"), ("invoice", "posted")
            await stack.until_documents("UK-2", *posted, *posted)
            one, two = Decimal(1), Decimal(2)
            assert sorted(erp.deliveries()) == [[("A1", one), ("A2", one)], [("A1", two)]]
            assert erp.invoices() == 2
            assert erp.stock("A1", "LOC-01") == OPENING - 3
            assert erp.stock("A2", "LOC-01") == OPENING - 1
            (order,) = erp.orders("UK-2")
            assert order.closed
            # a package beyond what was ordered: the ERP's refusal, no silent skip
            await produce(
                kafka_bootstrap,
                dispatch,
                [(_key("UK-2"), dispatch_event("UK-2", "3", [("i1", "A1", 1)]))],
            )
            await stack.until_exception("erp_rejected")
            assert len(erp.deliveries()) == 2
            assert erp.stock("A1", "LOC-01") == OPENING - 3

    anyio.run(main)


@pytest.mark.timeout(150)
def test_a_cancellation_cancels_the_erp_order_before_shipment_and_is_an_exception_after(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics,
    erp: OrderErp,
) -> None:  # fmt: skip
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)
    topic = settings.topics.orders

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap, erp) as stack:
            stack.spapi.add_order("UK-S", UK, datetime.now(UTC) + timedelta(days=1),
                                  [("i1", "A1", 1)])  # fmt: skip
            await produce(kafka_bootstrap, topic, [
                (_key("UK-C"), order_event("UK-C", [("i1", "A1", 1)])),
                (_key("UK-S"), order_event("UK-S", [("i1", "A1", 1)])),
            ])  # fmt: skip
            await stack.until_released("UK-C", ["order.released"])
            await stack.until_released("UK-S", ["order.released"])
            await produce(
                kafka_bootstrap,
                settings.topics.dispatch,
                [(_key("UK-S"), dispatch_event("UK-S", "1", [("i1", "A1", 1)]))],
            )

            async def shipped() -> bool:
                return ("delivery", "posted") in await stack.documents("UK-S")

            await stack.until(shipped)
            await produce(kafka_bootstrap, topic, [
                (_key("UK-C"), cancel_event("UK-C", 5)),
                (_key("UK-S"), cancel_event("UK-S", 5)),
            ])  # fmt: skip
            await stack.until_state("UK-C", "cancelled")
            (order,) = erp.orders("UK-C")
            assert order.cancelled
            # the warehouse had been told to pick it: it is told to stop
            await wait_for(lambda: stack.released.of("UK-C")[-1:] == ["order.held"], 30, "stop")
            await stack.until_exception("order_cancel_after_ship", 30)
            (kept,) = erp.orders("UK-S")
            assert not kept.cancelled

    anyio.run(main)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("erp", [*ERP_KINDS, "ecc-653"], indirect=True)
def test_returns_are_linked_to_their_delivery_and_an_unmatched_return_is_an_exception(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics,
    erp: OrderErp,
) -> None:  # fmt: skip
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap, erp) as stack:
            stack.spapi.add_order("UK-R", UK, datetime.now(UTC) + timedelta(days=1),
                                  [("i1", "A1", 3)])  # fmt: skip
            await produce(kafka_bootstrap, settings.topics.orders,
                          [(_key("UK-R"), order_event("UK-R", [("i1", "A1", 3)]))])  # fmt: skip
            await stack.until_released("UK-R", ["order.released"])
            await produce(
                kafka_bootstrap,
                settings.topics.dispatch,
                [(_key("UK-R"), dispatch_event("UK-R", "1", [("i1", "A1", 3)]))],
            )
            shipped = [("delivery", "posted"), ("invoice", "posted")]
            await stack.until_documents("UK-R", *shipped)
            assert erp.stock("A1", "LOC-01") == OPENING - 3
            await produce(kafka_bootstrap, settings.topics.returns, [
                (_key("UK-R"), return_event("UK-R", "RMA-1", [("A1", 1, "sellable")])),
                (_key("UK-R"), return_event("UK-R", "RMA-2", [("A1", 1, "damaged")])),
                (_key("UK-R"), return_event("UK-R", "RMA-1", [("A1", 1, "sellable")])),  # again
                (_key("NOPE"), return_event("NOPE", "RMA-9", [("A1", 1, "sellable")])),
            ])  # fmt: skip
            # B1 credits invoiced goods in the return itself; ECC follows it with a credit memo
            credited = [] if erp.return_credits else [("credit_note", "posted")] * 2
            await stack.until_documents("UK-R", *shipped, *[("return", "posted")] * 2, *credited)
            await stack.until_exception("return_unmatched")
            await anyio.sleep(1.5)  # nothing more is posted
            assert erp.credits() == 2
            # each returned unit is back where its condition says: pickable, or blocked
            # returns stock where the ERP takes returns in so (ECC 651)
            back = 1 if erp.returns_unrestricted else 0
            assert erp.stock("A1", "LOC-01") == OPENING - 3 + back
            assert erp.blocked_returns("A1", "LOC-01") == 1 - back
            assert erp.stock("A1", "LOC-DMG") == back
            assert erp.blocked_returns("A1", "LOC-DMG") == 1 - back
            kinds = await stack.exceptions()
            assert kinds == Counter({"return_unmatched": 1}), kinds

    anyio.run(main)


@pytest.mark.timeout(120)
def test_an_unmapped_order_is_an_exception_and_the_others_are_not_affected(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics,
    erp: OrderErp,
) -> None:  # fmt: skip
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap, erp) as stack:
            await produce(kafka_bootstrap, settings.topics.orders, [
                (_key("UK-X"), order_event("UK-X", [("i1", "NOT-AN-ITEM", 1)])),
                (_key("UK-OK"), order_event("UK-OK", [("i1", "A1", 1)])),
            ])  # fmt: skip
            await stack.until_released("UK-OK", ["order.released"])
            await stack.until_exception("unknown_sku", 30)
            assert erp.orders("UK-X") == []
            assert await stack.state("UK-X") is None

    anyio.run(main)


@pytest.mark.timeout(120)
def test_an_order_the_erp_refuses_is_an_exception_and_retried_once_the_erp_is_fixed(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics,
    erp: OrderErp,
) -> None:  # fmt: skip
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap, erp) as stack:
            erp.refuse_orders("C-DE")
            await produce(kafka_bootstrap, settings.topics.orders, [
                (_key("DE-R"), order_event("DE-R", [("i1", "A1", 1)], marketplace=DE)),
                (_key("UK-F"), order_event("UK-F", [("i1", "A1", 1)])),
            ])  # fmt: skip
            await stack.until_released("UK-F", ["order.released"])
            await stack.until_exception("erp_rejected")
            assert await stack.state("DE-R") == "failed"
            assert erp.orders("DE-R") == []
            erp.accept_orders("C-DE")
            store = ExceptionStore(stack.pool)
            ids = await store.ids("open")
            assert len(ids) == 1
            async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
                await republish(store, producer, ids)
            await stack.until_released("DE-R", ["order.released"])
            assert len(erp.orders("DE-R")) == 1
            record = await store.get(ids[0])
            assert record is not None
            assert record.status == "resolved", record

    anyio.run(main)


@pytest.mark.timeout(150)
def test_orders_captured_from_amazon_through_throttled_searches_reach_the_erp_once_each(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics,
    erp: OrderErp,
) -> None:  # fmt: skip
    """The real poller (orders.capture) against searchOrders at a quota far below what the
    client asks for: 429s, pages, a restart-free run; every order once in the ERP, released
    once, and a second look at the same window publishes nothing more."""
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)
    count = 23

    async def main() -> None:
        async with order_stack(
            settings, kafka_bootstrap, erp, capture=True, marketplace_ids=[UK],
            capture_poll_seconds=0.5, capture_page_size=5, capture_rate_per_second=20.0,
            capture_burst=20, capture_lookback_seconds=3600.0, default_warehouse="LOC-01",
        ) as stack:  # fmt: skip
            stack.spapi.set_faults(usage_plans={"searchOrders": (2.0, 2)})
            item = ItemSpec(seller_sku="A1", quantity=1, unit_price=Decimal("5"))
            spec = OrderSpec(items=[item], marketplace_id=UK, currency_code="GBP", lag=300.0)
            created = [stack.spapi.create_order(spec) for _ in range(count)]

            async def all_released() -> bool:
                return all(stack.released.of(o) == ["order.released"] for o in created)

            await stack.until(all_released, 90)
            await anyio.sleep(2)  # later polls read the same window again: nothing new
            for order_id in created:
                assert len(erp.orders(order_id)) == 1, order_id
                assert stack.released.of(order_id) == ["order.released"], order_id
            throttled = [r for r in stack.spapi.requests if r.status == 429]
            assert throttled, "the quota never throttled the poller"
            published = await stack.pool.fetchval("SELECT count(*) FROM skuflow_orders")
            assert published == count

    anyio.run(main)
