"""The SAP ECC simulator's sales documents over real HTTP: ORDERS05 into sales orders (refusals,
duplicate purchase orders, sales area from EDSDC), holds set and lifted through ``/_sim``, the
wrapper function modules (deliveries with their goods issue, invoices, returns, credit memos,
rejection) with their rules, locks and lost answers, and the SD tables read by key."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from devstack.sims.ecc import idoc as xml
from devstack.sims.ecc.server import EccSimulator

pytestmark = pytest.mark.integration

SID, CLIENT, USER, PASSWORD = "ECD", "100", "SKUFLOW_RFC", "ecc-sales-password-8d1"
PARTNER, PORT = "SKUFLOW", "SKUFLOWPRT"
MAT, OTHER, BATCHED = "000000000000004711", "000000000000000815", "BATCHED-1"
CUSTOMER, STRANGER = "0000001000", "0000009999"
IDOC_CT = "application/x-sap.idoc"
DELIVER, BILL, RETURN = (
    "Z_SKUFLOW_DELIVERY_CREATE",
    "Z_SKUFLOW_BILLING_CREATE",
    "Z_SKUFLOW_RETURN_CREATE",
)
CREDIT, REJECT = "Z_SKUFLOW_CREDIT_MEMO_CREATE", "Z_SKUFLOW_ORDER_REJECT"
Line = tuple[str, str, str]  # (material, quantity, price)


def orders05(
    reference: str,
    *lines: Line,
    customer: str = CUSTOMER,
    area: tuple[str, str, str] | None = ("1000", "10", "00"),
    plant: str = "1000",
    sloc: str = "0001",
    lifsk: str = "",
) -> bytes:
    """A tiny ORDERS05 IDoc-XML builder for these tests (the connector has its own)."""
    head = {"CURCY": "EUR", **({"LIFSK": lifsk} if lifsk else {})}
    segments = [xml.Segment("E1EDK01", head)]
    for qualf, value in zip(("008", "007", "006"), area or (), strict=False):
        segments.append(xml.Segment("E1EDK14", {"QUALF": qualf, "ORGID": value}))
    segments += [
        xml.Segment("E1EDKA1", {"PARVW": "AG", "PARTN": customer}),
        xml.Segment("E1EDKA1", {"PARVW": "WE", "PARTN": customer}),
        xml.Segment("E1EDK02", {"QUALF": "001", "BELNR": reference}),
    ]
    for index, (material, quantity, price) in enumerate(lines, start=1):
        fields = {"POSEX": f"{index:06d}", "MENGE": quantity, "WERKS": plant, "LGORT": sloc}
        if price:
            fields["VPREI"] = price
        children = [
            xml.Segment("E1EDP02", {"QUALF": "044", "BELNR": f"{reference}-L{index}"}),
            xml.Segment("E1EDP19", {"QUALF": "002", "IDTNR": material}),
        ]
        segments.append(xml.Segment("E1EDP01", fields, children))
    control = {
        "MANDT": CLIENT, "DOCNUM": "7", "DIRECT": "2", "IDOCTYP": "ORDERS05", "MESTYP": "ORDERS",
        "SNDPOR": PORT, "SNDPRT": "LS", "SNDPRN": PARTNER, "RCVPOR": f"SAP{SID}", "RCVPRT": "LS",
        "RCVPRN": f"{SID}CLNT{CLIENT}", "ARCKEY": f"order:{reference}",
    }  # fmt: skip
    return xml.build_idoc_xml("ORDERS05", control, segments)


@dataclass
class Answer:
    status: int
    exports: dict[str, str]
    messages: list[dict[str, str]]

    @property
    def error(self) -> tuple[str, str, str, str]:
        """(ID, NUMBER, MESSAGE, ROW) of the first E row."""
        row = next(m for m in self.messages if m["TYPE"] == "E")
        return row["ID"], row["NUMBER"], row["MESSAGE"], row["ROW"]

    @property
    def ok(self) -> bool:
        return not any(m["TYPE"] in ("E", "A") for m in self.messages)


@dataclass
class Stack:
    sim: EccSimulator
    session: aiohttp.ClientSession
    auth: str = aiohttp.encode_basic_auth(USER, PASSWORD)

    async def post(
        self, body: bytes, path: str, content_type: str = "text/xml"
    ) -> tuple[int, bytes]:
        async with self.session.post(
            self.sim.url + path, data=body, params={"sap-client": CLIENT},
            headers={"Content-Type": content_type, "Authorization": self.auth},
        ) as response:  # fmt: skip
            return response.status, await response.read()

    async def order(self, reference: str, *lines: Line, **options: Any) -> tuple[str, str]:
        """POST an ORDERS05 and wait for its application: (status, VBELN or the message)."""
        status, _ = await self.post(
            orders05(reference, *lines, **options), "/sap/bc/idoc_xml", IDOC_CT
        )
        assert status == 200
        await self.sim.settle()
        entry = [i for i in self.sim.idocs.values() if i.arckey == f"order:{reference}"][-1]
        record = entry.statuses[-1]
        if record.status == "53":
            return "53", entry.sales_document
        return record.status, f"{record.stamid} {record.stamno} {record.text}"

    async def call(
        self,
        function: str,
        params: dict[str, str],
        items: Sequence[dict[str, str]] = (),
        serials: Sequence[dict[str, str]] = (),
    ) -> Answer:
        call = ET.Element(f"{{{xml.RFC_NS}}}{function}")
        for name, value in params.items():
            ET.SubElement(call, name).text = value
        for table, rows in (("ITEMS", items), ("SERIAL_NUMBERS", serials), ("RETURN", [])):
            parent = ET.SubElement(call, table)
            for row in rows:
                item = ET.SubElement(parent, "item")
                for name, value in row.items():
                    ET.SubElement(item, name).text = value
        status, body = await self.post(xml.soap_envelope(call), "/sap/bc/soap/rfc")
        if not body.startswith(b"<"):
            return Answer(status, {}, [])  # a plain 500 page
        answer = xml.soap_body(body)
        exports = {c.tag: c.text or "" for c in answer if c.tag != "RETURN" and not len(c)}
        messages = [{f.tag: f.text or "" for f in item} for item in answer.iterfind("RETURN/item")]
        return Answer(status, exports, messages)

    async def read(self, table: str, fields: tuple[str, ...], where: str) -> list[dict[str, str]]:
        call = ET.Element(f"{{{xml.RFC_NS}}}RFC_READ_TABLE")
        ET.SubElement(call, "QUERY_TABLE").text = table
        ET.SubElement(call, "DELIMITER").text = "|"
        ET.SubElement(ET.SubElement(ET.SubElement(call, "OPTIONS"), "item"), "TEXT").text = where
        names = ET.SubElement(call, "FIELDS")
        for name in fields:
            ET.SubElement(ET.SubElement(names, "item"), "FIELDNAME").text = name
        status, body = await self.post(xml.soap_envelope(call), "/sap/bc/soap/rfc")
        assert status == 200, body
        answer = xml.soap_body(body)
        return [
            dict(zip(fields, (v.strip() for v in (wa.text or "").split("|")), strict=True))
            for wa in answer.iterfind("DATA/item/WA")
        ]

    async def control(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        method = self.session.post if body is not None else self.session.get
        async with method(self.sim.url + path, json=body) as response:
            return response.status, await response.json()


@asynccontextmanager
async def stack() -> AsyncIterator[Stack]:
    sim = EccSimulator(sid=SID, client=CLIENT, user=USER, password=PASSWORD, seed=5)
    sim.add_partner(PARTNER, PORT, message_types=("MBGMCR", "ORDERS"))
    for werks, lgort in (("1000", "0001"), ("1000", "0002"), ("2000", "0001")):
        sim.add_storage_location(werks, lgort)
    sim.add_material(MAT, ["1000"])
    sim.add_material(OTHER, ["1000"])
    sim.add_material(BATCHED, ["1000"], batches=True)
    sim.set_stock(MAT, "1000", "0001", 10)
    sim.set_stock(OTHER, "1000", "0001", 1)
    sim.set_stock(BATCHED, "1000", "0001", 5, batch="LOT1")
    sim.sales.add_customer(CUSTOMER, sales_areas=("1000/10/00",))
    sim.set_processing(tick_ms=5)
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Stack(sim, session)
    finally:
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def item(ref: str, quantity: str, **extra: str) -> dict[str, str]:
    return {"REF_ITEM": ref, "DLV_QTY": quantity, **extra}


async def delivered(s: Stack, vbeln: str, key: str, *items: dict[str, str]) -> Answer:
    return await s.call(DELIVER, {"SALES_ORDER": vbeln, "EXT_REF": key}, list(items))


# --- 1. ORDERS05 into sales orders ---


@pytest.mark.timeout(20)
def test_an_orders05_becomes_a_sales_order_readable_by_key() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, vbeln = await s.order("114-1", (MAT, "3", "9.50"), (OTHER, "1", ""))
            assert (status, vbeln) == ("53", "0000100001")
            (entry,) = s.sim.idocs.values()
            assert [r.status for r in entry.statuses] == ["50", "64", "62", "53"]
            assert entry.statuses[-1].text == "Standard Order 0000100001 has been saved"
            head = await s.read("VBAK", ("VBELN", "AUART", "KUNNR", "BSTNK", "VKORG", "LIFSK"),
                                "BSTNK = '114-1'")  # fmt: skip
            assert head == [{"VBELN": vbeln, "AUART": "OR", "KUNNR": CUSTOMER, "BSTNK": "114-1",
                             "VKORG": "1000", "LIFSK": ""}]  # fmt: skip
            items = await s.read("VBAP", ("POSNR", "MATNR", "KWMENG", "NETWR", "WERKS", "LGORT"),
                                 f"VBELN = '{vbeln}'")  # fmt: skip
            assert items == [
                {"POSNR": "000010", "MATNR": MAT, "KWMENG": "3.000", "NETWR": "28.500",
                 "WERKS": "1000", "LGORT": "0001"},
                {"POSNR": "000020", "MATNR": OTHER, "KWMENG": "1.000", "NETWR": "0.000",
                 "WERKS": "1000", "LGORT": "0001"},
            ]  # fmt: skip
            refs = await s.read("VBKD", ("POSNR", "BSTKD", "BSTKD_E"), f"VBELN = '{vbeln}'")
            assert [r["BSTKD_E"] for r in refs] == ["", "114-1-L1", "114-1-L2"]
            status_row = await s.read("VBUK", ("GBSTK", "LFSTK", "CMGST", "UVALL"),
                                      f"VBELN = '{vbeln}'")  # fmt: skip
            assert status_row == [{"GBSTK": "A", "LFSTK": "A", "CMGST": "", "UVALL": "C"}]

    run(scenario)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lines": (("000000000000000042", "1", ""),)}, "V1 392 Material 42 does not exist"),
        ({"customer": STRANGER}, "VP 199 Customer 9999 does not exist"),
        ({"area": None}, "VG 204 Sales area could not be determined for 1000"),
        ({"area": ("2000", "10", "00")}, "VP 200 Customer 1000 is not maintained in sales area"),
        ({"plant": "2000"}, "V1 394 Material 4711 is not maintained in plant 2000"),
        ({"sloc": "0009"}, "V1 396 Storage location 1000 0009 does not exist"),
        ({"lines": ((MAT, "0", ""),)}, "V1 397 Enter a quantity greater than zero"),
    ],
)
def test_an_order_ecc_cannot_take_is_51_with_sap_s_message(
    change: dict[str, Any], message: str
) -> None:
    async def scenario() -> None:
        async with stack() as s:
            options = dict(change)
            lines = options.pop("lines", ((MAT, "1", "5"),))
            status, text = await s.order("R-1", *lines, **options)
            assert status == "51"
            assert text.startswith(message)
            assert s.sim.sales.orders == {}

    run(scenario)


@pytest.mark.timeout(20)
def test_without_a_sales_area_edsdc_gives_the_customer_s() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer(CUSTOMER, edsdc="1000/10/00")
            status, vbeln = await s.order("E-1", (MAT, "1", "5"), area=None)
            assert status == "53"
            assert s.sim.sales.order(vbeln).area == ("1000", "10", "00")

    run(scenario)


@pytest.mark.timeout(20)
def test_a_second_order_for_one_purchase_order_is_51_unless_ecc_only_warns() -> None:
    async def scenario() -> None:
        async with stack() as s:
            first = await s.order("D-1", (MAT, "1", "5"))
            assert first[0] == "53"
            second = await s.order("D-1", (MAT, "1", "5"))
            assert second == (
                "51",
                "V4 115 Purchase order D-1 already exists in sales document 100001",
            )
            s.sim.sales.set_rules(duplicate_po="warn")
            third = await s.order("D-1", (MAT, "1", "5"))
            assert third[0] == "53"
            assert third[1] != first[1]
            assert len(s.sim.sales.orders_by_reference("D-1")) == 2

    run(scenario)


# --- 2. holds, set and lifted over /_sim ---


@pytest.mark.timeout(20)
def test_an_approval_like_delivery_block_is_lifted_over_sim() -> None:
    async def scenario() -> None:
        async with stack() as s:
            assert (await s.control("/_sim/sales-rules", {"new_order_delivery_block": "01"}))[
                0
            ] == 200
            _, vbeln = await s.order("B-1", (MAT, "2", "5"))
            assert (await s.read("VBAK", ("LIFSK",), f"VBELN = '{vbeln}'")) == [{"LIFSK": "01"}]
            refused = await delivered(s, vbeln, "SKFD1", item("10", "1"))
            assert refused.error[:2] == ("VL", "461")
            status, shown = await s.control(f"/_sim/orders/{vbeln}/delivery-block", {"code": ""})
            assert (status, shown["LIFSK"]) == (200, "")
            assert (await delivered(s, vbeln, "SKFD1", item("10", "1"))).ok

    run(scenario)


@pytest.mark.timeout(20)
def test_an_order_over_the_customer_s_credit_limit_is_credit_blocked_until_released() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, _ = await s.control(
                "/_sim/customers", {"kunnr": CUSTOMER, "credit_limit": "30"}
            )
            assert status == 200
            _, within = await s.order("C-1", (MAT, "2", "10"))
            _, over = await s.order("C-2", (MAT, "2", "10"))
            rows = await s.read(
                "VBUK", ("VBELN", "CMGST"), f"VBELN = '{within}' OR VBELN = '{over}'"
            )
            assert rows == [{"VBELN": within, "CMGST": "A"}, {"VBELN": over, "CMGST": "B"}]
            refused = await delivered(s, over, "SKFD2", item("10", "1"))
            assert refused.error[:2] == ("V1", "154")
            status, shown = await s.control(f"/_sim/orders/{over}/credit", {"action": "release"})
            assert (status, shown["CMGST"]) == (200, "D")
            assert (await delivered(s, over, "SKFD2", item("10", "1"))).ok

    run(scenario)


@pytest.mark.timeout(20)
def test_incompletion_blocks_delivery_and_an_item_without_price_can_make_it() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.set_rules(incomplete_without_price=True)
            _, vbeln = await s.order("I-1", (MAT, "1", ""))
            assert (await s.read("VBUK", ("UVALL", "UVVLK"), f"VBELN = '{vbeln}'")) == [
                {"UVALL": "A", "UVVLK": "A"}
            ]
            assert (await delivered(s, vbeln, "SKFD3", item("10", "1"))).error[:2] == ("VL", "462")
            await s.control(f"/_sim/orders/{vbeln}/incomplete", {"incomplete": False})
            assert (await delivered(s, vbeln, "SKFD3", item("10", "1"))).ok

    run(scenario)


# --- 3. deliveries and their goods issue ---


@pytest.mark.timeout(20)
def test_partial_deliveries_issue_601_until_the_open_quantity_is_gone() -> None:
    async def scenario() -> None:
        async with stack() as s:
            _, vbeln = await s.order("P-1", (MAT, "5", "2"))
            first = await delivered(s, vbeln, "SKFD10", item("10", "2"))
            assert first.ok
            assert first.exports["DELIVERY"] == "0080000001"
            assert s.sim.stock(MAT, "1000", "0001") == 8
            mseg = await s.read(
                "MSEG", ("BWART", "SHKZG", "MENGE"), f"MBLNR = '{first.exports['MAT_DOC']}'"
            )
            assert mseg == [{"BWART": "601", "SHKZG": "H", "MENGE": "2.000"}]
            over = await delivered(s, vbeln, "SKFD11", item("10", "4"))
            assert over.error == (
                "VL",
                "359",
                "Quantity 4 of item 000010 exceeds the open quantity 3",
                "1",
            )
            assert (await delivered(s, vbeln, "SKFD11", item("10", "3"))).ok
            assert (await s.read("VBUK", ("GBSTK", "LFSTK"), f"VBELN = '{vbeln}'")) == [
                {"GBSTK": "C", "LFSTK": "C"}
            ]
            flow = await s.read("VBFA", ("VBELN", "VBTYP_N", "RFMNG"), f"VBELV = '{vbeln}'")
            assert flow == [
                {"VBELN": "0080000001", "VBTYP_N": "J", "RFMNG": "2.000"},
                {"VBELN": "0080000002", "VBTYP_N": "J", "RFMNG": "3.000"},
            ]
            lips = await s.read("LIPS", ("VBELN", "POSNR", "LFIMG", "VGPOS"), f"VGBEL = '{vbeln}'")
            assert [row["LFIMG"] for row in lips] == ["2.000", "3.000"]
            likp = await s.read("LIKP", ("VBELN", "LIFEX"), "LIFEX = 'SKFD11'")
            assert likp == [{"VBELN": "0080000002", "LIFEX": "SKFD11"}]
            completed = await delivered(s, vbeln, "SKFD12", item("10", "1"))
            assert completed.error[:2] == ("VL", "463")

    run(scenario)


@pytest.mark.timeout(20)
def test_a_delivery_without_the_stock_is_m7_021_naming_its_row_and_changes_nothing() -> None:
    async def scenario() -> None:
        async with stack() as s:
            _, vbeln = await s.order("S-1", (MAT, "1", "2"), (OTHER, "3", "2"))
            short = await delivered(s, vbeln, "SKFD20", item("10", "1"), item("20", "3"))
            assert short.error[:2] == ("M7", "021")
            assert short.error[3] == "2"
            assert "Deficit of SL Unrestricted-use 2 EA" in short.error[2]
            assert s.sim.stock(MAT, "1000", "0001") == 10
            assert s.sim.sales.deliveries == {}

    run(scenario)


@pytest.mark.timeout(20)
def test_a_batch_material_needs_its_batch_and_issues_from_it() -> None:
    async def scenario() -> None:
        async with stack() as s:
            _, vbeln = await s.order("BA-1", (BATCHED, "2", "1"))
            assert (await delivered(s, vbeln, "SKFD30", item("10", "2"))).error[:2] == ("M7", "018")
            assert (await delivered(s, vbeln, "SKFD30", item("10", "2", BATCH="lot1"))).ok
            assert s.sim.stock(BATCHED, "1000", "0001", "LOT1") == 3

    run(scenario)


# --- 4. invoices, returns, credit memos ---


@pytest.mark.timeout(20)
def test_invoice_return_and_credit_memo_follow_the_delivery_each_found_by_its_reference() -> None:
    async def scenario() -> None:
        async with stack() as s:
            _, vbeln = await s.order("F-1", (MAT, "4", "2.50"))
            delivery = (await delivered(s, vbeln, "SKFD40", item("10", "4"))).exports["DELIVERY"]
            invoice = await s.call(BILL, {"DELIVERY": delivery, "EXT_REF": "SKFI40"})
            assert invoice.ok
            assert (await s.read("VBRK", ("VBELN", "FKART", "NETWR"), "XBLNR = 'SKFI40'")) == [
                {"VBELN": invoice.exports["BILLING_DOC"], "FKART": "F2", "NETWR": "10.000"}
            ]
            again = await s.call(BILL, {"DELIVERY": delivery, "EXT_REF": "SKFI41"})
            assert again.error[:2] == ("VF", "017")
            back = {"REF_ITEM": "10", "QUANTITY": "3", "MOVE_TYPE": "651"}
            head = {"DELIVERY": delivery, "INVOICE": invoice.exports["BILLING_DOC"]}
            returned = await s.call(RETURN, {**head, "EXT_REF": "SKFR40"}, [back])
            assert returned.ok
            flow = await s.read(
                "VBFA", ("VBTYP_V", "VBTYP_N"), f"VBELN = '{returned.exports['RETURN_ORDER']}'"
            )
            assert flow == [{"VBTYP_V": "J", "VBTYP_N": "H"}, {"VBTYP_V": "M", "VBTYP_N": "H"}]
            other = await s.call(
                RETURN, {"DELIVERY": delivery, "INVOICE": "1", "EXT_REF": "SKFR42"}, [back]
            )
            assert other.error[:2] == ("V1", "302")
            assert s.sim.book.returns[MAT, "1000", "0001"] == 3  # blocked returns stock
            assert s.sim.stock(MAT, "1000", "0001") == 6
            too_much = await s.call(RETURN, {"DELIVERY": delivery, "EXT_REF": "SKFR41"},
                                    [{**back, "QUANTITY": "2"}])  # fmt: skip
            assert too_much.error == (
                "V1",
                "801",
                "Quantity 2 of item 000010 exceeds the returnable 1",
                "1",
            )
            order = await s.read("VBAK", ("VBELN", "VBTYP", "AUART"), "BSTNK = 'SKFR40'")
            assert order == [
                {"VBELN": returned.exports["RETURN_ORDER"], "VBTYP": "H", "AUART": "RE"}
            ]
            memo = await s.call(
                CREDIT, {"RETURN_ORDER": returned.exports["RETURN_ORDER"], "EXT_REF": "SKFC40"}
            )
            assert memo.ok
            assert (await s.read("VBRK", ("VBTYP", "NETWR"), "XBLNR = 'SKFC40'")) == [
                {"VBTYP": "O", "NETWR": "7.500"}
            ]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_second_document_with_one_reference_is_refused() -> None:
    async def scenario() -> None:
        async with stack() as s:
            _, vbeln = await s.order("X-1", (MAT, "2", "1"))
            assert (await delivered(s, vbeln, "SKFD50", item("10", "1"))).ok
            twice = await delivered(s, vbeln, "SKFD50", item("10", "1"))
            assert twice.error[:3] == (
                "ZSKUFLOW",
                "001",
                "Document 0080000001 already carries reference SKFD50",
            )
            assert s.sim.stock(MAT, "1000", "0001") == 9

    run(scenario)


# --- 5. rejection (cancel) ---


@pytest.mark.timeout(20)
def test_rejecting_every_item_cancels_an_order_not_delivered_and_is_refused_after() -> None:
    async def scenario() -> None:
        async with stack() as s:
            _, open_order = await s.order("J-1", (MAT, "1", "1"), (OTHER, "1", "1"))
            assert (await s.call(REJECT, {"SALES_ORDER": open_order, "REASON": "10"})).ok
            rows = await s.read("VBAP", ("POSNR", "ABGRU"), f"VBELN = '{open_order}'")
            assert rows == [{"POSNR": "000010", "ABGRU": "10"}, {"POSNR": "000020", "ABGRU": "10"}]
            assert (await s.read("VBUK", ("ABSTK", "GBSTK"), f"VBELN = '{open_order}'")) == [
                {"ABSTK": "C", "GBSTK": "C"}
            ]
            again = await s.call(REJECT, {"SALES_ORDER": open_order, "REASON": "10"})
            assert [m["TYPE"] for m in again.messages] == ["W"]
            _, shipped = await s.order("J-2", (MAT, "2", "1"))
            assert (await delivered(s, shipped, "SKFD60", item("10", "1"))).ok
            refused = await s.call(REJECT, {"SALES_ORDER": shipped, "REASON": "10"})
            assert refused.error[:2] == ("V1", "803")

    run(scenario)


# --- 6. locks and lost answers ---


@pytest.mark.timeout(20)
def test_a_locked_order_refuses_the_call_and_changes_nothing() -> None:
    async def scenario() -> None:
        async with stack() as s:
            _, vbeln = await s.order("L-1", (MAT, "2", "1"))
            s.sim.set_faults(order_lock_next=1)
            locked = await delivered(s, vbeln, "SKFD70", item("10", "1"))
            assert locked.error[:3] == (
                "V1",
                "042",
                f"Sales document {vbeln} is locked by user SD_CLERK",
            )
            assert s.sim.sales.deliveries == {}
            s.sim.sales.set_rules(function_ms=200)
            first, second = await asyncio.gather(
                delivered(s, vbeln, "SKFD70", item("10", "1")),
                delivered(s, vbeln, "SKFD71", item("10", "1")),
            )
            assert first.ok
            assert second.error[2] == f"Sales document {vbeln} is locked by user {USER}"

    run(scenario)


@pytest.mark.timeout(20)
def test_a_lost_answer_comes_after_the_document_was_committed() -> None:
    async def scenario() -> None:
        async with stack() as s:
            _, vbeln = await s.order("LA-1", (MAT, "2", "1"))
            s.sim.set_faults(function_lost_answer_next=1)
            with pytest.raises(aiohttp.ClientError):
                await delivered(s, vbeln, "SKFD80", item("10", "2"))
            assert (await s.read("LIKP", ("VBELN",), "LIFEX = 'SKFD80'")) == [
                {"VBELN": "0080000001"}
            ]
            s.sim.set_faults(function_lost_answer_next=1, lost_answer_mode="500")
            lost = await s.call(BILL, {"DELIVERY": "0080000001", "EXT_REF": "SKFI80"})
            assert lost.status == 500
            assert (await s.read("VBRK", ("XBLNR",), "XBLNR = 'SKFI80'")) == [{"XBLNR": "SKFI80"}]

    run(scenario)


# --- 7. reads by key ---


class _NoScan(dict[str, Any]):
    def __iter__(self) -> Any:
        raise AssertionError("a read by key scanned the table")

    def values(self) -> Any:
        raise AssertionError("a read by key scanned the table")


@pytest.mark.timeout(20)
def test_sd_reads_by_key_are_lookups_and_other_reads_scan() -> None:
    async def scenario() -> None:
        async with stack() as s:
            _, vbeln = await s.order("K-1", (MAT, "1", "1"))
            real = s.sim.sales.orders
            s.sim.sales.orders = _NoScan(real)
            assert len(await s.read("VBAK", ("VBELN",), "BSTNK = 'K-1'")) == 1
            assert (
                len(await s.read("VBAP", ("POSNR",), f"VBELN = '{vbeln}' AND POSNR = '000010'"))
                == 1
            )
            assert len(await s.read("VBUK", ("GBSTK",), f"VBELN IN ('{vbeln}', '0000000001')")) == 1
            s.sim.sales.orders = real
            assert len(await s.read("VBAK", ("VBELN",), "KUNNR = '0000001000'")) == 1

    run(scenario)


@pytest.mark.timeout(20)
def test_sim_controls_answer_json_and_refuse_what_they_cannot_do() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, shown = await s.control(
                "/_sim/customers", {"kunnr": "0000002000", "credit_limit": "5"}
            )
            assert (status, shown["credit_limit"]) == (200, "5")
            assert (await s.control("/_sim/orders/42/credit", {"action": "release"}))[0] == 404
            assert (await s.control("/_sim/sales-rules", {"duplicate_po": "maybe"}))[0] == 400
            status, names = await s.control("/_sim/functions", {"delivery": "ZSD_DELIVER"})
            assert (status, names["delivery"]) == (200, "ZSD_DELIVER")
            assert (await s.call(DELIVER, {"SALES_ORDER": "1"})).status == 500  # FU_NOT_FOUND now
            started = time.monotonic()
            assert (await s.control("/_sim/faults"))[1]["order_lock_next"] == 0
            assert time.monotonic() - started < 5

    run(scenario)
