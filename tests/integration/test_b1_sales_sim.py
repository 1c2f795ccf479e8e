"""Sales documents in the Service Layer simulator, over real HTTP: business partners, orders and
the drafts approval procedures make of them, holds, and deliveries / invoices / returns /
credit notes based on each other — what it accepts, answers, refuses, and how the fault knobs
apply to them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from devstack.sims.b1 import model as b1_model
from devstack.sims.b1.server import B1Simulator

pytestmark = pytest.mark.integration

COMPANY, USER, PASSWORD = "SBODEMO", "manager", "b1-sales-password"


@dataclass
class Stack:
    sim: B1Simulator
    session: aiohttp.ClientSession
    cookie: dict[str, str]

    async def post(
        self, entity: str, body: Any, timeout: float | None = None, **headers: str
    ) -> tuple[int, Any, dict[str, str]]:
        url, limit = f"{self.sim.url}/{entity}", aiohttp.ClientTimeout(total=timeout)
        async with self.session.post(
            url, json=body, cookies=self.cookie, timeout=limit, headers=headers
        ) as response:
            answer = await response.json() if response.status != 204 else None
            return response.status, answer, dict(response.headers)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(f"{self.sim.url}/{path}", cookies=self.cookie) as response:
            return response.status, await response.json()

    async def delete(self, path: str) -> int:
        async with self.session.delete(f"{self.sim.url}/{path}", cookies=self.cookie) as r:
            return r.status

    async def control(self, path: str, body: Any = None) -> tuple[int, Any]:
        base = self.sim.url.removesuffix("/b1s/v1")
        async with self.session.post(f"{base}/_sim/{path}", json=body) as response:
            return response.status, await response.json()

    async def order(self, reference: str, *lines: dict[str, Any], **header: Any) -> int:
        status, answer, _ = await self.post("Orders", order(reference, *lines, **header))
        assert status == 201, answer
        return int(answer["DocEntry"])


@asynccontextmanager
async def stack() -> AsyncIterator[Stack]:
    sim = B1Simulator(COMPANY, USER, PASSWORD)
    sim.set_faults(conflict_window_ms=0.0)
    for code in ("01", "02", "03"):
        sim.add_warehouse(code)
    sim.add_item("A-100", stock={"01": 10})
    sim.add_item("C-400", stock={"01": 4})
    sim.add_item("B-200", batches=True)
    sim.add_batch("B-200", "01", "LOT-1", 5)
    sim.add_item("S-300", serials=True)
    sim.add_serials("S-300", "01", "SN-1", "SN-2", "SN-3")
    sim.add_item("SVC-1", inventory=False)
    sim.add_item("OLD-1", valid=False, stock={"01": 3})
    sim.add_item("FRZ-1", frozen=True, stock={"01": 3})
    sim.sales.add_customer("C1", name="Amazon DE")
    sim.sales.add_customer("C2")
    sim.sales.add_customer("CX", frozen=True)
    sim.sales.add_tax_code("T20", 20)
    sim.sales.add_tax_code("T0")
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            login = {"CompanyDB": COMPANY, "UserName": USER, "Password": PASSWORD}
            async with session.post(f"{sim.url}/Login", json=login) as response:
                assert response.status == 200
                cookie = {"B1SESSION": response.cookies["B1SESSION"].value}
            yield Stack(sim, session, cookie)
    finally:
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def oline(item: str, quantity: int | str, **extra: Any) -> dict[str, Any]:
    return {"ItemCode": item, "Quantity": quantity, "WarehouseCode": "01"} | extra


def order(reference: str, *lines: dict[str, Any], **header: Any) -> dict[str, Any]:
    return (
        {"CardCode": "C1", "NumAtCard": reference, "DocDueDate": "2026-12-10"}
        | header
        | {"DocumentLines": list(lines) or [oline("A-100", 2)]}
    )


def based(base_type: int, entry: int, line: int, quantity: int | str, **extra: Any) -> Any:
    return {"BaseType": base_type, "BaseEntry": entry, "BaseLine": line, "Quantity": quantity} | (
        extra
    )


def doc(key: str, *lines: dict[str, Any], card: str = "C1", **header: Any) -> dict[str, Any]:
    return (
        {"CardCode": card, "JournalMemo": key, "Comments": f"skuflow {key}"}
        | header
        | {"DocumentLines": list(lines)}
    )


def error(answer: Any) -> tuple[int, str]:
    return answer["error"]["code"], answer["error"]["message"]["value"]


def lines_of(entity: dict[str, Any], *names: str) -> list[tuple[Any, ...]]:
    return [tuple(line[name] for name in names) for line in entity["DocumentLines"]]


# --- orders ---


@pytest.mark.timeout(20)
def test_an_order_is_answered_201_with_the_full_entity_numbered_on_its_own() -> None:
    async def scenario() -> None:
        async with stack() as s:
            body = order(
                "302-1111111-0000001",
                oline("A-100", 3, UnitPrice="10.00", DiscountPercent=10, TaxCode="T20",
                      FreeText="item-1"),
                oline("SVC-1", 1, UnitPrice=5, WarehouseCode="02", FreeText="item-2",
                      U_Channel="AMZ"),
                DocDate="2026-12-01", DocCurrency="EUR", Comments="skuflow order 302",
            )  # fmt: skip
            status, answer, _ = await s.post("Orders", body)
            assert status == 201
            assert answer["odata.metadata"].endswith("$metadata#Orders/@Element")
            header = {
                k: v for k, v in answer.items() if k not in ("DocumentLines", "odata.metadata")
            }
            assert header == {
                "DocEntry": 1,
                "DocNum": 1,
                "DocType": "dDocument_Items",
                "DocObjectCode": "oOrders",
                "DocDate": "2026-12-01",
                "DocDueDate": "2026-12-10",
                "TaxDate": "2026-12-01",
                "CardCode": "C1",
                "CardName": "Amazon DE",
                "NumAtCard": "302-1111111-0000001",
                "DocCurrency": "EUR",
                "DocTotal": 37.4,  # 27.00 + 20% VAT 5.40 + 5.00
                "VatSum": 5.4,
                "Comments": "skuflow order 302",
                "JournalMemo": "Sales Orders - C1",
                "Reference1": "1",
                "Reference2": None,
                "DocumentStatus": "bost_Open",
                "Cancelled": "tNO",
                "Confirmed": "tYES",
                "AuthorizationStatus": "dasWithout",
            }
            assert lines_of(
                answer, "LineNum", "ItemCode", "Quantity", "Price", "LineTotal", "TaxCode",
                "WarehouseCode", "FreeText", "LineStatus", "RemainingOpenQuantity", "BaseType",
            ) == [
                (0, "A-100", 3, 9, 27, "T20", "01", "item-1", "bost_Open", 3, -1),
                (1, "SVC-1", 1, 5, 5, None, "02", "item-2", "bost_Open", 1, -1),
            ]  # fmt: skip
            assert answer["DocumentLines"][1]["U_Channel"] == "AMZ"
            assert (await s.get("Orders(1)"))[1] == answer
            assert s.sim.stock("A-100", "01") == 10  # an order moves no stock
            (record,) = s.sim.documents
            assert (record.kind, record.entity, record.doc_entry) == ("order", "Orders", 1)

    run(scenario)


@pytest.mark.timeout(20)
def test_prefer_return_no_content_answers_204_with_the_orders_location() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, answer, headers = await s.post(
                "Orders", order("R1"), Prefer="return-no-content"
            )
            assert (status, answer) == (204, None)
            assert headers["Location"] == "/b1s/v1/Orders(1)"
            assert headers["Preference-Applied"] == "return-no-content"
            assert (await s.get("Orders(1)"))[1]["NumAtCard"] == "R1"

    run(scenario)


ORDER_REFUSALS = [
    pytest.param(order("R", CardCode="C9"), -10, "Invalid BP code 'C9'  [ORDR.CardCode]",
                 id="unknown customer"),
    pytest.param(order("R", CardCode="CX"), -10, "Business partner 'CX' is inactive",
                 id="frozen customer"),
    pytest.param({"NumAtCard": "R", "DocumentLines": [oline("A-100", 1)]}, -10,
                 "Enter a business partner code", id="no customer"),
    pytest.param(order("R", oline("A-100", 1), oline("ZZZ", 1)), -10,
                 "Invalid item code 'ZZZ'  [RDR1.ItemCode][line: 2]", id="unknown item"),
    pytest.param(order("R", oline("OLD-1", 1)), -10,
                 "10001069 - Item OLD-1 is inactive  [RDR1.ItemCode][line: 1]",
                 id="inactive item"),
    pytest.param(order("R", oline("FRZ-1", 1)), -10, "Item FRZ-1 is inactive", id="frozen item"),
    pytest.param(order("R", oline("A-100", 1, WarehouseCode="99")), -10,
                 "Invalid warehouse code '99'  [RDR1.WhsCode][line: 1]", id="unknown warehouse"),
    pytest.param(order("R", oline("A-100", 1), oline("C-400", 1, TaxCode="T7")), -10,
                 "Invalid tax code 'T7'  [RDR1.TaxCode][line: 2]", id="unknown tax code"),
    pytest.param(order("R", oline("A-100", 0)), -10, "[RDR1.Quantity][line: 1]",
                 id="zero quantity"),
    pytest.param(order("R", oline("A-100", 1, DiscountPercent=120)), -10,
                 "[RDR1.DiscPrcnt][line: 1]", id="discount above 100"),
    pytest.param(order("R", oline("A-100", 1, UnitPrice=-1)), -10, "[RDR1.Price][line: 1]",
                 id="negative price"),
    pytest.param(order("R", oline("A-100", 1, Remarks="x")), -1000,
                 "Property 'Remarks' of 'DocumentLine' is invalid", id="unknown line property"),
    pytest.param(order("R" * 101), -1000, "Value too long in property 'NumAtCard'",
                 id="reference too long"),
    pytest.param(order("R", oline("A-100", 1, FreeText="x" * 101)), -1000,
                 "Value too long in property 'FreeText'", id="free text too long"),
    pytest.param(order("R") | {"DocumentLines": []}, -5002, "at least one row", id="no lines"),
    pytest.param(order("R", DocDueDate="soon"), -10, "Invalid date value 'soon'", id="bad date"),
]  # fmt: skip


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("body", "code", "message"), ORDER_REFUSALS)
def test_a_refused_order_is_answered_as_b1_answers_and_writes_nothing(
    body: dict[str, Any], code: int, message: str
) -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, answer, _ = await s.post("Orders", body)
            assert status == 400
            assert error(answer)[0] == code
            assert message in error(answer)[1]
            assert s.sim.documents == []

    run(scenario)


@pytest.mark.timeout(20)
def test_orders_are_read_by_num_at_card_with_or_select_and_pages() -> None:
    async def scenario() -> None:
        async with stack() as s:
            for n in range(25):
                await s.order(f"R-{n:02d}")
            _, found = await s.get(
                "Orders?$filter=NumAtCard eq 'R-03' or (NumAtCard eq 'R-07' and CardCode eq 'C1')"
                "&$select=DocEntry,NumAtCard"
            )
            assert found["value"] == [
                {"DocEntry": 4, "NumAtCard": "R-03"},
                {"DocEntry": 8, "NumAtCard": "R-07"},
            ]
            _, first = await s.get("Orders?$select=DocEntry&$filter=DocumentStatus eq 'O'")
            assert len(first["value"]) == 20  # 'O' is bost_Open's database value
            async with s.session.get(
                f"{s.sim.url}/{first['odata.nextLink']}", cookies=s.cookie
            ) as response:
                rest = await response.json()
            assert [row["DocEntry"] for row in rest["value"]] == [21, 22, 23, 24, 25]
            status, bad = await s.get("Orders?$filter=NumAtCard eq 'R-01' or")
            assert (status, error(bad)[0]) == (400, -1000)

    run(scenario)


@pytest.mark.timeout(20)
def test_a_business_partner_is_read_by_key_with_its_balances_and_404_when_unknown() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer("C1", credit_limit=500)
            await s.order("R1", oline("A-100", 2, UnitPrice=10))
            status, partner = await s.get("BusinessPartners('C1')")
            assert status == 200
            assert {k: v for k, v in partner.items() if k != "odata.metadata"} == {
                "CardCode": "C1",
                "CardName": "Amazon DE",
                "CardType": "cCustomer",
                "CreditLimit": 500,
                "CurrentAccountBalance": 0,
                "OpenDeliveryNotesBalance": 0,
                "OpenOrdersBalance": 20,
                "Frozen": "tNO",
                "Valid": "tYES",
                "U_CreditHold": "N",
            }
            status, missing = await s.get("BusinessPartners('C9')")
            assert (status, error(missing)) == (404, b1_model.NOT_FOUND)
            _, both = await s.get(
                "BusinessPartners?$filter=CardCode eq 'C1' or CardCode eq 'CX'"
                "&$select=CardCode,Frozen"
            )
            assert both["value"] == [
                {"CardCode": "C1", "Frozen": "tNO"},
                {"CardCode": "CX", "Frozen": "tYES"},
            ]

    run(scenario)


# --- approval procedures: drafts ---


@pytest.mark.timeout(20)
def test_an_order_an_approval_procedure_stops_is_a_draft_answered_2028() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.set_rules(approval_above_amount=100)
            await s.order("SMALL", oline("A-100", 1, UnitPrice=50))
            status, answer, _ = await s.post(
                "Orders", order("BIG", oline("A-100", 3, UnitPrice=50))
            )
            assert (status, error(answer)) == (400, b1_model.NOT_FOUND)
            assert (await s.get("Orders?$filter=NumAtCard eq 'BIG'"))[1]["value"] == []
            _, drafts = await s.get(
                "Drafts?$filter=DocObjectCode eq '17' and NumAtCard eq 'BIG'"
                "&$select=DocEntry,DocObjectCode,AuthorizationStatus,DocumentStatus"
            )
            assert drafts["value"] == [
                {"DocEntry": 1, "DocObjectCode": "oOrders", "AuthorizationStatus": "dasPending",
                 "DocumentStatus": "bost_Open"},
            ]  # fmt: skip
            assert [d.kind for d in s.sim.documents] == ["order", "draft"]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_draft_posted_with_return_no_content_is_204_naming_the_draft() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer("C1", approval=True)
            status, _, headers = await s.post("Orders", order("R1"), Prefer="return-no-content")
            assert status == 204
            assert headers["Location"] == "/b1s/v1/Drafts(1)"

    run(scenario)


@pytest.mark.timeout(20)
def test_an_approved_draft_becomes_an_order_with_its_own_doc_entry() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.order("FIRST")
            s.sim.sales.update_customer("C1", approval_above=30)
            body = order("BIG", oline("A-100", 4, UnitPrice=10, FreeText="i1"),
                         oline("C-400", 1, FreeText="i2"))  # fmt: skip
            assert (await s.post("Orders", body))[0] == 400
            status, decided = await s.control("drafts/1/approve")
            assert status == 200
            assert decided["DocEntry"] == 2
            assert decided["Draft"]["AuthorizationStatus"] == "dasGenerated"
            assert decided["Draft"]["DocumentStatus"] == "bost_Close"
            _, found = await s.get("Orders?$filter=NumAtCard eq 'BIG'")
            (approved,) = found["value"]
            assert approved["DocEntry"] == 2
            assert lines_of(approved, "LineNum", "FreeText", "RemainingOpenQuantity") == [
                (0, "i1", 4),
                (1, "i2", 1),
            ]
            assert [d.kind for d in s.sim.documents] == ["order", "draft", "order"]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_draft_approved_without_saving_is_added_by_save_draft_to_document() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer("C1", approval=True)
            await s.post("Orders", order("R1"))
            service = "DraftsService_SaveDraftToDocument"
            status, answer, _ = await s.post(service, {"Document": {"DocEntry": 1}})
            assert (status, error(answer)) == (400, (-10, "Document is pending approval"))
            assert (await s.control("drafts/1/approve", {"save": False}))[1]["DocEntry"] is None
            assert (await s.get("Drafts(1)"))[1]["AuthorizationStatus"] == "dasApproved"
            assert (await s.post(service, {"Document": {"DocEntry": 1}}))[0] == 204
            assert (await s.get("Orders(1)"))[1]["NumAtCard"] == "R1"
            assert (await s.post(service, {"Document": {"DocEntry": 1}}))[0] == 400  # once only

    run(scenario)


@pytest.mark.timeout(20)
def test_a_rejected_draft_stays_a_draft_and_a_pending_one_can_be_deleted() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer("C1", approval=True)
            await s.post("Orders", order("R1"))
            await s.post("Orders", order("R2"))
            status, rejected = await s.control("drafts/1/reject")
            assert (status, rejected["AuthorizationStatus"]) == (200, "dasRejected")
            status, again = await s.control("drafts/1/approve")
            assert (status, error(again)[0]) == (400, -1000)
            assert await s.delete("Drafts(2)") == 204
            assert (await s.get("Drafts(2)"))[0] == 404
            assert await s.delete("Drafts(2)") == 404
            assert (await s.get("Orders"))[1]["value"] == []

    run(scenario)


@pytest.mark.timeout(20)
def test_orders_of_a_customer_on_credit_hold_are_drafts_when_the_procedure_says_so() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.set_rules(approval_on_credit_hold=True)
            s.sim.sales.set_credit_hold("C1")
            assert (await s.post("Orders", order("HELD")))[0] == 400
            assert (await s.post("Orders", order("FREE", CardCode="C2")))[0] == 201
            assert [d.entity for d in s.sim.documents] == ["Drafts", "Orders"]

    run(scenario)


@pytest.mark.timeout(20)
def test_an_order_over_the_credit_limit_is_a_draft_or_refused_by_the_knob() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer("C1", credit_limit=100)
            await s.order("R1", oline("A-100", 5, UnitPrice=10))  # 50 of 100: passes
            s.sim.sales.set_rules(over_credit_limit="draft")
            big = order("R2", oline("A-100", 6, UnitPrice=10))  # 50 open + 60 > 100
            assert (await s.post("Orders", big))[0] == 400
            assert (await s.get("Drafts(1)"))[1]["NumAtCard"] == "R2"
            s.sim.sales.set_rules(over_credit_limit="refuse")
            status, answer, _ = await s.post("Orders", order("R3", oline("A-100", 6, UnitPrice=10)))
            assert (status, error(answer)) == (
                400, (-10, "Customer C1 has exceeded the credit limit  [ORDR.CardCode]"),
            )  # fmt: skip
            assert len(s.sim.documents) == 2

    run(scenario)


# --- holds ---


@pytest.mark.timeout(20)
def test_a_credit_hold_reads_as_unconfirmed_while_it_lasts_and_blocks_deliveries() -> None:
    async def scenario() -> None:
        async with stack() as s:
            entry = await s.order("R1")
            status, partner = await s.control("customers", {"code": "C1", "credit_hold": True})
            assert (status, partner["U_CreditHold"]) == (200, "Y")
            assert (await s.get(f"Orders({entry})?$select=Confirmed"))[1] == {"Confirmed": "tNO"}
            delivery = doc("D1", based(17, entry, 0, 1))
            status, answer, _ = await s.post("DeliveryNotes", delivery)
            assert (status, error(answer)) == (
                400, (-10, "Base document is not approved  [DLN1.BaseEntry][line: 1]"),
            )  # fmt: skip
            await s.control("customers", {"code": "C1", "credit_hold": False})
            assert (await s.get(f"Orders({entry})"))[1]["Confirmed"] == "tYES"
            assert (await s.post("DeliveryNotes", delivery))[0] == 201

    run(scenario)


@pytest.mark.timeout(20)
def test_an_unapproved_order_is_not_delivered_unless_the_knob_lets_it() -> None:
    async def scenario() -> None:
        async with stack() as s:
            entry = await s.order("R1")
            status, answer = await s.control(f"orders/{entry}/confirmed", {"confirmed": False})
            assert (status, answer["Confirmed"]) == (200, "tNO")
            delivery = doc("D1", based(17, entry, 0, 1))
            assert (await s.post("DeliveryNotes", delivery))[0] == 400
            status, rules = await s.control("sales-rules", {"deliver_unconfirmed": True})
            assert (status, rules["deliver_unconfirmed"]) == (200, True)
            assert (await s.post("DeliveryNotes", delivery))[0] == 201

    run(scenario)


# --- deliveries ---


@pytest.mark.timeout(20)
def test_partial_deliveries_issue_stock_reduce_open_quantities_and_the_last_closes_the_order() -> (
    None
):
    async def scenario() -> None:
        async with stack() as s:
            entry = await s.order("R1", oline("A-100", 5, FreeText="i1"), oline("C-400", 2))
            status, first, _ = await s.post(
                "DeliveryNotes", doc("D1", based(17, entry, 0, 2), DocDate="2026-12-04")
            )
            assert status == 201
            assert (first["DocEntry"], first["DocObjectCode"], first["NumAtCard"]) == (
                1, "oDeliveryNotes", "R1",
            )  # fmt: skip
            assert first["JournalMemo"] == "D1"
            assert lines_of(first, "ItemCode", "Quantity", "WarehouseCode", "BaseType",
                            "BaseEntry", "BaseLine", "FreeText") == [
                ("A-100", 2, "01", 17, entry, 0, "i1"),
            ]  # fmt: skip
            _, after = await s.get(f"Orders({entry})")
            assert lines_of(after, "RemainingOpenQuantity", "LineStatus") == [
                (3, "bost_Open"),
                (2, "bost_Open"),
            ]
            rest = doc("D2", based(17, entry, 0, 3), based(17, entry, 1, 2))
            assert (await s.post("DeliveryNotes", rest))[0] == 201
            _, done = await s.get(f"Orders({entry})")
            assert done["DocumentStatus"] == "bost_Close"
            assert lines_of(done, "RemainingOpenQuantity", "LineStatus") == [
                (0, "bost_Close"),
                (0, "bost_Close"),
            ]
            assert s.sim.stock("A-100", "01") == 5
            assert s.sim.stock("C-400", "01") == 2
            status, closed, _ = await s.post("DeliveryNotes", doc("D3", based(17, entry, 0, 1)))
            assert (status, error(closed)[1]) == (
                400, "Base document is closed or cancelled  [DLN1.BaseEntry][line: 1]",
            )  # fmt: skip

    run(scenario)


@pytest.mark.timeout(20)
def test_over_delivery_is_refused_naming_the_line_unless_the_knob_allows_it() -> None:
    async def scenario() -> None:
        async with stack() as s:
            entry = await s.order("R1", oline("A-100", 3), oline("C-400", 1))
            body = doc("D1", based(17, entry, 1, 1), based(17, entry, 0, 2),
                       based(17, entry, 0, 2))  # fmt: skip
            status, answer, _ = await s.post("DeliveryNotes", body)
            assert (status, error(answer)) == (400, (
                -10,
                "Quantity exceeds the open quantity of the base document line  "
                "[DLN1.Quantity][line: 3]",
            ))  # fmt: skip
            assert s.sim.documents[1:] == []
            assert s.sim.stock("A-100", "01") == 10
            s.sim.sales.set_rules(allow_over_delivery=True)
            assert (await s.post("DeliveryNotes", body))[0] == 201
            _, after = await s.get(f"Orders({entry})")
            assert after["DocumentStatus"] == "bost_Close"
            assert s.sim.stock("A-100", "01") == 6

    run(scenario)


@pytest.mark.timeout(20)
def test_a_delivery_of_batches_and_serials_issues_exactly_them() -> None:
    async def scenario() -> None:
        async with stack() as s:
            entry = await s.order("R1", oline("B-200", 2), oline("S-300", 2), oline("SVC-1", 1))
            body = doc(
                "D1",
                based(17, entry, 0, 2, BatchNumbers=[{"BatchNumber": "LOT-1", "Quantity": 2}]),
                based(17, entry, 1, 2, SerialNumbers=[{"InternalSerialNumber": "SN-3"},
                                                      {"InternalSerialNumber": "SN-1"}]),
                based(17, entry, 2, 1),
            )  # fmt: skip
            status, answer, _ = await s.post("DeliveryNotes", body)
            assert status == 201
            assert s.sim.batch_stock("B-200", "01", "LOT-1") == 3
            assert s.sim.serials("S-300", "01") == {"SN-2"}
            assert answer["DocumentLines"][1]["SerialNumbers"] == [
                {"InternalSerialNumber": "SN-3", "Quantity": 1},
                {"InternalSerialNumber": "SN-1", "Quantity": 1},
            ]

    run(scenario)


DELIVERY_REFUSALS = [
    pytest.param(doc("D", based(17, 9, 0, 1)), -10,
                 "Base document does not exist  [DLN1.BaseEntry][line: 1]", id="no such order"),
    pytest.param(doc("D", based(17, 1, 0, 1), card="C2"), -10,
                 "Base document card and target document card do not match", id="other customer"),
    pytest.param(doc("D", based(17, 1, 5, 1)), -10,
                 "Base document line does not exist  [DLN1.BaseLine][line: 1]", id="no such line"),
    pytest.param(doc("D", based(13, 1, 0, 1)), -10,
                 "based on Orders (BaseType 17) only  [DLN1.BaseType][line: 1]", id="base type"),
    pytest.param(doc("D", based(17, 1, 0, 1, ItemCode="C-400")), -10,
                 "Item C-400 differs from the base document line's", id="other item"),
    pytest.param(doc("D", based(17, 1, 0, 1, WarehouseCode="02")), -10,
                 "falls into negative inventory  [DLN1.ItemCode][line: 1]", id="no stock there"),
    pytest.param(doc("D", based(17, 1, 0, 1, WarehouseCode="99")), -10,
                 "Invalid warehouse code '99'  [DLN1.WhsCode][line: 1]", id="unknown warehouse"),
    pytest.param(doc("D", based(17, 1, 1, 1)), b1_model.NO_BATCH_SERIAL[0],
                 b1_model.NO_BATCH_SERIAL[1], id="batch missing"),
    pytest.param(doc("D", based(17, 1, 2, 1)), b1_model.NO_BATCH_SERIAL[0],
                 b1_model.NO_BATCH_SERIAL[1], id="serial missing"),
    pytest.param(doc("D", based(17, 1, 2, 1, SerialNumbers=[{"InternalSerialNumber": "SN-9"}])),
                 -10, "Batch/serial number SN-9 selected in row 1 does not exist",
                 id="serial not in stock"),
    pytest.param(doc("D", based(17, 1, 1, 1, BatchNumbers=[{"BatchNumber": "LOT-9",
                                                            "Quantity": 1}])),
                 -10, "Batch/serial number LOT-9 selected in row 1", id="batch not in stock"),
    pytest.param(doc("D", based(17, 1, 0, 1, Price=3)), -1000,
                 "Property 'Price' of 'DocumentLine' is invalid", id="unknown property"),
]  # fmt: skip


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("body", "code", "message"), DELIVERY_REFUSALS)
def test_a_refused_delivery_is_answered_as_b1_answers_and_moves_nothing(
    body: dict[str, Any], code: int, message: str
) -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.order("R1", oline("A-100", 2), oline("B-200", 1), oline("S-300", 1))
            status, answer, _ = await s.post("DeliveryNotes", body)
            assert status == 400
            assert error(answer)[0] == code
            assert message in error(answer)[1]
            assert [d.kind for d in s.sim.documents] == ["order"]
            assert s.sim.stock("A-100", "01") == 10
            _, still = await s.get("Orders(1)")
            assert lines_of(still, "RemainingOpenQuantity") == [(2,), (1,), (1,)]

    run(scenario)


# --- Cancel and Close ---


@pytest.mark.timeout(20)
def test_an_undelivered_order_is_cancelled_and_then_refuses_deliveries_and_a_second_cancel() -> (
    None
):
    async def scenario() -> None:
        async with stack() as s:
            entry = await s.order("R1")
            assert (await s.post(f"Orders({entry})/Cancel", None))[0] == 204
            _, cancelled = await s.get(f"Orders({entry})")
            assert (cancelled["Cancelled"], cancelled["DocumentStatus"]) == ("tYES", "bost_Close")
            assert lines_of(cancelled, "LineStatus") == [("bost_Close",)]
            status, answer, _ = await s.post("DeliveryNotes", doc("D1", based(17, entry, 0, 1)))
            assert (status, error(answer)[1]) == (
                400, "Base document is closed or cancelled  [DLN1.BaseEntry][line: 1]",
            )  # fmt: skip
            status, again, _ = await s.post(f"Orders({entry})/Cancel", None)
            assert (status, error(again)) == (400, (-10, "Document is already closed or cancelled"))
            assert (await s.post("Orders(99)/Cancel", None))[0] == 404

    run(scenario)


@pytest.mark.timeout(20)
def test_an_order_with_a_delivery_cannot_be_cancelled_but_can_be_closed() -> None:
    async def scenario() -> None:
        async with stack() as s:
            entry = await s.order("R1", oline("A-100", 3))
            assert (await s.post("DeliveryNotes", doc("D1", based(17, entry, 0, 1))))[0] == 201
            status, answer, _ = await s.post(f"Orders({entry})/Cancel", None)
            assert (status, error(answer)) == (400, (
                -10, "Cannot cancel the document: it has been copied to a target document",
            ))  # fmt: skip
            assert (await s.post(f"Orders({entry})/Close", None))[0] == 204
            _, closed = await s.get(f"Orders({entry})")
            assert (closed["Cancelled"], closed["DocumentStatus"]) == ("tNO", "bost_Close")
            assert lines_of(closed, "RemainingOpenQuantity", "LineStatus") == [(2, "bost_Close")]

    run(scenario)


# --- invoices, returns, credit notes ---


async def delivered(s: Stack, *lines: dict[str, Any]) -> int:
    """An order of ``lines`` delivered in full: the delivery's DocEntry."""
    stock = ("BatchNumbers", "SerialNumbers")
    entry = await s.order("R1", *({k: v for k, v in ln.items() if k not in stock} for ln in lines))
    based_lines = [based(17, entry, n, line["Quantity"]) | {
        k: v for k, v in line.items() if k in stock
    } for n, line in enumerate(lines)]  # fmt: skip
    status, answer, _ = await s.post("DeliveryNotes", doc("D1", *based_lines))
    assert status == 201, answer
    return int(answer["DocEntry"])


