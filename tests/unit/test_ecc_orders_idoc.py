"""The connector's ORDERS05: EDI_DC40 as the partner profile expects it, the header's sales area,
dates, partners and purchase order number, one E1EDP01 per line in the order given; and what
the simulator's ORDERS05 reading makes of it (the two sides share no code)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from xml.etree import ElementTree as ET

import pytest

from devstack.sims.ecc import idoc as sim_idoc
from devstack.sims.ecc import model
from devstack.sims.ecc.sales import SalesBook
from handlers.connectors.ecc.idoc import ControlRecord, IdocError
from handlers.connectors.ecc.orders import SalesArea, customer_number, orders_xml
from handlers.ports.erp import SalesLine, SalesOrder

pytestmark = pytest.mark.timeout(30)

CONTROL = ControlRecord(client="100", sid="P01", sender_port="SKUFLOW", sender_partner="SKUFLOW")
AREA = SalesArea(sales_org="1000", distribution_channel="10", division="00", order_type="OR")
CREATED = datetime(2026, 3, 2, 9, 30, 5)


def _order(*lines: SalesLine, **changes: object) -> SalesOrder:
    fields: dict[str, object] = {
        "reference": "028-1234567-7654321",
        "customer_code": "4711",
        "order_date": date(2026, 3, 1),
        "due_date": date(2026, 3, 4),
        "currency": "EUR",
        "lines": lines or (_line("11122233344455", "12345", "2", "9.99"),),
    }
    fields.update(changes)
    return SalesOrder(**fields)  # type: ignore[arg-type]  # fields of mixed types, as the tests vary them


def _line(
    line_id: str, item: str, quantity: str, price: str | None = None, discount: Decimal = Decimal(0)
) -> SalesLine:
    return SalesLine(
        line_id=line_id, item_code=item, quantity=Decimal(quantity), warehouse_code="1000/0001",
        unit_price=None if price is None else Decimal(price), discount=discount,
    )  # fmt: skip


def _xml(order: SalesOrder, area: SalesArea = AREA) -> ET.Element:
    raw = orders_xml(
        CONTROL, 42, order, area=area, discount_condition="RB00", created=CREATED,
        arckey=f"order:{order.reference}#42",
    )  # fmt: skip
    assert raw.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.fromstring(raw)


def _fields(element: ET.Element | None) -> dict[str, str | None]:
    assert element is not None
    return {child.tag: child.text for child in element if not len(child)}


def test_the_control_record_is_orders05_for_the_partner_profile() -> None:
    root = _xml(_order())
    assert root.tag == "ORDERS05"
    assert _fields(root.find("IDOC/EDI_DC40")) == {
        "TABNAM": "EDI_DC40", "MANDT": "100", "DOCNUM": "0000000000000042", "DIRECT": "2",
        "IDOCTYP": "ORDERS05", "MESTYP": "ORDERS", "SNDPOR": "SKUFLOW", "SNDPRT": "LS",
        "SNDPRN": "SKUFLOW", "RCVPOR": "SAPP01", "RCVPRT": "LS", "RCVPRN": "P01CLNT100",
        "CREDAT": "20260302", "CRETIM": "093005", "ARCKEY": "order:028-1234567-7654321#42",
    }  # fmt: skip


def test_header_segments_come_in_orders05_order_with_sales_area_dates_partners_and_po() -> None:
    idoc = _xml(_order()).find("IDOC")
    assert idoc is not None
    names = [child.tag for child in idoc]
    assert names == ["EDI_DC40", "E1EDK01", *["E1EDK14"] * 4, "E1EDK03", "E1EDK03",
                     "E1EDKA1", "E1EDKA1", "E1EDK02", "E1EDP01"]  # fmt: skip
    assert _fields(idoc.find("E1EDK01")) == {"CURCY": "EUR"}
    assert [(_fields(s)["QUALF"], _fields(s)["ORGID"]) for s in idoc.iterfind("E1EDK14")] == [
        ("008", "1000"), ("007", "10"), ("006", "00"), ("012", "OR"),
    ]  # fmt: skip
    assert [_fields(s) for s in idoc.iterfind("E1EDK03")] == [
        {"IDDAT": "012", "DATUM": "20260301"}, {"IDDAT": "002", "DATUM": "20260304"},
    ]  # fmt: skip
    assert [_fields(s) for s in idoc.iterfind("E1EDKA1")] == [
        {"PARVW": "AG", "PARTN": "0000004711"}, {"PARVW": "WE", "PARTN": "0000004711"},
    ]  # fmt: skip
    assert _fields(idoc.find("E1EDK02")) == {
        "QUALF": "001", "BELNR": "028-1234567-7654321", "DATUM": "20260301",
    }  # fmt: skip


def test_without_a_sales_area_ecc_determines_it_and_the_segments_are_left_out() -> None:
    idoc = _xml(_order(), SalesArea()).find("IDOC")
    assert idoc is not None
    assert idoc.find("E1EDK14") is None


def test_each_line_is_an_e1edp01_with_its_line_id_schedule_and_internal_material() -> None:
    order = _order(
        _line("L-1", "12345", "2", "9.99", discount=Decimal("1.50")),
        _line("L-2", "abc-7", "1.5"),
    )
    items = list(_xml(order).iterfind("IDOC/E1EDP01"))
    assert [_fields(item) for item in items] == [
        {"POSEX": "000001", "MENGE": "2", "VPREI": "9.99", "PEINH": "1", "WERKS": "1000",
         "LGORT": "0001"},
        {"POSEX": "000002", "MENGE": "1.5", "WERKS": "1000", "LGORT": "0001"},
    ]  # fmt: skip
    first = items[0]
    assert [child.tag for child in first] == [
        "POSEX", "MENGE", "VPREI", "PEINH", "WERKS", "LGORT",
        "E1EDP02", "E1EDP05", "E1EDP20", "E1EDP19",
    ]  # fmt: skip
    assert _fields(first.find("E1EDP02")) == {"QUALF": "044", "BELNR": "L-1"}
    assert _fields(first.find("E1EDP05")) == {"ALCKZ": "-", "KSCHL": "RB00", "BETRG": "1.5"}
    assert _fields(first.find("E1EDP20")) == {"WMENG": "2", "EDATU": "20260304"}
    assert _fields(first.find("E1EDP19")) == {"QUALF": "002", "IDTNR": "000000000000012345"}
    assert _fields(items[1].find("E1EDP19")) == {"QUALF": "002", "IDTNR": "ABC-7"}
    assert items[1].find("E1EDP05") is None


@pytest.mark.parametrize(
    ("order", "problem"),
    [
        (_order(reference=""), "reference"),
        (_order(reference="x" * 36), "reference"),
        (_order(lines=()), "at least one line"),
        (_order(_line("L", "1" * 19, "1")), "longer than 18"),
        (_order(_line("L", "A" * 19, "1")), "longer than 18"),
        (_order(_line("L" * 36, "1", "1")), "line id"),
        (_order(_line("L", "1", "0")), "positive"),
        (_order(_line("L", "1", "1", "-1")), "zero or more"),
        (_order(_line("L", "1", "1", discount=Decimal(1))), "needs a unit price"),
        (_order(customer_code="12345678901"), "10 digits"),
    ],
)
def test_what_orders05_cannot_carry_is_refused_before_sending(
    order: SalesOrder, problem: str
) -> None:
    with pytest.raises(IdocError, match=problem):
        _xml(order)


def test_a_warehouse_is_plant_and_storage_location() -> None:
    line = SalesLine(line_id="L", item_code="1", quantity=Decimal(1), warehouse_code="LOC-01")
    with pytest.raises(IdocError, match="plant"):
        _xml(_order(line))


def test_customer_numbers_go_in_internal_format() -> None:
    assert customer_number("4711") == "0000004711"
    assert customer_number(" cust-a ") == "CUST-A"


def test_the_simulator_reads_the_connector_s_orders05_into_the_order_it_describes() -> None:
    master = model.MasterData()
    master.materials["000000000000012345"] = model.Material("000000000000012345")
    master.materials["ABC-7"] = model.Material("ABC-7")
    for matnr in master.materials:
        master.plants[matnr, "1000"] = model.PlantData(matnr, "1000")
    master.storage_locations["1000", "0001"] = "Main"
    sales = SalesBook(master, model.StockBook(), lambda lines, ref, text: ("", ""))
    sales.add_customer("0000004711", sales_areas=("1000/10/00",))
    order = _order(
        _line("L-1", "12345", "2", "9.99", discount=Decimal("1.50")), _line("L-2", "abc-7", "1")
    )
    raw = orders_xml(CONTROL, 1, order, area=AREA, discount_condition="RB00", created=CREATED,
                     arckey="order:x#1")  # fmt: skip
    (document,) = sim_idoc.parse_idoc_xml(raw)
    made = sales.create_order(document, "SKUFLOW")
    assert (made.kunnr, made.bstkd, made.area, made.auart) == (
        "0000004711",
        order.reference,
        ("1000", "10", "00"),
        "OR",
    )
    assert [(i.posnr, i.matnr, i.kwmeng, i.netwr, i.line_ref) for i in made.items] == [
        (10, "000000000000012345", Decimal(2), Decimal("18.48"), "L-1"),
        (20, "ABC-7", Decimal(1), Decimal(0), "L-2"),
    ]
    assert (made.audat, made.vdatu, made.waerk) == ("20260301", "20260304", "EUR")
