"""The B1 connector's sales documents (``B1Erp`` as ``SalesOrders`` and ``SalesDeliveries``)
against the Service Layer simulator, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from config.settings import Secret
from devstack.sims.b1.server import B1Simulator
from handlers.connectors.b1.client import B1Client
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.connectors.b1.sales import B1Sales
from handlers.ports.erp import (
    Delivery,
    DeliveryLine,
    ErpLocked,
    ErpRejected,
    ErpUnavailable,
    PostedDocument,
    SalesDeliveries,
    SalesDocumentKind,
    SalesLine,
    SalesOrder,
    SalesOrderRef,
    SalesOrders,
    SalesReturn,
    SalesReturnLine,
)

pytestmark = pytest.mark.integration

COMPANY, USER, PASSWORD = "SBODEMO", "manager", "b1-sales-connector-password"


@dataclass
class Stack:
    sim: B1Simulator
    erp: B1Erp
    client: B1Client

    def calls(self, operation: str, method: str = "GET") -> list[str]:
        """The query strings of the calls of ``operation``."""
        return [
            r.query for r in self.sim.requests if (r.operation, r.method) == (operation, method)
        ]

    def posted(self, operation: str) -> Any:
        """The body of the last POST of ``operation``, as the simulator decoded it."""
        return [
            r.body for r in self.sim.requests if (r.operation, r.method) == (operation, "POST")
        ][-1]


@asynccontextmanager
async def stack(*, timeout: float = 5.0) -> AsyncIterator[Stack]:
    sim = B1Simulator(COMPANY, USER, PASSWORD)
    sim.set_faults(conflict_window_ms=0.0)
    for code in ("01", "02"):
        sim.add_warehouse(code)
    sim.add_item("A-100", stock={"01": 20})
    sim.add_item("C-400", stock={"01": 10})
    sim.add_item("S-300", serials=True)
    sim.add_serials("S-300", "01", "SN-1", "SN-2")
    sim.sales.add_customer("C1")
    sim.sales.add_customer("C2")
    sim.sales.add_tax_code("T20", 20)
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = B1Client(
                sim.url, COMPANY, USER, Secret(PASSWORD), session, timeout=timeout,
                key_field=KEY_FIELD,
            )  # fmt: skip
            yield Stack(sim, B1Erp(client, credit_hold_field="U_CreditHold"), client)
    finally:
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def sline(line_id: str, item: str = "A-100", quantity: str | int = 1, **extra: Any) -> SalesLine:
    return SalesLine(
        line_id=line_id, item_code=item, quantity=Decimal(quantity), warehouse_code="01", **extra
    )


def order(reference: str, *lines: SalesLine, customer: str = "C1", **extra: Any) -> SalesOrder:
    return SalesOrder(
        reference=reference,
        customer_code=customer,
        order_date=date(2026, 12, 1),
        due_date=date(2026, 12, 4),
        lines=lines or (sline(f"{reference}-1"),),
        **extra,
    )


def delivery(key: str, ref: SalesOrderRef, *lines: tuple[str, str | int]) -> Delivery:
    """A delivery of ``(line id, quantity)`` of ``ref``'s lines, from warehouse 01."""
    return Delivery(
        key=key,
        order=ref,
        lines=tuple(
            DeliveryLine(
                order_line=ref.lines[line_id],
                item_code="A-100",
                quantity=Decimal(quantity),
                warehouse_code="01",
            )
            for line_id, quantity in lines
        ),
        delivery_date=date(2026, 12, 3),
    )


def sales_return(key: str, shipped: PostedDocument, line: int, quantity: int) -> SalesReturn:
    return SalesReturn(
        key=key,
        delivery=shipped,
        lines=(
            SalesReturnLine(
                delivery_line=line,
                item_code="A-100",
                quantity=Decimal(quantity),
                warehouse_code="02",
            ),
        ),
        return_date=date(2026, 12, 9),
    )


# --- orders ---


def test_b1_erp_fills_the_sales_order_and_sales_delivery_capabilities() -> None:
    erp = B1Erp.__new__(B1Erp)
    assert isinstance(erp, SalesOrders)
    assert isinstance(erp, SalesDeliveries)