@pytest.mark.timeout(20)
def test_an_invoice_of_a_delivery_closes_it_and_moves_no_stock() -> None:
    async def scenario() -> None:
        async with stack() as s:
            delivery = await delivered(s, oline("A-100", 2, UnitPrice=10, TaxCode="T20"))
            status, invoice, _ = await s.post("Invoices", doc("I1", based(15, delivery, 0, 2)))
            assert status == 201
            assert (invoice["DocObjectCode"], invoice["DocTotal"], invoice["NumAtCard"]) == (
                "oInvoices", 24, "R1",
            )  # fmt: skip
            assert lines_of(invoice, "BaseType", "BaseEntry", "BaseLine", "Quantity") == [
                (15, delivery, 0, 2),
            ]
            assert (await s.get(f"DeliveryNotes({delivery})"))[1]["DocumentStatus"] == "bost_Close"
            assert s.sim.stock("A-100", "01") == 8
            assert (await s.get("BusinessPartners('C1')"))[1]["CurrentAccountBalance"] == 24
            status, again, _ = await s.post("Invoices", doc("I2", based(15, delivery, 0, 1)))
            assert (status, error(again)[1]) == (
                400, "Base document is closed or cancelled  [INV1.BaseEntry][line: 1]",
            )  # fmt: skip

    run(scenario)


