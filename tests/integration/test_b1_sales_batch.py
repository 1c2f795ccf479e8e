"""Many B1 sales orders per Service Layer round trip (``B1Erp`` as ``BatchSalesOrders``)
against the simulator's ``$batch``, over real HTTP: independent sub requests, each order failing
alone and translated as the single call, the orders after a failure sent again (B1 stops a
batch there), a lost batch answer ambiguous for each order and each then found once by its
reference, drafts inside a batch."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from handlers.connectors.b1.port import B1Erp
from handlers.ports.erp import (
    BatchSalesOrders,
    ErpLocked,
    ErpRejected,
    ErpUnavailable,
    SalesOrderRef,
    capabilities,
)
from tests.integration.test_b1_sales import Stack, order, run, sline, stack

pytestmark = pytest.mark.integration


def round_trips(s: Stack) -> int:
    return sum(1 for r in s.sim.requests if r.operation == "$batch")


def orders_posted(s: Stack) -> list[str]:
    """The NumAtCard of every order POST B1 received (alone or in a batch), in order."""
    return [
        r.body["NumAtCard"] for r in s.sim.requests if (r.operation, r.method) == ("Orders", "POST")
    ]


def created(s: Stack) -> Counter[str]:
    return Counter(str(d.body["NumAtCard"]) for d in s.sim.documents)


@pytest.mark.timeout(20)
def test_b1_erp_creates_orders_in_batches_and_says_how_many_a_batch_takes() -> None:
    erp = B1Erp.__new__(B1Erp)
    erp.max_batch_orders = 100
    assert isinstance(erp, BatchSalesOrders)
    assert "batched sales orders" in capabilities(erp)


@pytest.mark.timeout(30)
def test_fifty_orders_are_created_in_one_round_trip_each_with_its_lines() -> None:
    async def scenario() -> None:
        async with stack() as s:
            orders = [order(f"R{n}", sline(f"R{n}-a"), sline(f"R{n}-b", "C-400")) for n in
                      range(50)]  # fmt: skip
            refs = await s.erp.create_sales_orders(orders)
            assert refs == [
                SalesOrderRef(reference=f"R{n}", doc_entry=n + 1, doc_num=n + 1,
                              lines={f"R{n}-a": 0, f"R{n}-b": 1})
                for n in range(50)
            ]  # fmt: skip
            assert round_trips(s) == 1
            assert orders_posted(s) == [f"R{n}" for n in range(50)]
            assert all(r.batch == 1 for r in s.sim.requests if r.operation != "Login")

    run(scenario)


@pytest.mark.timeout(30)
def test_a_refused_order_fails_alone_and_the_orders_after_it_go_in_a_second_round_trip() -> None:
    async def scenario() -> None:
        async with stack() as s:
            orders = [order(f"R{n}") for n in range(50)]
            orders[19] = order("BAD", sline("1"), sline("2", "NOPE"))
            outcomes = await s.erp.create_sales_orders(orders)
            refused = outcomes[19]
            assert isinstance(refused, ErpRejected)  # as create_sales_order raises it
            assert (refused.code, refused.line) == ("-10", 1)
            assert refused.message == "Invalid item code 'NOPE'  [RDR1.ItemCode][line: 2]"
            refs = [o for o in outcomes if isinstance(o, SalesOrderRef)]
            assert [r.reference for r in refs] == [f"R{n}" for n in range(50) if n != 19]
            assert round_trips(s) == 2  # B1 stopped at the refusal; the other 30 went again
            assert orders_posted(s) == [o.reference for o in orders]  # each sent once
            assert created(s) == Counter(r.reference for r in refs)

    run(scenario)


@pytest.mark.timeout(30)
def test_where_b1_executes_every_sub_request_a_refusal_costs_no_round_trip() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(batch_continue_on_error=True)
            outcomes = await s.erp.create_sales_orders(
                [order("R1"), order("R2", customer="C9"), order("R3")]
            )
            assert isinstance(outcomes[1], ErpRejected)
            assert [isinstance(o, SalesOrderRef) for o in outcomes] == [True, False, True]
            assert round_trips(s) == 1

    run(scenario)


@pytest.mark.timeout(30)
def test_a_lock_on_one_order_is_erp_locked_for_that_order_only() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(conflict_window_ms=10_000)
            await s.erp.create_sales_order(order("BEFORE", sline("x", "C-400")))  # C-400 is hot
            # A-100 four times: no fight among the sub requests of one batch. The orders after
            # the lock go in the next batch: the simulator's window would lock them on A-100.
            orders = [order(f"R{n}") for n in range(4)] + [order("LOCKED", sline("y", "C-400"))]
            orders += [order(f"S{n}", sline(f"S{n}-1", "S-300")) for n in range(5)]
            outcomes = await s.erp.create_sales_orders(orders)
            assert isinstance(outcomes[4], ErpLocked)
            assert "-2039" in str(outcomes[4])
            assert sum(isinstance(o, SalesOrderRef) for o in outcomes) == 9
            assert round_trips(s) == 2

    run(scenario)


@pytest.mark.timeout(30)
def test_a_lost_batch_answer_is_ambiguous_for_each_order_and_each_is_then_found_once() -> None:
    async def scenario() -> None:
        async with stack(timeout=0.3) as s:
            s.sim.set_faults(timeout_after_apply_ms=900)
            orders = [order(f"LOST-{n}") for n in range(10)]
            outcomes = await s.erp.create_sales_orders(orders)
            assert all(isinstance(o, ErpUnavailable) and o.ambiguous for o in outcomes)
            s.sim.set_faults(timeout_after_apply_ms=0)
            async with asyncio.timeout(5):  # B1 goes on with the batch the client gave up on
                while len(s.sim.documents) < 10:
                    await asyncio.sleep(0.05)
            found = [await s.erp.find_sales_order(o.reference) for o in orders]
            assert [f.reference if f else None for f in found] == [o.reference for o in orders]
            assert created(s) == Counter(o.reference for o in orders)  # no duplicates

    run(scenario)


@pytest.mark.timeout(30)
def test_drafts_inside_a_batch_are_found_as_drafts_and_the_others_created() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer("C2", approval=True)
            held = order("HELD", sline("h1"), sline("h2", "C-400"), customer="C2")
            outcomes = await s.erp.create_sales_orders([order("R1"), held, order("R2")])
            first, draft, second = outcomes
            assert draft == SalesOrderRef(
                reference="HELD", doc_entry=1, doc_num=1, lines={"h1": 0, "h2": 1}, draft=True
            )
            assert isinstance(first, SalesOrderRef)
            assert isinstance(second, SalesOrderRef)
            assert (first.draft, second.draft) == (False, False)
            assert round_trips(s) == 2  # the -2028 answer stopped the batch
            assert await s.erp.find_sales_order("HELD") == draft

    run(scenario)


@pytest.mark.timeout(30)
def test_more_orders_than_a_batch_takes_go_in_several_round_trips() -> None:
    async def scenario() -> None:
        async with stack() as s:
            erp = B1Erp(s.client, max_batch_orders=20)
            outcomes = await erp.create_sales_orders([order(f"R{n}") for n in range(50)])
            assert all(isinstance(o, SalesOrderRef) for o in outcomes)
            assert round_trips(s) == 3
            assert [r.batch for r in s.sim.requests if r.operation == "$batch"] == [1, 2, 3]

    run(scenario)


@pytest.mark.timeout(30)
def test_an_outage_fails_every_order_of_the_batch_unambiguously() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(outage_until=datetime.now(UTC) + timedelta(hours=1))
            outcomes = await s.erp.create_sales_orders([order("R1"), order("R2")])
            assert all(isinstance(o, ErpUnavailable) and not o.ambiguous for o in outcomes)
            assert s.sim.documents == []

    run(scenario)


@pytest.mark.timeout(30)
def test_an_expired_session_is_renewed_and_the_batch_executed_once() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.login()
            s.sim.expire_sessions()
            outcomes = await s.erp.create_sales_orders([order("R1"), order("R2")])
            assert all(isinstance(o, SalesOrderRef) for o in outcomes)
            envelopes = [r.status for r in s.sim.requests if r.operation == "$batch"]
            assert (envelopes, s.client.logins) == ([401, 202], 2)
            assert created(s) == Counter({"R1": 1, "R2": 1})

    run(scenario)


@pytest.mark.timeout(30)
def test_a_line_discount_and_prices_go_in_a_sub_request_as_in_a_single_post() -> None:
    async def scenario() -> None:
        async with stack() as s:
            line = sline("1", "A-100", 3, unit_price=Decimal("19.99"), discount=Decimal("5.00"))
            (ref,) = await s.erp.create_sales_orders([order("R1", line)])
            assert isinstance(ref, SalesOrderRef)
            (b1_line,) = (s.sim.sales.document("Orders", 1) or {})["DocumentLines"]
            assert (b1_line["DiscountPercent"], b1_line["LineTotal"]) == (
                Decimal("8.337502"), Decimal("54.97"),
            )  # fmt: skip
            with pytest.raises(ValueError, match="discount needs a unit price"):
                await s.erp.create_sales_orders([order("R2", sline("1", discount=Decimal(1)))])
            assert round_trips(s) == 1

    run(scenario)