@pytest.mark.timeout(20)
def test_an_order_is_created_with_its_lines_mapped_and_found_again_by_its_reference() -> None:
    async def scenario() -> None:
        async with stack() as s:
            created = await s.erp.create_sales_order(
                order(
                    "302-1234567-7654321",
                    sline("40001", "A-100", 2, unit_price=Decimal("19.99"), tax_code="T20"),
                    sline("40002", "C-400", 1, unit_price=Decimal("5.00")),
                    currency="EUR",
                    remarks="Amazon DE",
                )
            )
            assert created == SalesOrderRef(
                reference="302-1234567-7654321",
                doc_entry=1,
                doc_num=1,
                lines={"40001": 0, "40002": 1},
            )
            sent = s.posted("Orders")
            assert {k: sent[k] for k in ("CardCode", "NumAtCard", "DocDate", "DocDueDate")} == {
                "CardCode": "C1", "NumAtCard": "302-1234567-7654321",
                "DocDate": "2026-12-01", "DocDueDate": "2026-12-04",
            }  # fmt: skip
            assert (sent["DocCurrency"], sent["Comments"]) == (
                "EUR", "skuflow order 302-1234567-7654321: Amazon DE",
            )  # fmt: skip
            assert [line["FreeText"] for line in sent["DocumentLines"]] == ["40001", "40002"]
            assert sent["DocumentLines"][0]["UnitPrice"] == Decimal("19.99")  # a number, exact
            assert await s.erp.find_sales_order("302-1234567-7654321") == created
            assert await s.erp.find_sales_order("302-0000000-0000000") is None

    run(scenario)


@pytest.mark.timeout(20)
def test_a_line_discount_is_sent_as_the_percent_that_gives_the_same_line_total() -> None:
    async def scenario() -> None:
        async with stack() as s:
            line = sline("1", "A-100", 3, unit_price=Decimal("19.99"), discount=Decimal("5.00"))
            await s.erp.create_sales_order(order("R1", line))
            (b1_line,) = s.sim.sales.document("Orders", 1)["DocumentLines"]  # type: ignore[index]
            assert b1_line["DiscountPercent"] == Decimal("8.337502")
            assert b1_line["LineTotal"] == Decimal("54.97")  # 59.97 - 5.00
            with pytest.raises(ValueError, match="discount needs a unit price"):
                await s.erp.create_sales_order(order("R2", sline("1", discount=Decimal(1))))

    run(scenario)


@pytest.mark.timeout(30)
def test_an_order_whose_answer_was_lost_is_found_exactly_once_by_its_reference() -> None:
    async def scenario() -> None:
        async with stack(timeout=0.3) as s:
            s.sim.set_faults(timeout_after_apply_ms=900)
            with pytest.raises(ErpUnavailable) as lost:
                await s.erp.create_sales_order(order("LOST-1"))
            assert lost.value.ambiguous
            s.sim.set_faults(timeout_after_apply_ms=0)
            found = await s.erp.find_sales_order("LOST-1")
            assert found is not None
            assert (found.doc_entry, found.lines, found.draft) == (1, {"LOST-1-1": 0}, False)
            assert [d.body["NumAtCard"] for d in s.sim.documents] == ["LOST-1"]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_refused_order_is_erp_rejected_with_b1s_code_text_and_line() -> None:
    async def scenario() -> None:
        async with stack() as s:
            with pytest.raises(ErpRejected) as refused:
                await s.erp.create_sales_order(order("R1", sline("1"), sline("2", "NOPE")))
            assert refused.value.code == "-10"
            assert refused.value.message == "Invalid item code 'NOPE'  [RDR1.ItemCode][line: 2]"
            assert refused.value.line == 1
            with pytest.raises(ErpRejected, match="Invalid BP code 'C9'"):
                await s.erp.create_sales_order(order("R2", customer="C9"))

    run(scenario)


# --- approval procedures ---