@pytest.mark.timeout(20)
def test_a_return_restocks_into_its_warehouse_up_to_what_was_delivered_and_not_returned() -> None:
    async def scenario() -> None:
        async with stack() as s:
            delivery = await delivered(s, oline("A-100", 3))
            body = doc("RT1", based(15, delivery, 0, 2, WarehouseCode="03"))
            status, returned, _ = await s.post("Returns", body)
            assert status == 201
            assert returned["DocObjectCode"] == "oReturns"
            assert s.sim.stock("A-100", "01") == 7
            assert s.sim.stock("A-100", "03") == 2
            status, answer, _ = await s.post("Returns", doc("RT2", based(15, delivery, 0, 2)))
            assert (status, error(answer)) == (400, (
                -10,
                "Quantity exceeds the quantity delivered and not yet returned  "
                "[RDN1.Quantity][line: 1]",
            ))  # fmt: skip
            assert (await s.post("Returns", doc("RT3", based(15, delivery, 0, 1))))[0] == 201
            assert s.sim.stock("A-100", "01") == 8  # default: the delivery line's warehouse
            _, closed = await s.get(f"DeliveryNotes({delivery})")
            assert closed["DocumentStatus"] == "bost_Close"

    run(scenario)


@pytest.mark.timeout(20)
def test_a_return_takes_back_only_serials_and_batches_its_delivery_issued() -> None:
    async def scenario() -> None:
        async with stack() as s:
            delivery = await delivered(
                s,
                oline("S-300", 1, SerialNumbers=[{"InternalSerialNumber": "SN-2"}]),
                oline("B-200", 2, BatchNumbers=[{"BatchNumber": "LOT-1", "Quantity": 2}]),
            )
            s.sim.add_serials("S-300", "02", "SN-7")  # in stock elsewhere, never delivered
            other = doc("RT1", based(15, delivery, 0, 1, SerialNumbers=[
                {"InternalSerialNumber": "SN-1"}]))  # fmt: skip
            status, answer, _ = await s.post("Returns", other)
            assert (status, error(answer)[1]) == (
                400,
                b1_model.NO_BATCH.format(number="SN-1", row=1),
            )
            batch = doc("RT2", based(15, delivery, 1, 1, BatchNumbers=[
                {"BatchNumber": "LOT-1", "Quantity": 1}]))  # fmt: skip
            serial = doc("RT3", based(15, delivery, 0, 1, SerialNumbers=[
                {"InternalSerialNumber": "SN-2"}]))  # fmt: skip
            assert (await s.post("Returns", batch))[0] == 201
            assert (await s.post("Returns", serial))[0] == 201
            assert s.sim.serials("S-300", "01") == {"SN-1", "SN-2", "SN-3"}
            assert s.sim.batch_stock("B-200", "01", "LOT-1") == 4

    run(scenario)


