"""The ECC connector's sales documents against the ECC simulator (HTTP) and a real PostgreSQL:
orders created once (ORDERS05 followed to 53/51, found by reference), holds mapped and released,
cancel before and after delivery, partial deliveries, invoices, returns and credit notes through
the wrapper function modules, found by key after a lost answer, locks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import aiohttp
import anyio
import asyncpg
import pytest

from config.settings import Secret
from devstack.sims.ecc.server import EccSimulator
from handlers.connectors.ecc.client import EccClient
from handlers.connectors.ecc.idoc import ControlRecord
from handlers.connectors.ecc.port import EccErp, EccOptions
from handlers.connectors.ecc.sales import SalesOptions
from handlers.flows import migrations as domain_migrations
from handlers.ports.erp import (
    Delivery,
    DeliveryLine,
    ErpAuthFailed,
    ErpDuplicateEntry,
    ErpLocked,
    ErpRejected,
    ErpUnavailable,
    PostedDocument,
    SalesLine,
    SalesOrder,
    SalesOrderRef,
    SalesReturn,
    SalesReturnLine,
    capabilities,
)
from worker.store import create_pool, migrate

pytestmark = pytest.mark.integration

SID, CLIENT, USER, PASSWORD = "ECD", "100", "SKUFLOW_RFC", "ecc-sales-secret-0b7"
PARTNER, PORT = "SKUFLOW", "SKUFLOWPRT"
MAT, OTHER = "4711", "815"  # numeric materials as ERP item codes
MATNR, OTHER_NR = MAT.zfill(18), OTHER.zfill(18)
CUSTOMER = "1000"
STORE, RETURNS = "1000/0001", "1000/0002"
DAY = date(2026, 3, 2)


@dataclass
class Stack:
    sim: EccSimulator
    erp: EccErp
    pool: asyncpg.Pool
    client: EccClient


@asynccontextmanager
async def stack(database_url: str, **sales: Any) -> AsyncIterator[Stack]:
    sim = EccSimulator(sid=SID, client=CLIENT, user=USER, password=PASSWORD, seed=11)
    sim.add_partner(PARTNER, PORT, message_types=("MBGMCR", "ORDERS"))
    for werks, lgort in (("1000", "0001"), ("1000", "0002")):
        sim.add_storage_location(werks, lgort)
    sim.add_material(MATNR, ["1000"])
    sim.add_material(OTHER_NR, ["1000"])
    sim.set_stock(MATNR, "1000", "0001", 20)
    sim.set_stock(OTHER_NR, "1000", "0001", 20)
    sim.sales.add_customer(CUSTOMER.zfill(10), sales_areas=("1000/10/00",))
    sim.set_processing(tick_ms=5)
    await sim.start()
    pool = await create_pool(database_url)
    try:
        await migrate(pool, domain_migrations())
        await pool.execute("TRUNCATE skuflow_ecc_idocs")
        async with aiohttp.ClientSession() as session:
            client = EccClient(sim.url, CLIENT, USER, Secret(PASSWORD), session, timeout=5)
            control = ControlRecord(
                client=CLIENT, sid=SID, sender_port=PORT, sender_partner=PARTNER
            )
            options = EccOptions(
                poll_seconds=0.01, poll_max_seconds=0.05, lookup_grace_seconds=0.2,
                sales=SalesOptions(**{"order_wait_seconds": 5.0, **sales}),
            )  # fmt: skip
            yield Stack(sim, EccErp(client, control, pool, options), pool, client)
    finally:
        await pool.close()
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    anyio.run(scenario)


def order(reference: str, *lines: tuple[str, str], price: str = "2.50") -> SalesOrder:
    return SalesOrder(
        reference=reference,
        customer_code=CUSTOMER,
        order_date=DAY,
        due_date=DAY,
        currency="EUR",
        lines=tuple(
            SalesLine(
                line_id=f"{reference}-{index}", item_code=item, quantity=Decimal(quantity),
                warehouse_code=STORE, unit_price=Decimal(price),
            )
            for index, (item, quantity) in enumerate(lines, start=1)
        ),
    )  # fmt: skip


def delivery(key: str, ref: SalesOrderRef, *lines: tuple[str, str, str]) -> Delivery:
    """Lines of (line id, item, quantity)."""
    return Delivery(
        key=key,
        order=ref,
        delivery_date=DAY,
        lines=tuple(
            DeliveryLine(order_line=ref.lines[line_id], item_code=item,
                         quantity=Decimal(quantity), warehouse_code=STORE)
            for line_id, item, quantity in lines
        ),
    )  # fmt: skip


async def states(s: Stack, *refs: SalesOrderRef) -> dict[str, tuple[str, tuple[str, ...]]]:
    found = await s.erp.sales_order_states(refs)
    return {reference: (state.status, state.holds) for reference, state in found.items()}


# --- sales orders ---


@pytest.mark.timeout(30)
def test_an_order_is_created_once_and_found_by_its_reference(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            assert {"sales orders", "sales deliveries"} <= set(capabilities(s.erp))
            ref = await s.erp.create_sales_order(order("302-1", (MAT, "3"), (OTHER, "1")))
            assert ref.doc_num == 100001
            assert ref.lines == {"302-1-1": 10, "302-1-2": 20}
            assert await s.erp.find_sales_order("302-1") == ref
            assert await s.erp.find_sales_order("302-404") is None
            assert (
                await s.erp.create_sales_order(order("302-1", (MAT, "3"))) == ref
            )  # posted: found
            assert len(s.sim.idocs) == 1
            (state,) = (await s.erp.sales_order_states([ref])).values()
            assert (state.status, state.holds) == ("open", ())
            assert state.open_quantities == {10: Decimal(3), 20: Decimal(1)}
            head = s.sim.sales.order(f"{ref.doc_entry:010d}")
            assert (head.area, head.auart, head.bstkd, head.kunnr) == (
                ("1000", "10", "00"),
                "OR",
                "302-1",
                "0000001000",
            )

    run(scenario)


@pytest.mark.timeout(30)
def test_a_duplicate_purchase_order_is_a_duplicate_entry_and_the_first_order_is_found(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            ref = await s.erp.create_sales_order(order("302-2", (MAT, "1")))
            await s.pool.execute("TRUNCATE skuflow_ecc_idocs")  # a tracker that forgot it
            with pytest.raises(ErpDuplicateEntry) as caught:
                await s.erp.create_sales_order(order("302-2", (MAT, "1")))
            assert caught.value.code == "V4 115"
            assert await s.erp.find_sales_order("302-2") == ref
            assert len(s.sim.sales.orders) == 1

    run(scenario)


@pytest.mark.timeout(30)
def test_an_order_ecc_refuses_is_rejected_with_its_class_and_number(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            with pytest.raises(ErpRejected) as caught:
                await s.erp.create_sales_order(order("302-3", (MAT, "1"), ("42", "1")))
            assert caught.value.code == "V1 392"
            assert caught.value.message == "Material 42 does not exist"
            assert caught.value.line == 1
            s.sim.sales.update_customer(CUSTOMER.zfill(10), sales_areas=("2000/10/00",))
            s.sim.sales.set_rules(sales_areas=["1000/10/00", "2000/10/00"])
            with pytest.raises(ErpRejected, match="sales area") as area:
                await s.erp.create_sales_order(order("302-4", (MAT, "1")))
            assert area.value.code == "VP 200"
            rows = await s.pool.fetch("SELECT state, status FROM skuflow_ecc_idocs ORDER BY docnum")
            assert [(r["state"], r["status"]) for r in rows] == [("failed", "51"), ("failed", "51")]

    run(scenario)


@pytest.mark.timeout(30)
def test_an_order_ecc_has_not_applied_yet_is_ambiguous_then_followed_not_sent_again(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(database_url, order_wait_seconds=0.3) as s:
            s.sim.set_processing(paused=True)
            with pytest.raises(ErpUnavailable) as caught:
                await s.erp.create_sales_order(order("302-5", (MAT, "1")))
            assert caught.value.ambiguous
            assert await s.erp.find_sales_order("302-5") is None
            s.sim.set_processing(paused=False)
            ref = await s.erp.create_sales_order(order("302-5", (MAT, "1")))
            assert len(s.sim.idocs) == 1
            assert await s.erp.find_sales_order("302-5") == ref

    run(scenario)


@pytest.mark.timeout(30)
def test_a_lost_orders_answer_is_looked_up_after_the_grace_and_followed(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            s.sim.set_faults(lost_answer_next=1)
            with pytest.raises(ErpUnavailable) as caught:
                await s.erp.create_sales_order(order("302-6", (MAT, "1")))
            assert caught.value.ambiguous
            with pytest.raises(ErpUnavailable, match="looked up after"):
                await s.erp.create_sales_order(order("302-6", (MAT, "1")))
            await anyio.sleep(0.25)
            ref = await s.erp.create_sales_order(order("302-6", (MAT, "1")))
            assert ref.lines == {"302-6-1": 10}
            assert len(s.sim.idocs) == 1

    run(scenario)


# --- holds ---


@pytest.mark.timeout(30)
def test_holds_are_named_as_the_flow_knows_them_and_lifted_in_ecc(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            sales = s.sim.sales
            sales.set_rules(new_order_delivery_block="01")
            blocked = await s.erp.create_sales_order(order("303-1", (MAT, "1")))
            sales.set_rules(new_order_delivery_block="", incomplete_without_price=True)
            incomplete = await s.erp.create_sales_order(order("303-2", (MAT, "1"), price="0"))
            sales.update_customer(CUSTOMER.zfill(10), credit_limit="4")
            credit = await s.erp.create_sales_order(order("303-3", (MAT, "2")))
            sales.set_incomplete(f"{incomplete.doc_entry:010d}")
            assert await states(s, blocked, incomplete, credit) == {
                "303-1": ("open", ("delivery block 01",)),
                "303-2": ("open", ("incomplete",)),
                "303-3": ("open", ("credit block",)),
            }
            sales.set_delivery_block(f"{blocked.doc_entry:010d}", "")
            sales.set_incomplete(f"{incomplete.doc_entry:010d}", False)
            sales.release_credit(f"{credit.doc_entry:010d}")
            assert set((await states(s, blocked, incomplete, credit)).values()) == {("open", ())}

    run(scenario)


@pytest.mark.timeout(30)
def test_a_blocked_order_s_delivery_is_refused_with_sap_s_message(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            ref = await s.erp.create_sales_order(order("303-4", (MAT, "1")))
            s.sim.sales.set_delivery_block(f"{ref.doc_entry:010d}", "01")
            with pytest.raises(ErpRejected) as caught:
                await s.erp.create_delivery(delivery("SKFD1", ref, ("303-4-1", MAT, "1")))
            assert caught.value.code == "VL 461"
            assert "blocked for delivery" in caught.value.message

    run(scenario)


# --- cancel ---


@pytest.mark.timeout(30)
def test_cancel_before_delivery_cancels_and_after_a_delivery_is_refused(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            untouched = await s.erp.create_sales_order(order("304-1", (MAT, "1"), (OTHER, "2")))
            await s.erp.cancel_sales_order(untouched)
            await s.erp.cancel_sales_order(untouched)  # already rejected: nothing to do
            shipped = await s.erp.create_sales_order(order("304-2", (MAT, "2")))
            await s.erp.create_delivery(delivery("SKFD2", shipped, ("304-2-1", MAT, "1")))
            with pytest.raises(ErpRejected) as caught:
                await s.erp.cancel_sales_order(shipped)
            assert caught.value.code == "V1 803"
            assert await states(s, untouched, shipped) == {
                "304-1": ("cancelled", ()),
                "304-2": ("open", ()),
            }

    run(scenario)


# --- deliveries ---


@pytest.mark.timeout(30)
def test_partial_deliveries_leave_open_quantities_until_the_order_closes(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            ref = await s.erp.create_sales_order(order("305-1", (MAT, "5"), (OTHER, "1")))
            first = await s.erp.create_delivery(delivery("SKFD3", ref, ("305-1-1", MAT, "2")))
            assert first.doc_num == 80000001
            (state,) = (await s.erp.sales_order_states([ref])).values()
            assert state.open_quantities == {10: Decimal(3), 20: Decimal(1)}
            await s.erp.create_delivery(
                delivery("SKFD4", ref, ("305-1-1", MAT, "3"), ("305-1-2", OTHER, "1"))
            )
            (state,) = (await s.erp.sales_order_states([ref])).values()
            assert state.status == "closed"
            assert state.open_quantities == {10: Decimal(0), 20: Decimal(0)}
            assert s.sim.stock(MATNR, "1000", "0001") == 15
            assert await s.erp.delivery_lines(first) == {10: (MAT, Decimal(2))}

    run(scenario)


@pytest.mark.timeout(30)
def test_more_than_the_open_quantity_is_rejected_with_sap_s_message_naming_the_line(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            ref = await s.erp.create_sales_order(order("305-2", (OTHER, "1"), (MAT, "2")))
            with pytest.raises(ErpRejected) as caught:
                await s.erp.create_delivery(
                    delivery("SKFD5", ref, ("305-2-1", OTHER, "1"), ("305-2-2", MAT, "3"))
                )
            assert caught.value.code == "VL 359"
            assert caught.value.message == "Quantity 3 of item 000020 exceeds the open quantity 2"
            assert caught.value.line == 1
            assert await s.erp.find_sales_document("delivery", "SKFD5") is None

    run(scenario)


@pytest.mark.timeout(30)
def test_a_locked_order_is_erp_locked_and_the_next_attempt_posts(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            ref = await s.erp.create_sales_order(order("305-3", (MAT, "1")))
            s.sim.set_faults(order_lock_next=1)
            request = delivery("SKFD6", ref, ("305-3-1", MAT, "1"))
            with pytest.raises(ErpLocked, match="is locked by user SD_CLERK"):
                await s.erp.create_delivery(request)
            assert (await s.erp.create_delivery(request)).doc_num == 80000001

    run(scenario)


# --- invoices, returns, credit notes ---


@pytest.mark.timeout(30)
def test_documents_are_found_by_their_key_after_a_lost_answer(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            ref = await s.erp.create_sales_order(order("306-1", (MAT, "4")))
            shipped = await s.erp.create_delivery(delivery("SKFD7", ref, ("306-1-1", MAT, "4")))
            assert await s.erp.find_sales_document("delivery", "SKFD7") == shipped
            s.sim.set_faults(function_lost_answer_next=1)
            with pytest.raises(ErpUnavailable) as lost:
                await s.erp.create_invoice("SKFI7", shipped)
            assert lost.value.ambiguous
            invoice = await s.erp.find_sales_document("invoice", "SKFI7")
            assert invoice is not None
            with pytest.raises(ErpDuplicateEntry):  # sent again: the wrapper refuses the key
                await s.erp.create_invoice("SKFI7", shipped)
            back = SalesReturn(
                key="SKFR7", delivery=shipped, return_date=DAY, invoice=invoice,
                lines=(SalesReturnLine(delivery_line=10, item_code=MAT, quantity=Decimal(1),
                                       warehouse_code=RETURNS),),
            )  # fmt: skip
            s.sim.set_faults(function_lost_answer_next=1, lost_answer_mode="500")
            with pytest.raises(ErpUnavailable):
                await s.erp.create_return(back)
            returned = await s.erp.find_sales_document("return", "SKFR7")
            assert returned is not None
            flow = s.sim.sales.flow_to[f"{returned.doc_entry:010d}"]
            assert {(f.vbelv, f.vbtyp_v) for f in flow} == {
                (f"{shipped.doc_entry:010d}", "J"), (f"{invoice.doc_entry:010d}", "M"),
            }  # fmt: skip
            assert s.sim.book.returns[MATNR, "1000", "0002"] == 1
            s.sim.set_faults(function_lost_answer_next=1)
            with pytest.raises(ErpUnavailable):
                await s.erp.create_credit_note("SKFC7", returned)
            memo = await s.erp.find_sales_document("credit_note", "SKFC7")
            assert memo is not None
            assert memo.doc_num == 91000001
            assert await s.erp.find_sales_document("credit_note", "SKFI7") is None  # an invoice

    run(scenario)


@pytest.mark.timeout(30)
def test_a_return_beyond_what_was_delivered_is_rejected(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            ref = await s.erp.create_sales_order(order("306-2", (MAT, "2")))
            shipped = await s.erp.create_delivery(delivery("SKFD8", ref, ("306-2-1", MAT, "2")))
            back = SalesReturn(
                key="SKFR8", delivery=shipped, return_date=DAY,
                lines=(SalesReturnLine(delivery_line=10, item_code=MAT, quantity=Decimal(3),
                                       warehouse_code=STORE),),
            )  # fmt: skip
            with pytest.raises(ErpRejected) as caught:
                await s.erp.create_return(back)
            assert (caught.value.code, caught.value.line) == ("V1 801", 0)

    run(scenario)


@pytest.mark.timeout(30)
def test_a_wrapper_ecc_does_not_have_is_a_configuration_error(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            s.sim.functions.set_names(invoice="ZSD_BILL")
            with pytest.raises(ErpAuthFailed, match="Z_SKUFLOW_BILLING_CREATE"):
                await s.erp.create_invoice("SKFI9", PostedDocument(doc_entry=1, doc_num=1))

    run(scenario)


@pytest.mark.timeout(60)
def test_many_orders_are_read_in_few_calls(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url, chunk=25) as s:
            refs = [
                await s.erp.create_sales_order(order(f"307-{n}", (MAT, "1"))) for n in range(60)
            ]
            await s.erp.create_delivery(delivery("SKFD10", refs[0], ("307-0-1", MAT, "1")))
            before = s.client.reads
            found = await s.erp.sales_order_states(refs)
            assert len(found) == 60
            assert found["307-0"].status == "closed"
            assert s.client.reads - before == 3 * 3  # VBAK, VBUK, VBAP per chunk of 25

    run(scenario)