@pytest.mark.timeout(20)
def test_an_order_an_approval_procedure_stops_is_a_draft_and_found_as_one() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.set_rules(approval_above_amount=10)
            big = order("BIG", sline("i1", unit_price=Decimal(50)), sline("i2", "C-400"))
            draft = await s.erp.create_sales_order(big)
            assert draft == SalesOrderRef(
                reference="BIG", doc_entry=1, doc_num=1, lines={"i1": 0, "i2": 1}, draft=True
            )
            assert await s.erp.find_sales_order("BIG") == draft
            states = await s.erp.sales_order_states([draft])
            assert states["BIG"].holds == ("not approved (draft awaiting approval)",)
            assert states["BIG"].status == "open"
            assert states["BIG"].open_quantities == {0: Decimal(1), 1: Decimal(1)}

    run(scenario)


@pytest.mark.timeout(20)
def test_an_approved_draft_is_found_again_as_an_order_with_its_new_doc_entry() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.erp.create_sales_order(order("FIRST"))
            await s.erp.create_sales_order(order("SECOND"))
            s.sim.sales.update_customer("C1", approval=True)
            draft = await s.erp.create_sales_order(order("HELD", sline("i1"), sline("i2")))
            assert (draft.draft, draft.doc_entry) == (True, 1)
            entry = s.sim.sales.approve_draft(draft.doc_entry)
            assert entry == 3
            approved = SalesOrderRef(
                reference="HELD", doc_entry=3, doc_num=3, lines={"i1": 0, "i2": 1}
            )
            assert await s.erp.find_sales_order("HELD") == approved
            state = (await s.erp.sales_order_states([draft]))["HELD"]
            assert (state.ref, state.status, state.holds) == (approved, "open", ())

    run(scenario)


@pytest.mark.timeout(20)
def test_a_rejected_draft_stays_held_as_rejected() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer("C1", approval=True)
            draft = await s.erp.create_sales_order(order("NO"))
            s.sim.sales.reject_draft(draft.doc_entry)
            state = (await s.erp.sales_order_states([draft]))["NO"]
            assert (state.status, state.holds) == ("open", ("not approved (draft rejected)",))

    run(scenario)


# --- holds ---


@pytest.mark.timeout(20)
def test_holds_are_mapped_from_confirmed_credit_holds_frozen_customers_and_statuses() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.add_customer("C3")
            s.sim.sales.add_customer("C4")
            refs = {
                name: await s.erp.create_sales_order(order(name, customer=customer))
                for name, customer in [
                    ("PICKABLE", "C1"), ("UNAPPROVED", "C1"), ("ON-HOLD", "C2"),
                    ("FROZEN", "C3"), ("CANCELLED", "C1"), ("CLOSED", "C4"),
                ]
            }  # fmt: skip
            s.sim.sales.set_confirmed(refs["UNAPPROVED"].doc_entry, False)
            s.sim.sales.set_credit_hold("C2")
            s.sim.sales.update_customer("C3", frozen=True)
            await s.erp.cancel_sales_order(refs["CANCELLED"])
            await s.erp.create_delivery(delivery("D-CLOSED", refs["CLOSED"], ("CLOSED-1", 1)))
            states = await s.erp.sales_order_states(list(refs.values()))
            assert {name: (st.status, st.holds) for name, st in states.items()} == {
                "PICKABLE": ("open", ()),
                "UNAPPROVED": ("open", ("not approved",)),
                "ON-HOLD": ("open", ("not approved", "credit block")),
                "FROZEN": ("open", ("credit block",)),
                "CANCELLED": ("cancelled", ()),
                "CLOSED": ("closed", ()),
            }
            assert states["PICKABLE"].open_quantities == {0: Decimal(1)}
            assert states["CLOSED"].open_quantities == {0: Decimal(0)}
            assert {name: st.ref for name, st in states.items()} == refs
            partners = s.calls("BusinessPartners")
            assert len(partners) == 1
            assert "$select=CardCode,Frozen,U_CreditHold" in partners[0]

    run(scenario)