@pytest.mark.timeout(20)
def test_a_delivery_closed_by_its_invoice_is_no_base_for_a_return_unless_the_knob_says() -> None:
    async def scenario() -> None:
        async with stack() as s:
            delivery = await delivered(s, oline("A-100", 2))
            assert (await s.post("Invoices", doc("I1", based(15, delivery, 0, 2))))[0] == 201
            body = doc("RT1", based(15, delivery, 0, 1))
            status, answer, _ = await s.post("Returns", body)
            assert (status, error(answer)[1]) == (
                400, "Base document is closed or cancelled  [RDN1.BaseEntry][line: 1]",
            )  # fmt: skip
            s.sim.sales.set_rules(return_from_closed_delivery=True)
            assert (await s.post("Returns", body))[0] == 201
            status, answer, _ = await s.post("Returns", doc("RT2", based(15, delivery, 0, 2)))
            assert "not yet returned" in error(answer)[1]  # still at most delivered - returned

    run(scenario)


@pytest.mark.timeout(20)
def test_a_credit_note_based_on_an_invoice_takes_the_goods_back_at_most_what_was_invoiced() -> None:
    async def scenario() -> None:
        async with stack() as s:
            delivery = await delivered(s, oline("A-100", 3, UnitPrice=10))
            assert (await s.post("Invoices", doc("IN1", based(15, delivery, 0, 3))))[0] == 201
            # the invoice closed the delivery: no return can be based on it any more
            assert (await s.post("Returns", doc("RT1", based(15, delivery, 0, 1))))[0] == 400
            status, credit, _ = await s.post("CreditNotes", doc("CN1", based(13, 1, 0, 2)))
            assert (status, credit["DocTotal"]) == (201, 20)
            assert s.sim.stock("A-100", "01") == 9  # 10 - 3 delivered + 2 taken back
            status, over, _ = await s.post("CreditNotes", doc("CN2", based(13, 1, 0, 2)))
            assert status == 400, over  # 3 invoiced, 2 credited already: 1 left
            assert s.sim.stock("A-100", "01") == 9

    run(scenario)


