"""The connector's IDoc-XML: MBGMCR03 as a WE20 partner profile expects it; ALEAUD01 read back."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from xml.etree import ElementTree as ET

import pytest

from handlers.connectors.ecc.idoc import (
    AuditConfirmation,
    ControlRecord,
    GoodsMovement,
    IdocError,
    MovementItem,
    goods_movement_xml,
    material_number,
    parse_audit,
)

pytestmark = pytest.mark.timeout(30)

CONTROL = ControlRecord(client="100", sid="P01", sender_port="SKUFLOW", sender_partner="SKUFLOW")


def _movement(**changes: object) -> GoodsMovement:
    item = MovementItem(
        material="12345", plant="1000", storage_location="0001", move_type="501",
        quantity=Decimal("10.500"), unit="EA", batch="b-7", serial_numbers=("S1", "S2"),
        text="WMS ADJ-991 (+2 more)",
    )  # fmt: skip
    fields: dict[str, object] = {
        "key": "SKF42",
        "gm_code": "05",
        "posting_date": date(2026, 12, 3),
        "document_date": date(2026, 12, 2),
        "items": (item,),
    }
    fields.update(changes)
    return GoodsMovement(**fields)  # type: ignore[arg-type]


def _xml(movement: GoodsMovement) -> ET.Element:
    raw = goods_movement_xml(CONTROL, 7, movement, created=datetime(2026, 12, 3, 11, 45, 9))
    assert raw.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.fromstring(raw)


def test_the_control_record_is_the_partner_profiles() -> None:
    root = _xml(_movement())
    assert root.tag == "MBGMCR03"
    idoc = root.find("IDOC")
    assert idoc is not None
    assert idoc.get("BEGIN") == "1"
    dc40 = idoc.find("EDI_DC40")
    assert dc40 is not None
    assert dc40.get("SEGMENT") == "1"
    fields = {child.tag: child.text for child in dc40}
    assert fields == {
        "TABNAM": "EDI_DC40", "MANDT": "100", "DOCNUM": "0000000000000007", "DIRECT": "2",
        "IDOCTYP": "MBGMCR03", "MESTYP": "MBGMCR", "SNDPOR": "SKUFLOW", "SNDPRT": "LS",
        "SNDPRN": "SKUFLOW", "RCVPOR": "SAPP01", "RCVPRT": "LS", "RCVPRN": "P01CLNT100",
        "CREDAT": "20261203", "CRETIM": "114509", "ARCKEY": "SKF42",
    }  # fmt: skip
    assert [child.tag for child in idoc] == ["EDI_DC40", "E1MBGMCR"]


def test_header_items_and_serials_in_database_format() -> None:
    body = _xml(_movement()).find("IDOC/E1MBGMCR")
    assert body is not None
    assert [child.tag for child in body] == [
        "E1BP2017_GM_HEAD_01", "E1BP2017_GM_CODE", "E1BP2017_GM_ITEM_CREATE",
        "E1BP2017_GM_SERIALNUMBER", "E1BP2017_GM_SERIALNUMBER",
    ]  # fmt: skip
    head = {c.tag: c.text for c in body.find("E1BP2017_GM_HEAD_01") or ()}
    assert head == {
        "PSTNG_DATE": "20261203", "DOC_DATE": "20261202", "REF_DOC_NO": "SKF42",
        "HEADER_TXT": "skuflow SKF42",
    }  # fmt: skip
    item = {c.tag: c.text for c in body.find("E1BP2017_GM_ITEM_CREATE") or ()}
    assert item == {
        "MATERIAL": "000000000000012345", "PLANT": "1000", "STGE_LOC": "0001", "BATCH": "B-7",
        "MOVE_TYPE": "501", "ENTRY_QNT": "10.5", "ENTRY_UOM": "EA",
        "ITEM_TEXT": "WMS ADJ-991 (+2 more)",
    }  # fmt: skip
    serials = [{c.tag: c.text for c in s} for s in body.findall("E1BP2017_GM_SERIALNUMBER")]
    assert serials == [
        {"MATDOC_ITM": "0001", "SERIALNO": "S1"},
        {"MATDOC_ITM": "0001", "SERIALNO": "S2"},
    ]


def test_a_transfer_names_where_the_stock_goes() -> None:
    transfer = MovementItem(
        material="AB-1", plant="1000", storage_location="0001", move_type="311",
        quantity=Decimal(3), unit="EA", batch="L1", move_storage_location="0002",
    )  # fmt: skip
    body = _xml(_movement(gm_code="04", items=(transfer,))).find("IDOC/E1MBGMCR")
    assert body is not None
    item = {c.tag: c.text for c in body.find("E1BP2017_GM_ITEM_CREATE") or ()}
    assert item["MOVE_STLOC"] == "0002"
    assert item["MOVE_BATCH"] == "L1"
    assert "MOVE_PLANT" not in item
    assert item["ENTRY_QNT"] == "3"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("12345", ("MATERIAL", "000000000000012345")),
        ("ab-1", ("MATERIAL", "AB-1")),
        ("X" * 19, ("MATERIAL_LONG", "X" * 19)),
    ],
)
def test_material_numbers_are_converted_like_sap_alpha_conversion(
    code: str, expected: tuple[str, str]
) -> None:
    assert material_number(code) == expected


@pytest.mark.parametrize(
    "movement",
    [
        _movement(items=()),
        _movement(key="K" * 17),
        _movement(
            items=(
                MovementItem(
                    material="1",
                    plant="1000",
                    storage_location="0001",
                    move_type="501",
                    quantity=Decimal(0),
                    unit="EA",
                ),
            )
        ),
        _movement(
            items=(
                MovementItem(
                    material="1" * 19,
                    plant="1000",
                    storage_location="0001",
                    move_type="501",
                    quantity=Decimal(1),
                    unit="EA",
                ),
            )
        ),
    ],
    ids=["no-items", "key-too-long", "zero-quantity", "numeric-material-too-long"],
)
def test_what_ecc_would_cut_or_refuse_is_refused_here(movement: GoodsMovement) -> None:
    with pytest.raises(IdocError):
        goods_movement_xml(CONTROL, 1, movement, created=datetime(2026, 12, 3))


AUDIT = b"""<?xml version="1.0" encoding="UTF-8"?>
<ALEAUD01><IDOC BEGIN="1">
 <EDI_DC40 SEGMENT="1"><TABNAM>EDI_DC40</TABNAM><IDOCTYP>ALEAUD01</IDOCTYP></EDI_DC40>
 <E1ADHDR SEGMENT="1"><MESTYP>MBGMCR</MESTYP>
  <E1STATE SEGMENT="1"><DOCNUM>0000000000000007</DOCNUM><STATUS>53</STATUS>
   <STAMID>MIGO</STAMID><STAMNO>012</STAMNO><STAPA1>4900000123</STAPA1>
   <STATXT>Material document &amp; posted</STATXT>
   <E1PRTOB SEGMENT="1"><DOCNUM>0000000000581234</DOCNUM><OBJTYPE>BUS2017</OBJTYPE>
    <OBJKEY>49000001232026</OBJKEY></E1PRTOB>
  </E1STATE>
  <E1STATE SEGMENT="1"><DOCNUM>0000000000000008</DOCNUM><STATUS>51</STATUS>
   <STAMID>M7</STAMID><STAMNO>021</STAMNO><STAPA1>SL Unrestricted-use</STAPA1>
   <STAPA2>13 EA</STAPA2><STAPA3>A706 1000 0001</STAPA3></E1STATE>
 </E1ADHDR>