@pytest.mark.timeout(20)
def test_without_a_credit_hold_field_a_credit_hold_shows_only_as_not_approved() -> None:
    async def scenario() -> None:
        async with stack() as s:
            plain = B1Erp(s.client)
            ref = await plain.create_sales_order(order("R1"))
            s.sim.sales.set_credit_hold("C1")
            state = (await plain.sales_order_states([ref]))["R1"]
            assert state.holds == ("not approved",)
            assert "U_CreditHold" not in s.calls("BusinessPartners")[0]

    run(scenario)


@pytest.mark.timeout(30)
def test_the_states_of_many_orders_are_read_in_few_calls() -> None:
    async def scenario() -> None:
        async with stack() as s:
            refs = [await s.erp.create_sales_order(order(f"R{n:02d}")) for n in range(45)]
            before = len(s.sim.requests)
            states = await s.erp.sales_order_states(refs)
            assert set(states) == {ref.reference for ref in refs}
            calls = [(r.operation, r.query) for r in s.sim.requests[before:]]
            assert [operation for operation, _ in calls] == [
                "Orders", "Orders", "Orders", "BusinessPartners",
            ]  # fmt: skip
            assert all("$select=DocEntry,DocNum,NumAtCard,CardCode," in q for _, q in calls[:3])

    run(scenario)


@pytest.mark.timeout(30)
def test_states_follow_next_links_when_a_read_asks_for_more_than_a_page() -> None:
    async def scenario() -> None:
        async with stack() as s:
            refs = [await s.erp.create_sales_order(order(f"R{n:02d}")) for n in range(25)]
            wide = B1Sales(s.client, chunk=25)
            before = len(s.sim.requests)
            states = await wide.sales_order_states(refs)
            assert len(states) == 25
            orders = [r for r in s.sim.requests[before:] if r.operation == "Orders"]
            assert len(orders) == 2
            assert "$skip=20" in orders[1].query

    run(scenario)


@pytest.mark.timeout(20)
def test_an_order_b1_does_not_have_is_missing_from_the_states() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1"))
            ghost = SalesOrderRef(reference="GHOST", doc_entry=77, doc_num=77, lines={})
            assert set(await s.erp.sales_order_states([ref, ghost])) == {"R1"}
            assert await s.erp.sales_order_states([]) == {}

    run(scenario)


# --- cancel ---


@pytest.mark.timeout(20)
def test_an_order_is_cancelled_before_delivery_and_a_repeated_cancel_is_done() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1"))
            await s.erp.cancel_sales_order(ref)
            await s.erp.cancel_sales_order(ref)  # an earlier attempt's answer was lost: done
            assert (await s.erp.sales_order_states([ref]))["R1"].status == "cancelled"
            assert s.calls("Orders", "POST")[1:] == ["", ""]

    run(scenario)


@pytest.mark.timeout(20)
def test_an_order_with_a_delivery_cannot_be_cancelled_and_b1s_text_says_why() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1", sline("i1", quantity=3)))
            await s.erp.create_delivery(delivery("D1", ref, ("i1", 1)))
            with pytest.raises(ErpRejected) as refused:
                await s.erp.cancel_sales_order(ref)
            assert refused.value.message == (
                "Cannot cancel the document: it has been copied to a target document"
            )

    run(scenario)


@pytest.mark.timeout(20)
def test_cancelling_a_draft_removes_it_and_cancelling_an_approved_one_cancels_its_order() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer("C1", approval=True)
            pending = await s.erp.create_sales_order(order("P1"))
            approved = await s.erp.create_sales_order(order("P2"))
            await s.erp.cancel_sales_order(pending)
            assert s.sim.sales.document("Drafts", pending.doc_entry) is None
            await s.erp.cancel_sales_order(pending)  # already gone: done
            entry = s.sim.sales.approve_draft(approved.doc_entry)
            await s.erp.cancel_sales_order(approved)  # still the draft's ref
            assert entry is not None
            assert s.sim.sales.document("Orders", entry)["Cancelled"] == "tYES"  # type: ignore[index]

    run(scenario)


# --- deliveries ---