@pytest.mark.timeout(20)
def test_a_credit_note_is_based_on_a_return_and_closes_it() -> None:
    async def scenario() -> None:
        async with stack() as s:
            delivery = await delivered(s, oline("A-100", 2, UnitPrice=10))
            assert (await s.post("Returns", doc("RT1", based(15, delivery, 0, 2))))[0] == 201
            status, wrong, _ = await s.post("CreditNotes", doc("CN0", based(15, delivery, 0, 2)))
            assert (status, error(wrong)[1]) == (
                400, "Document can be based on Returns or Invoices (BaseType 16 or 13) only  "
                "[RIN1.BaseType][line: 1]",
            )  # fmt: skip
            status, credit, _ = await s.post("CreditNotes", doc("CN1", based(16, 1, 0, 2)))
            assert status == 201
            assert (credit["DocObjectCode"], credit["DocTotal"]) == ("oCreditNotes", 20)
            assert (await s.get("Returns(1)"))[1]["DocumentStatus"] == "bost_Close"
            assert s.sim.stock("A-100", "01") == 10  # the return restocked; the credit note not
            assert (await s.get("BusinessPartners('C1')"))[1]["CurrentAccountBalance"] == -20
            _, found = await s.get("CreditNotes?$filter=JournalMemo eq 'CN1'&$select=DocEntry")
            assert found["value"] == [{"DocEntry": 1}]

    run(scenario)


