"""The order flow's creation step with an ERP that creates many orders per round trip (B1's
``$batch``): ``OrderWork.cycle()`` on the real PostgreSQL ledger against the Service Layer
simulator — how many round trips a peak takes, each order's outcome recorded as for one order
(created, refused, waiting), and no duplicate after a lost answer or a crash mid-send."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import anyio
import asyncpg
import msgspec
import pytest

from config.settings import Secret
from devstack.sims.b1.server import B1Simulator
from handlers.connectors.b1.client import B1Client
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.flows import migrations as domain_migrations
from handlers.orders.ledger import Announcer, ref_of
from handlers.orders.work import OrderWork
from handlers.ports.erp import SalesLine, SalesOrder, SalesOrderRef, SalesOrderState
from worker.backoff import Backoff
from worker.store import create_pool, migrate, package_migrations

pytestmark = pytest.mark.integration

COMPANY, USER, PASSWORD = "SBODEMO", "manager", "b1-order-work-password"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def sales_order(reference: str, item: str = "A-100") -> SalesOrder:
    return SalesOrder(
        reference=reference,
        customer_code="C1",
        order_date=date(2026, 12, 1),
        due_date=date(2026, 12, 4),
        lines=(SalesLine(line_id=f"{reference}-1", item_code=item, quantity=Decimal(1),
                         warehouse_code="01", unit_price=Decimal("9.99")),),
    )  # fmt: skip


class SingleOrders:
    """The B1 ERP without its batch capability: what any ERP without one looks like."""

    def __init__(self, erp: B1Erp) -> None:
        self._erp = erp

    async def create_sales_order(self, order: SalesOrder) -> SalesOrderRef:
        return await self._erp.create_sales_order(order)

    async def find_sales_order(self, reference: str) -> SalesOrderRef | None:
        return await self._erp.find_sales_order(reference)

    async def sales_order_states(self, refs: Sequence[SalesOrderRef]) -> dict[str, SalesOrderState]:
        return await self._erp.sales_order_states(refs)

    async def cancel_sales_order(self, ref: SalesOrderRef) -> None:
        await self._erp.cancel_sales_order(ref)


@dataclass
class Stack:
    sim: B1Simulator
    pool: asyncpg.Pool
    erp: B1Erp

    def work(self, erp: Any = None) -> OrderWork:
        return OrderWork(
            self.pool, erp or self.erp, Announcer("released"), batch_max_orders=50,
            max_concurrent_writes=4, watch_seconds=3600, backoff=Backoff(1.0, 5.0, 2.0),
        )  # fmt: skip

    async def waiting(self, *orders: SalesOrder, state: str = "received") -> None:
        for number, order in enumerate(orders):
            await self.pool.execute(
                """INSERT INTO skuflow_orders (channel, order_id, marketplace_id, revision,
                     state, marketplace_status, fulfilled_by, sales_order, lines, topic,
                     partition, "offset", key, payload, event_id)
                   VALUES ('amazon', $1, 'A1F83G8C2ARO7P', $2, $3, 'Unshipped', 'MERCHANT',
                           $4::jsonb, '[]'::jsonb, 'orders', 0, $5, $6, $7, $8)""",
                order.reference, T0, state, msgspec.json.encode(order).decode(), number,
                order.reference.encode(), b"{}", f"ord-{order.reference}",
            )  # fmt: skip

    async def states(self) -> Counter[str]:
        rows = await self.pool.fetch("SELECT state FROM skuflow_orders")
        return Counter(row["state"] for row in rows)

    async def due_now(self) -> None:
        """Skip the backoff the last cycle set."""
        await self.pool.execute("UPDATE skuflow_orders SET next_attempt_at = now()")

    def round_trips(self) -> int:
        return sum(1 for r in self.sim.requests if r.operation == "$batch")

    def created(self) -> Counter[str]:
        return Counter(str(d.body["NumAtCard"]) for d in self.sim.documents)


@asynccontextmanager
async def stack(database_url: str, *, timeout: float = 5.0) -> AsyncIterator[Stack]:
    sim = B1Simulator(COMPANY, USER, PASSWORD)
    sim.set_faults(conflict_window_ms=0.0)
    sim.add_warehouse("01")
    sim.add_item("A-100", stock={"01": 500})
    sim.sales.add_customer("C1")
    await sim.start()
    pool = await create_pool(database_url, max_size=6)
    try:
        await migrate(pool, [*package_migrations("worker", "engine"), *domain_migrations()])
        async with aiohttp.ClientSession() as session:
            client = B1Client(sim.url, COMPANY, USER, Secret(PASSWORD), session,
                              timeout=timeout, key_field=KEY_FIELD)  # fmt: skip
            yield Stack(sim, pool, B1Erp(client))
    finally:
        await pool.close()
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    anyio.run(scenario)


@pytest.mark.timeout(60)
def test_a_cycle_creates_120_waiting_orders_in_three_batch_round_trips(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            await s.waiting(*(sales_order(f"302-{n:07}") for n in range(120)))
            work = s.work()
            await work.cycle(watch=False)
            assert s.round_trips() == 3  # ⌈120 / 50⌉, at most 4 in flight
            assert await s.states() == Counter({"in_erp": 120})
            assert work.created == 120
            rows = await s.pool.fetch("SELECT order_id, erp_ref FROM skuflow_orders")
            refs = {row["order_id"]: ref_of(row["erp_ref"]) for row in rows}
            assert {ref.reference for ref in refs.values() if ref} == set(refs)
            assert {ref.lines[f"{ref.reference}-1"] for ref in refs.values() if ref} == {0}
            assert s.created() == Counter({f"302-{n:07}": 1 for n in range(120)})

    run(scenario)


@pytest.mark.timeout(60)
def test_a_refused_order_in_a_batch_is_an_exception_on_that_order_only(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            orders = [sales_order(f"R{n:02}") for n in range(10)]
            orders[3] = sales_order("R03", "NOPE")
            await s.waiting(*orders)
            await s.work().cycle(watch=False)
            assert await s.states() == Counter({"in_erp": 9, "failed": 1})
            failed = await s.pool.fetchrow(
                "SELECT order_id, last_error, exception_id FROM skuflow_orders "
                "WHERE state = 'failed'"
            )
            assert failed["order_id"] == "R03"
            assert "Invalid item code 'NOPE'" in failed["last_error"]
            exception = await s.pool.fetchrow(
                "SELECT kind FROM skuflow_exceptions WHERE id = $1", failed["exception_id"]
            )
            assert exception["kind"] == "erp_rejected"
            assert s.round_trips() == 2  # B1 stopped at the refusal; the rest went again

    run(scenario)


@pytest.mark.timeout(60)
def test_a_lost_batch_answer_leaves_the_orders_creating_and_the_next_cycle_finds_them(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(database_url, timeout=0.3) as s:
            await s.waiting(*(sales_order(f"LOST-{n:02}") for n in range(20)))
            s.sim.set_faults(timeout_after_apply_ms=900)
            work = s.work()
            await work.cycle(watch=False)
            assert await s.states() == Counter({"creating": 20})
            errors = await s.pool.fetch("SELECT last_error, attempts FROM skuflow_orders")
            assert all("may have been applied" in row["last_error"] for row in errors)
            assert {row["attempts"] for row in errors} == {1}
            s.sim.set_faults(timeout_after_apply_ms=0)
            with anyio.fail_after(5):  # B1 went on with the batch the client gave up on
                while len(s.sim.documents) < 20:
                    await anyio.sleep(0.05)
            await s.due_now()
            await work.cycle(watch=False)
            assert await s.states() == Counter({"in_erp": 20})
            assert s.round_trips() == 1  # looked up by reference, none sent again
            assert s.created() == Counter({f"LOST-{n:02}": 1 for n in range(20)})

    run(scenario)


@pytest.mark.timeout(60)
def test_after_a_crash_mid_send_the_orders_b1_has_are_found_and_only_the_others_sent(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            orders = [sales_order(f"CRASH-{n:02}") for n in range(10)]
            for order in orders[:4]:  # sent before the crash; the answers never recorded
                await s.erp.create_sales_order(order)
            await s.waiting(*orders, state="creating")
            await s.work().cycle(watch=False)
            assert await s.states() == Counter({"in_erp": 10})
            assert s.round_trips() == 1  # the six B1 did not have, in one batch
            sent = [r for r in s.sim.requests if r.batch and r.operation == "Orders"]
            assert [r.body["NumAtCard"] for r in sent] == [o.reference for o in orders[4:]]
            assert s.created() == Counter({o.reference: 1 for o in orders})

    run(scenario)


@pytest.mark.timeout(60)
def test_an_erp_without_batches_gets_one_order_per_call_and_batch_max_orders_a_cycle(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            await s.waiting(*(sales_order(f"ONE-{n:02}") for n in range(60)))
            await s.work(SingleOrders(s.erp)).cycle(watch=False)
            assert await s.states() == Counter({"in_erp": 50, "received": 10})
            assert s.round_trips() == 0
            posts = [r for r in s.sim.requests if (r.operation, r.method) == ("Orders", "POST")]
            assert len(posts) == 50

    run(scenario)


@pytest.mark.timeout(60)
def test_an_order_the_connector_cannot_express_is_refused_alone_and_the_batch_still_goes(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            orders = [sales_order(f"V{n:02}") for n in range(6)]
            orders[2] = sales_order("V" * 101)  # NumAtCard holds 100: never sent
            await s.waiting(*orders)
            await s.work().cycle(watch=False)
            assert await s.states() == Counter({"in_erp": 5, "failed": 1})
            error = await s.pool.fetchval(
                "SELECT last_error FROM skuflow_orders WHERE state = 'failed'"
            )
            assert "not sendable" in error
            assert "V" * 101 not in s.created()

    run(scenario)