@pytest.mark.timeout(20)
def test_partial_deliveries_reduce_open_quantities_and_the_last_closes_the_order() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(
                order("R1", sline("i1", "A-100", 5), sline("i2", "C-400", 2))
            )
            first = await s.erp.create_delivery(delivery("DLV-R1-1", ref, ("i1", "2.5")))
            assert first == PostedDocument(doc_entry=1, doc_num=1)
            state = (await s.erp.sales_order_states([ref]))["R1"]
            assert (state.status, state.open_quantities) == (
                "open", {0: Decimal("2.5"), 1: Decimal(2)},
            )  # fmt: skip
            await s.erp.create_delivery(delivery("DLV-R1-2", ref, ("i1", "2.5"), ("i2", 2)))
            assert (await s.erp.sales_order_states([ref]))["R1"].status == "closed"
            assert s.sim.stock("A-100", "01") == 15
            sent = s.posted("DeliveryNotes")
            assert (sent["CardCode"], sent["JournalMemo"], sent["Comments"]) == (
                "C1", "DLV-R1-2", "skuflow delivery DLV-R1-2",
            )  # fmt: skip
            assert sent["DocumentLines"][0] == {
                "BaseType": 17, "BaseEntry": 1, "BaseLine": 0, "Quantity": Decimal("2.5"),
                "WarehouseCode": "01",
            }  # fmt: skip
            assert len(s.calls("Orders")) == 2  # the order's CardCode was not read again

    run(scenario)


@pytest.mark.timeout(20)
def test_an_over_delivery_is_rejected_with_b1s_text_naming_the_line() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1", sline("i1"), sline("i2", "C-400")))
            with pytest.raises(ErpRejected) as refused:
                await s.erp.create_delivery(delivery("D1", ref, ("i1", 1), ("i2", 2)))
            assert refused.value.message == (
                "Quantity exceeds the open quantity of the base document line  "
                "[DLN1.Quantity][line: 2]"
            )
            assert refused.value.line == 1
            assert await s.erp.find_sales_document("delivery", "D1") is None

    run(scenario)


@pytest.mark.timeout(20)
def test_a_delivery_of_serials_and_its_lines_are_read_back() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1", sline("i1", "S-300", 2)))
            line = DeliveryLine(order_line=0, item_code="S-300", quantity=Decimal(2),
                                warehouse_code="01", serial_numbers=("SN-2", "SN-1"))  # fmt: skip
            shipped = await s.erp.create_delivery(
                Delivery(key="D1", order=ref, lines=(line,), delivery_date=date(2026, 12, 3))
            )
            assert s.sim.serials("S-300", "01") == set()
            assert await s.erp.delivery_lines(shipped) == {0: ("S-300", Decimal(2))}
            with pytest.raises(ErpRejected, match="-2028"):
                await s.erp.delivery_lines(PostedDocument(doc_entry=9, doc_num=9))

    run(scenario)


@pytest.mark.timeout(20)
def test_a_draft_cannot_be_delivered_and_a_key_must_fit_journal_memo() -> None:
    async def scenario() -> None:
        async with stack() as s:
            draft = SalesOrderRef(reference="R1", doc_entry=1, doc_num=1, lines={"a": 0},
                                  draft=True)  # fmt: skip
            with pytest.raises(ValueError, match="draft"):
                await s.erp.create_delivery(delivery("D1", draft, ("a", 1)))
            ref = await s.erp.create_sales_order(order("R1"))
            with pytest.raises(ValueError, match="50 printable characters"):
                await s.erp.create_delivery(delivery("D" * 51, ref, ("R1-1", 1)))

    run(scenario)


# --- invoices, returns, credit notes ---