# --- the fault knobs apply to sales writes as to stock documents ---


@pytest.mark.timeout(20)
def test_lock_storms_and_2035_collisions_refuse_sales_writes_and_write_nothing() -> None:
    async def scenario() -> None:
        async with stack() as s:
            entry = await s.order("R1")
            s.sim.set_faults(lock_storm_rate=1.0)
            for entity, body in [
                ("Orders", order("R2")),
                ("DeliveryNotes", doc("D1", based(17, entry, 0, 1))),
                (f"Orders({entry})/Cancel", None),
            ]:
                status, answer, _ = await s.post(entity, body)
                assert (status, error(answer)) == (400, b1_model.MODIFIED)
            s.sim.set_faults(lock_storm_rate=0.0, collision_count=1)
            status, answer, _ = await s.post("DeliveryNotes", doc("D1", based(17, entry, 0, 1)))
            assert (status, error(answer)) == (400, b1_model.DUPLICATE)
            assert [d.kind for d in s.sim.documents] == ["order"]
            assert (await s.get(f"Orders({entry})"))[1]["Cancelled"] == "tNO"
            assert s.sim.stock("A-100", "01") == 10

    run(scenario)


@pytest.mark.timeout(20)
def test_an_order_applied_then_answered_2035_or_late_is_there_to_be_found() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(collision_after_apply=1)
            status, answer, _ = await s.post("Orders", order("R1"))
            assert (status, error(answer)) == (400, b1_model.DUPLICATE)
            s.sim.set_faults(timeout_after_apply_ms=600)
            with pytest.raises(asyncio.TimeoutError):
                await s.post("Orders", order("R2"), timeout=0.2)
            s.sim.set_faults(timeout_after_apply_ms=0)
            _, found = await s.get("Orders?$filter=NumAtCard eq 'R1' or NumAtCard eq 'R2'")
            assert [row["NumAtCard"] for row in found["value"]] == ["R1", "R2"]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_unique_num_at_card_answers_2035_for_a_second_order() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(unique_key_field="NumAtCard")
            await s.order("R1")
            status, answer, _ = await s.post("Orders", order("R1"))
            assert (status, error(answer)) == (400, b1_model.DUPLICATE)
            assert len(s.sim.documents) == 1

    run(scenario)


