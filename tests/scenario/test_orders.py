"""User stories of Amazon orders into the ERP and back: real Kafka, real PostgreSQL, the SAP B1
and SP-API simulators, the real worker (both classes, the order flow's background work).

Each story produces contract events (``order.received`` / ``order.changed`` /
``order.cancelled``, ``dispatch.confirmed``, ``return.received``) and checks the ERP's
documents at the simulator and what the warehouse was told on ``topics.released``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from config.settings import (
    B1Settings,
    MappingsSettings,
    OrdersSettings,
    Secret,
    Settings,
    SpApiSettings,
)
from devstack.sims.b1.server import B1Simulator
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
from tests.support.events import MARKETPLACE
from tests.support.stack import produce, settings_for, wait_for

pytestmark = [pytest.mark.scenario]

CreateTopics = Callable[..., None]
CLIENT_ID, CLIENT_SECRET, REFRESH = "amzn1.application-oa2-client.sim", "sim-secret", "Atzr|sim"
UK, DE = MARKETPLACE, "A1PA6795UKMFR9"
WAREHOUSES = {"LOC-01": "01", "LOC-DMG": "DMG"}
ITEMS = ("A1", "A2")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


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
        self, b1: B1Simulator, spapi: SpApiSimulator, worker: Worker, released: Released
    ) -> None:
        self.b1, self.spapi, self.worker, self.released = b1, spapi, worker, released
        assert worker.pool is not None
        self.pool: asyncpg.Pool = worker.pool

    async def state(self, order_id: str) -> str | None:
        value = await self.pool.fetchval(
            "SELECT state FROM skuflow_orders WHERE order_id = $1", order_id
        )
        return None if value is None else str(value)

    async def until_state(self, order_id: str, *states: str, timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            while await self.state(order_id) not in states:
                await anyio.sleep(0.1)

    async def until(self, condition: Any, timeout: float = 60) -> None:
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
                    f"timed out; exceptions {[tuple(r) for r in rows]}; documents "
                    f"{[tuple(d) for d in docs]}; orders {[tuple(o) for o in orders]}"
                )
            await anyio.sleep(0.2)

    async def until_released(self, order_id: str, events: list[str]) -> None:
        async def published() -> bool:
            return self.released.of(order_id) == events

        await self.until(published, 30)

    async def exceptions(self) -> Counter[str]:
        rows = await self.pool.fetch("SELECT kind FROM skuflow_exceptions WHERE status = 'open'")
        return Counter(r["kind"] for r in rows)

    async def documents(self, order_id: str) -> list[tuple[str, str]]:
        rows = await self.pool.fetch(
            "SELECT kind, state FROM skuflow_order_documents WHERE order_id = $1 ORDER BY id",
            order_id,
        )
        return [(r["kind"], r["state"]) for r in rows]

    def erp_orders(self, order_id: str) -> list[dict[str, Any]]:
        return [
            doc for doc in self.b1.sales.rows("Orders", [[]]) if doc.get("NumAtCard") == order_id
        ]

    def entries(self, entity: str) -> list[dict[str, Any]]:
        return list(self.b1.sales.rows(entity, [[]]))


@asynccontextmanager
async def order_stack(
    settings: Settings, bootstrap: str, **orders: Any
) -> AsyncIterator[OrderStack]:
    b1 = B1Simulator(password="b1-secret")
    spapi = SpApiSimulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH)
    await b1.start()
    await spapi.start()
    b1.set_faults(conflict_window_ms=0)
    b1.add_warehouse("DMG")
    for item in ITEMS:
        b1.add_item(item, stock={"01": 100})
    b1.sales.add_customer("C-UK")
    b1.sales.add_customer("C-DE")
    try:
        settings = msgspec.structs.replace(
            settings,
            b1=B1Settings(url=b1.url, password=Secret("b1-secret"), timeout_seconds=5),
            spapi=SpApiSettings(
                endpoint=spapi.endpoint, lwa_endpoint=spapi.lwa_endpoint, client_id=CLIENT_ID,
                client_secret=Secret(CLIENT_SECRET), refresh_token=Secret(REFRESH),
                shared_rate_limit=False,
            ),
            mappings=MappingsSettings(
                sku_map=None, warehouses=WAREHOUSES,
            ),
            orders=OrdersSettings(**{
                "default_customers": {UK: "C-UK", "*": "C-DE"}, "watch_seconds": 0.5,
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
                yield OrderStack(b1, spapi, worker, released)
            finally:
                worker.request_stop()
                tg.cancel_scope.cancel()
    finally:
        await spapi.stop()
        await b1.stop()


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
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)
    topic = settings.topics.orders

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap) as stack:
            stack.b1.sales.set_credit_hold("C-UK")
            await produce(kafka_bootstrap, topic, [
                (_key("UK-1"), order_event("UK-1", [("i1", "A1", 1)])),
                (_key("DE-1"), order_event("DE-1", [("i1", "A2", 1)], marketplace=DE)),
            ])  # fmt: skip
            await stack.until_released("DE-1", ["order.released"])
            await stack.until_state("UK-1", "in_erp")
            # several watch cycles later the held order is still not in the warehouse's topic
            await anyio.sleep(3)
            assert stack.released.of("UK-1") == []
            assert len(stack.erp_orders("UK-1")) == 1
            stack.b1.sales.set_credit_hold("C-UK", False)
            await stack.until_released("UK-1", ["order.released"])
            # the ERP puts a released order on hold: the warehouse is told to stop picking it
            (order,) = stack.erp_orders("DE-1")
            stack.b1.sales.set_confirmed(order["DocEntry"], False)
            await wait_for(lambda: stack.released.of("DE-1")[-1:] == ["order.held"], 30, "held")
            stack.b1.sales.set_confirmed(order["DocEntry"], True)
            await wait_for(lambda: len(stack.released.of("DE-1")) == 3, 30, "released again")
            await anyio.sleep(1.5)  # nothing more comes
            assert stack.released.of("DE-1") == ["order.released", "order.held", "order.released"]
            assert stack.released.of("UK-1") == ["order.released"]
            held = [e for e in stack.released.events if e["type"] == "order.held"]
            assert held[0]["holds"] == ["not approved"], held

    anyio.run(main)


@pytest.mark.timeout(120)
def test_an_order_awaiting_approval_is_released_once_approved_and_never_created_twice(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)
    topic = settings.topics.orders

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap) as stack:
            stack.b1.sales.set_rules(approval_above_amount=Decimal(100))
            big = order_event("UK-BIG", [("i1", "A1", 20)])
            replayed = [
                (_key("UK-BIG"), big),
                (_key("UK-BIG"), big),  # a redelivery
                (_key("UK-BIG"), order_event("UK-BIG", [("i1", "A1", 20)], revision=1,
                                             event=OrderChanged)),  # a status-only revision
            ]  # fmt: skip
            await produce(kafka_bootstrap, topic, replayed)
            await stack.until_state("UK-BIG", "in_erp")
            await anyio.sleep(2)
            assert stack.released.of("UK-BIG") == []
            drafts = [d for d in stack.entries("Drafts") if d.get("NumAtCard") == "UK-BIG"]
            assert len(drafts) == 1
            stack.b1.sales.approve_draft(drafts[0]["DocEntry"])
            await stack.until_released("UK-BIG", ["order.released"])
            (order,) = stack.erp_orders("UK-BIG")
            (event,) = [e for e in stack.released.events if e["order_id"] == "UK-BIG"]
            assert event["erp_order"] == str(order["DocNum"])
            assert event["lines"] == [{"order_item_id": "i1", "sku": "A1", "quantity": 20}]

    anyio.run(main)


@pytest.mark.timeout(150)
def test_partial_and_multi_package_shipments_deliver_and_invoice_exactly_what_shipped(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap) as stack:
            lines = [("i1", "A1", 3), ("i2", "A2", 1)]
            stack.spapi.add_order("UK-2", UK, datetime.now(UTC) + timedelta(days=1),
                                  [("i1", "A1", 3), ("i2", "A2", 1)])  # fmt: skip
            await produce(kafka_bootstrap, settings.topics.orders,
                          [(_key("UK-2"), order_event("UK-2", lines))])  # fmt: skip
            await stack.until_released("UK-2", ["order.released"])
            dispatch = settings.topics.dispatch
            await produce(kafka_bootstrap, dispatch, [
                (_key("UK-2"), dispatch_event("UK-2", "1", [("i1", "A1", 2)])),
                (_key("UK-2"), dispatch_event("UK-2", "2", [("i1", "A1", 1), ("i2", "A2", 1)])),
                (_key("UK-2"), dispatch_event("UK-2", "1", [("i1", "A1", 2)])),  # redelivered
            ])  # fmt: skip

            async def delivered() -> bool:
                return sorted(await stack.documents("UK-2")) == [
                    ("delivery", "posted"), ("delivery", "posted"),
                    ("invoice", "posted"), ("invoice", "posted"),
                ]  # fmt: skip

            await stack.until(delivered)
            deliveries = stack.entries("DeliveryNotes")
            assert sorted(
                [(ln["ItemCode"], ln["Quantity"]) for ln in d["DocumentLines"]] for d in deliveries
            ) == sorted([[("A1", 2)], [("A1", 1), ("A2", 1)]])
            assert len(stack.entries("Invoices")) == 2
            assert stack.b1.stock("A1", "01") == 97
            (order,) = stack.erp_orders("UK-2")
            assert order["DocumentStatus"] == "bost_Close"
            # a package beyond what was ordered: the ERP's refusal, no silent skip
            await produce(
                kafka_bootstrap,
                dispatch,
                [(_key("UK-2"), dispatch_event("UK-2", "3", [("i1", "A1", 1)]))],
            )
            with anyio.fail_after(60):
                while (await stack.exceptions())["erp_rejected"] < 1:
                    await anyio.sleep(0.2)
            assert len(stack.entries("DeliveryNotes")) == 2

    anyio.run(main)


@pytest.mark.timeout(150)
def test_a_cancellation_cancels_the_erp_order_before_shipment_and_is_an_exception_after(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)
    topic = settings.topics.orders

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap) as stack:
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
            with anyio.fail_after(60):
                while ("delivery", "posted") not in await stack.documents("UK-S"):
                    await anyio.sleep(0.2)
            await produce(kafka_bootstrap, topic, [
                (_key("UK-C"), cancel_event("UK-C", 5)),
                (_key("UK-S"), cancel_event("UK-S", 5)),
            ])  # fmt: skip
            await stack.until_state("UK-C", "cancelled")
            (order,) = stack.erp_orders("UK-C")
            assert order["Cancelled"] == "tYES"
            # the warehouse had been told to pick it: it is told to stop
            await wait_for(lambda: stack.released.of("UK-C")[-1:] == ["order.held"], 30, "stop")
            with anyio.fail_after(30):
                while (await stack.exceptions())["order_cancel_after_ship"] < 1:
                    await anyio.sleep(0.2)
            (shipped,) = stack.erp_orders("UK-S")
            assert shipped["Cancelled"] == "tNO"

    anyio.run(main)


@pytest.mark.timeout(150)
def test_returns_are_linked_to_their_delivery_and_an_unmatched_return_is_an_exception(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap) as stack:
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
            with anyio.fail_after(60):
                while ("invoice", "posted") not in await stack.documents("UK-R"):
                    await anyio.sleep(0.2)
            assert stack.b1.stock("A1", "01") == 97
            await produce(kafka_bootstrap, settings.topics.returns, [
                (_key("UK-R"), return_event("UK-R", "RMA-1", [("A1", 1, "sellable")])),
                (_key("UK-R"), return_event("UK-R", "RMA-2", [("A1", 1, "damaged")])),
                (_key("UK-R"), return_event("UK-R", "RMA-1", [("A1", 1, "sellable")])),  # again
                (_key("NOPE"), return_event("NOPE", "RMA-9", [("A1", 1, "sellable")])),
            ])  # fmt: skip
            with anyio.fail_after(60):
                while (await stack.exceptions())["return_unmatched"] < 1 or (
                    stack.b1.stock("A1", "DMG") < 1 or stack.b1.stock("A1", "01") < 98
                ):
                    await anyio.sleep(0.2)
            await anyio.sleep(1.5)  # nothing more is posted
            assert stack.b1.stock("A1", "01") == 98
            assert stack.b1.stock("A1", "DMG") == 1
            kinds = await stack.exceptions()
            assert kinds == Counter({"return_unmatched": 1}), kinds

    anyio.run(main)


@pytest.mark.timeout(120)
def test_an_unmapped_order_is_an_exception_and_the_others_are_not_affected(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique, create_topics)

    async def main() -> None:
        async with order_stack(settings, kafka_bootstrap) as stack:
            await produce(kafka_bootstrap, settings.topics.orders, [
                (_key("UK-X"), order_event("UK-X", [("i1", "NOT-AN-ITEM", 1)])),
                (_key("UK-OK"), order_event("UK-OK", [("i1", "A1", 1)])),
            ])  # fmt: skip
            await stack.until_released("UK-OK", ["order.released"])
            with anyio.fail_after(30):
                while (await stack.exceptions())["unknown_sku"] < 1:
                    await anyio.sleep(0.2)
            assert stack.erp_orders("UK-X") == []
            assert await stack.state("UK-X") is None

    anyio.run(main)