@pytest.mark.timeout(30)
def test_invoice_return_and_credit_note_are_based_on_the_right_documents() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1", sline("i1", quantity=4)))
            shipped = await s.erp.create_delivery(delivery("DLV-1", ref, ("i1", 4)))
            returned = await s.erp.create_return(sales_return("RET-1", shipped, 0, 1))
            invoiced = await s.erp.create_invoice("INV-1", shipped)
            credited = await s.erp.create_credit_note("CRN-1", returned)
            by_entity = {d.entity: d.body for d in s.sim.documents}
            assert [(ln["BaseType"], ln["BaseEntry"], ln["BaseLine"], ln["Quantity"])
                    for entity in ("Returns", "Invoices", "CreditNotes")
                    for ln in by_entity[entity]["DocumentLines"]] == [
                (15, shipped.doc_entry, 0, 1),  # the return, on the delivery line
                (15, shipped.doc_entry, 0, 3),  # the invoice: what is still open
                (16, returned.doc_entry, 0, 1),  # the credit note, on the return line
            ]  # fmt: skip
            assert s.sim.stock("A-100", "02") == 1  # restocked where the return said
            documents: list[tuple[SalesDocumentKind, str, PostedDocument]] = [
                ("delivery", "DLV-1", shipped), ("return", "RET-1", returned),
                ("invoice", "INV-1", invoiced), ("credit_note", "CRN-1", credited),
            ]  # fmt: skip
            for kind, key, posted in documents:
                assert await s.erp.find_sales_document(kind, key) == posted
            assert await s.erp.find_sales_document("invoice", "DLV-1") is None

    run(scenario)


@pytest.mark.timeout(20)
def test_a_return_beyond_what_was_delivered_is_refused() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1", sline("i1", quantity=2)))
            shipped = await s.erp.create_delivery(delivery("DLV-1", ref, ("i1", 2)))
            await s.erp.create_return(sales_return("RET-1", shipped, 0, 1))
            with pytest.raises(ErpRejected) as refused:
                await s.erp.create_return(sales_return("RET-2", shipped, 0, 2))
            assert "delivered and not yet returned  [RDN1.Quantity][line: 1]" in (
                refused.value.message
            )

    run(scenario)


@pytest.mark.timeout(20)
def test_a_return_after_the_invoice_is_refused_as_b1_refuses_a_closed_base() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1", sline("i1", quantity=2)))
            shipped = await s.erp.create_delivery(delivery("DLV-1", ref, ("i1", 2)))
            await s.erp.create_invoice("INV-1", shipped)
            with pytest.raises(ErpRejected, match="Base document is closed or cancelled"):
                await s.erp.create_return(sales_return("RET-1", shipped, 0, 1))
            with pytest.raises(ErpRejected, match="closed"):  # nothing open: B1 says why
                await s.erp.create_invoice("INV-2", shipped)

    run(scenario)


# --- faults ---


@pytest.mark.timeout(20)
def test_a_lock_is_erp_locked_for_orders_deliveries_and_cancels() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1"))
            s.sim.set_faults(lock_storm_rate=1.0)
            with pytest.raises(ErpLocked, match="-2039"):
                await s.erp.create_sales_order(order("R2"))
            with pytest.raises(ErpLocked):
                await s.erp.create_delivery(delivery("D1", ref, ("R1-1", 1)))
            with pytest.raises(ErpLocked):
                await s.erp.cancel_sales_order(ref)
            assert [d.kind for d in s.sim.documents] == ["order"]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_server_error_on_a_sales_write_is_ambiguous_and_on_a_read_is_not() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("R1"))
            s.sim.set_faults(error_rate=1.0)
            with pytest.raises(ErpUnavailable) as write:
                await s.erp.create_delivery(delivery("D1", ref, ("R1-1", 1)))
            with pytest.raises(ErpUnavailable) as read:
                await s.erp.sales_order_states([ref])
            assert (write.value.ambiguous, read.value.ambiguous) == (True, False)
            assert PASSWORD not in str(write.value) + repr(s.client)

    run(scenario)


@pytest.mark.timeout(20)
def test_keys_and_references_with_spaces_colons_and_quotes_are_found_exactly() -> None:
    async def scenario() -> None:
        async with stack() as s:
            ref = await s.erp.create_sales_order(order("O'Neil 1/2"))
            assert await s.erp.find_sales_order("O'Neil 1/2") == ref
            key = "DLV O'Neil:1/2 50%"
            shipped = await s.erp.create_delivery(delivery(key, ref, ("O'Neil 1/2-1", 1)))
            assert await s.erp.find_sales_document("delivery", key) == shipped
            assert await s.erp.find_sales_document("delivery", "DLV O'Neil:1/2 50") is None
            state = (await s.erp.sales_order_states([ref]))["O'Neil 1/2"]
            assert state.status == "closed"

    run(scenario)