</IDOC></ALEAUD01>"""


def test_audit_confirmations_carry_our_number_the_status_and_the_material_document() -> None:
    posted, failed = parse_audit(AUDIT)
    assert posted == AuditConfirmation(
        sender_docnum="0000000000000007", status="53", message_type="MBGMCR",
        message_class="MIGO", message_number="012", variables=("4900000123", "", "", ""),
        text="Material document & posted", receiver_docnum="0000000000581234",
        object_type="BUS2017", object_key="49000001232026",
    )  # fmt: skip
    assert (failed.sender_docnum, failed.status, failed.message_class) == (
        "0000000000000008",
        "51",
        "M7",
    )
    assert failed.variables == ("SL Unrestricted-use", "13 EA", "A706 1000 0001", "")
    assert failed.receiver_docnum == ""


@pytest.mark.parametrize(
    "raw",
    [
        b"<not xml",
        b"<MBGMCR03/>",
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><ALEAUD01>&x;</ALEAUD01>',
        b"<ALEAUD01><IDOC><E1ADHDR><E1STATE><STATUS>53</STATUS></E1STATE></E1ADHDR></IDOC>"
        b"</ALEAUD01>",
    ],
    ids=["broken", "not-an-audit", "entity-declaration", "no-docnum"],
)
def test_an_unreadable_audit_idoc_is_refused(raw: bytes) -> None:
    with pytest.raises(IdocError):
        parse_audit(raw)