@pytest.mark.timeout(20)
def test_a_delivery_touching_an_item_within_the_conflict_window_is_locked() -> None:
    async def scenario() -> None:
        async with stack() as s:
            entry = await s.order("R1")  # touches A-100, as a posting does
            s.sim.set_faults(conflict_window_ms=60_000)
            status, answer, _ = await s.post("DeliveryNotes", doc("D1", based(17, entry, 0, 1)))
            assert (status, error(answer)) == (400, b1_model.MODIFIED)
            status, answer, _ = await s.post("Orders", order("R2", oline("C-400", 1)))
            assert status == 201  # another item is free

    run(scenario)


@pytest.mark.timeout(20)
def test_an_outage_and_server_errors_answer_sales_calls_too() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(outage_until=datetime.now(UTC) + timedelta(minutes=5))
            async with s.session.get(f"{s.sim.url}/Orders", cookies=s.cookie) as response:
                assert response.status == 503
            s.sim.set_faults(outage_until=None, error_rate=1.0)
            status, answer, _ = await s.post("Orders", order("R1"))
            assert (status, error(answer)[0]) == (500, -1)
            assert s.sim.documents == []

    run(scenario)


# --- records, knobs and controls ---


@pytest.mark.timeout(20)
def test_requests_and_documents_record_the_sales_calls() -> None:
    async def scenario() -> None:
        async with stack() as s:
            delivery = await delivered(s, oline("A-100", 1))
            await s.post("Invoices", doc("I1", based(15, delivery, 0, 1)))
            await s.get("Orders(1)")
            operations = [(r.method, r.operation, r.status) for r in s.sim.requests[1:]]
            assert operations == [
                ("POST", "Orders", 201),
                ("POST", "DeliveryNotes", 201),
                ("POST", "Invoices", 201),
                ("GET", "Orders", 200),
            ]
            base = s.sim.url.removesuffix("/b1s/v1")
            async with s.session.get(f"{base}/_sim/documents") as response:
                records = await response.json()
            assert [(r["kind"], r["entity"], r["doc_entry"]) for r in records] == [
                ("order", "Orders", 1),
                ("delivery", "DeliveryNotes", 1),
                ("invoice", "Invoices", 1),
            ]

    run(scenario)


@pytest.mark.timeout(20)
def test_refusal_texts_can_be_replaced_and_unknown_knobs_are_refused() -> None:
    async def scenario() -> None:
        async with stack() as s:
            text = "-10 Cantidad supera la cantidad abierta [{table}.Quantity][line: {row}]"
            status, _ = await s.control("sales-rules", {"messages": {"over_open": text}})
            assert status == 200
            entry = await s.order("R1")
            _, answer, _ = await s.post("DeliveryNotes", doc("D1", based(17, entry, 0, 5)))
            assert (
                error(answer)[1]
                == "-10 Cantidad supera la cantidad abierta [DLN1.Quantity][line: 1]"
            )
            for bad in ({"messages": {"nope": "x"}}, {"approve_everything": True}):
                status, answer = await s.control("sales-rules", bad)
                assert (status, error(answer)[0]) == (400, -1000)
            status, answer = await s.control("customers", {"code": "C7", "credit_limit": 10})
            assert (status, answer["CreditLimit"]) == (200, 10)
            status, answer = await s.control("tax-codes", {"code": "T7", "rate": "7.5"})
            assert (status, s.sim.sales.tax_codes["T7"]) == (200, Decimal("7.5"))
            status, answer = await s.control("orders/99/confirmed", {"confirmed": True})
            assert (status, error(answer)) == (400, (-1000, "no Orders(99)"))

    run(scenario)
