"""The ECC simulator's wire formats: IDoc-XML read and written, SOAP wrapping, ALEAUD01, and
RFC_READ_TABLE's WHERE subset and fixed-width rows."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from devstack.sims.ecc import idoc as xml
from devstack.sims.ecc import rfc

MBGMCR = b"""<?xml version="1.0" encoding="UTF-8"?>
<MBGMCR03>
  <IDOC BEGIN="1">
    <EDI_DC40 SEGMENT="1">
      <TABNAM>EDI_DC40</TABNAM>
      <DOCNUM>0000000000000042</DOCNUM>
      <DIRECT>2</DIRECT>
      <IDOCTYP>MBGMCR03</IDOCTYP>
      <MESTYP>MBGMCR</MESTYP>
      <SNDPRN>SKUFLOW   </SNDPRN>
      <SERIAL/>
    </EDI_DC40>
    <E1MBGMCR SEGMENT="1">
      <E1BP2017_GM_HEAD_01 SEGMENT="1">
        <PSTNG_DATE>20261203</PSTNG_DATE>
        <REF_DOC_NO>K-1</REF_DOC_NO>
      </E1BP2017_GM_HEAD_01>
      <E1BP2017_GM_CODE SEGMENT="1"><GM_CODE>05</GM_CODE></E1BP2017_GM_CODE>
      <E1BP2017_GM_ITEM_CREATE SEGMENT="1">
        <MATERIAL>000000000000004711</MATERIAL>
        <ENTRY_QNT>5.000</ENTRY_QNT>
      </E1BP2017_GM_ITEM_CREATE>
      <E1BP2017_GM_ITEM_CREATE SEGMENT="1">
        <MATERIAL>000000000000000815</MATERIAL>
      </E1BP2017_GM_ITEM_CREATE>
    </E1MBGMCR>
  </IDOC>
</MBGMCR03>"""


def test_idoc_xml_reads_the_control_record_and_the_nested_segments() -> None:
    (document,) = xml.parse_idoc_xml(MBGMCR)
    assert document.basic_type == "MBGMCR03"
    assert document.control["DOCNUM"] == "0000000000000042"
    assert document.control["SNDPRN"] == "SKUFLOW"  # fixed-width blanks stripped
    assert document.control["SERIAL"] == ""  # an empty field written <SERIAL/>
    (root,) = document.segments
    assert root.name == "E1MBGMCR"
    assert [s.name for s in root.children] == [
        "E1BP2017_GM_HEAD_01", "E1BP2017_GM_CODE",
        "E1BP2017_GM_ITEM_CREATE", "E1BP2017_GM_ITEM_CREATE",
    ]  # fmt: skip
    items = root.all("E1BP2017_GM_ITEM_CREATE")
    assert [i.get("MATERIAL") for i in items] == ["000000000000004711", "000000000000000815"]
    assert items[1].get("ENTRY_QNT") == ""
    code = document.segment("E1BP2017_GM_CODE")
    assert code is not None
    assert code.get("GM_CODE") == "05"


def test_built_idoc_xml_reads_back_the_same() -> None:
    child = xml.Segment("E1BP2017_GM_ITEM_CREATE", {"MATERIAL": "X", "PLANT": "1000"})
    root = xml.Segment("E1MBGMCR", {}, [xml.Segment("E1BP2017_GM_CODE", {"GM_CODE": "04"}), child])
    body = xml.build_idoc_xml("MBGMCR03", {"DOCNUM": "7", "IDOCTYP": "MBGMCR03"}, [root])
    element = ET.fromstring(body)
    assert element.tag == "MBGMCR03"
    assert element[0].tag == "IDOC"
    assert element[0].attrib == {"BEGIN": "1"}
    control = element[0][0]
    assert (control.tag, control.attrib) == ("EDI_DC40", {"SEGMENT": "1"})
    assert [field.tag for field in control][:2] == ["TABNAM", "DOCNUM"]  # TABNAM first
    (document,) = xml.parse_idoc_xml(body)
    assert document.control == {"TABNAM": "EDI_DC40", "DOCNUM": "7", "IDOCTYP": "MBGMCR03"}
    assert document.segments == [root]


def test_a_packet_of_several_idocs_gives_each() -> None:
    packet = MBGMCR.replace(
        b"</IDOC>", b"</IDOC>" + MBGMCR.split(b"<MBGMCR03>")[1].split(b"</MBGMCR03>")[0]
    )
    assert len(xml.parse_idoc_xml(packet)) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"<MBGMCR03><IDOC BEGIN='1'>",  # not well-formed
        b'<!DOCTYPE x [<!ENTITY e "boom">]><MBGMCR03>&e;</MBGMCR03>',  # a DTD
        b"<MBGMCR03/>",  # no IDOC
        b"<MBGMCR03><IDOC BEGIN='1'><E1MBGMCR SEGMENT='1'/></IDOC></MBGMCR03>",  # no control
        b"<MBGMCR03><OTHER/></MBGMCR03>",
    ],
)
def test_what_is_not_idoc_xml_is_refused(body: bytes) -> None:
    with pytest.raises(xml.IdocXmlError):
        xml.parse_idoc_xml(body)


def test_the_soap_variant_carries_the_idoc_as_the_body_child() -> None:
    envelope = xml.soap_envelope(ET.fromstring(MBGMCR))
    (document,) = xml.parse_idoc_soap(envelope)
    assert document.control["DOCNUM"] == "0000000000000042"
    with pytest.raises(xml.IdocXmlError):
        xml.parse_idoc_soap(MBGMCR)  # not an envelope
    empty = f'<e:Envelope xmlns:e="{xml.SOAP_ENV}"><e:Body/></e:Envelope>'.encode()
    with pytest.raises(xml.IdocXmlError):
        xml.parse_idoc_soap(empty)


def test_idoc_assign_and_faults_are_soap_11() -> None:
    assign = xml.soap_body(xml.idoc_assign("0000000001000001", "ABC"))
    assert assign.tag == f"{{{xml.IDOC_SOAP_NS}}}idocAssign"
    assert (assign.findtext("DbId"), assign.findtext("TransferId")) == ("0000000001000001", "ABC")
    detail = rfc.RfcException("TABLE_NOT_AVAILABLE", "no").detail("RFC_READ_TABLE")
    fault = xml.soap_body(xml.soap_fault("Server", "TABLE_NOT_AVAILABLE", detail))
    assert fault.tag == f"{{{xml.SOAP_ENV}}}Fault"
    assert fault.findtext("faultcode") == "soap-env:Server"
    assert fault.findtext("faultstring") == "TABLE_NOT_AVAILABLE"
    exception = fault.find(f"detail/{{{xml.RFC_NS}}}RFC_READ_TABLE.Exception")
    assert exception is not None
    assert exception.findtext("Name") == "TABLE_NOT_AVAILABLE"


def _confirmation(sender: str, status: str, objkey: str = "") -> xml.Confirmation:
    return xml.Confirmation(
        sender_docnum=sender,
        receiver_docnum="0000000001000001",
        status=status,
        logdat="20261203",
        logtim="120000",
        statxt="Deficit of SL Unrestricted-use 89 EA : 4711 1000 0001 and a long tail of text",
        statyp="E" if status == "51" else "S",
        stamid="M7",
        stamno="021",
        stapa=("SL", "89 EA", "4711 1000 0001 plus more than twenty", ""),
        objtype="BUS2017" if objkey else "",
        objkey=objkey,
    )


def test_aleaud_nests_e1state_in_e1adhdr_and_e1prtob_in_e1state() -> None:
    segments = xml.audit_segments(
        "MBGMCR", [_confirmation("42", "53", "49000000012026"), _confirmation("43", "51")]
    )
    body = xml.build_idoc_xml("ALEAUD01", {"IDOCTYP": "ALEAUD01", "MESTYP": "ALEAUD"}, segments)
    (audit,) = xml.parse_idoc_xml(body)
    (header,) = audit.segments
    assert (header.name, header.get("MESTYP"), header.get("MESTYP_LNG")) == (
        "E1ADHDR", "MBGMCR", "MBGMCR",
    )  # fmt: skip
    posted, failed = header.all("E1STATE")
    assert (posted.get("DOCNUM"), posted.get("STATUS")) == ("42", "53")
    prtob = posted.first("E1PRTOB")
    assert prtob is not None
    assert prtob.fields == {
        "DOCNUM": "0000000001000001", "OBJTYPE": "BUS2017", "OBJKEY": "49000000012026",
    }  # fmt: skip
    assert failed.first("E1PRTOB") is None
    assert (failed.get("STAMID"), failed.get("STAMNO"), failed.get("STATYP")) == ("M7", "021", "E")
    assert failed.get("STATXT").endswith("and a long tail")  # cut at 70
    assert failed.get("STAPA3") == "4711 1000 0001 plus"  # cut at 20 (then blank-stripped)
    assert failed.get("STAPA3_LNG") == "4711 1000 0001 plus more than twenty"


def test_audit_chunks_hold_at_most_500_confirmations() -> None:
    confirmations = [_confirmation(str(n), "53") for n in range(1001)]
    assert [len(c) for c in xml.chunks(confirmations)] == [500, 500, 1]
    assert [len(c) for c in xml.chunks(confirmations, 2000)] == [500, 500, 1]
    assert [len(c) for c in xml.chunks(confirmations[:5], 2)] == [2, 2, 1]


# --- RFC_READ_TABLE ---

COLUMNS = ("MATNR", "WERKS", "LABST")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("MATNR = 'A'", [[("MATNR", "=", ("A",))]]),
        (
            "MATNR EQ 'A' AND WERKS <> '1000'",
            [[("MATNR", "=", ("A",)), ("WERKS", "<>", ("1000",))]],
        ),
        ("matnr in ('A', 'B''C')", [[("MATNR", "IN", ("A", "B'C"))]]),
        ("LABST > 0 OR WERKS LIKE '1%'", [[("LABST", ">", ("0",))], [("WERKS", "LIKE", ("1%",))]]),
        ("", []),
    ],
)
def test_the_where_subset_parses(where: str, expected: list[list[rfc.Condition]]) -> None:
    assert rfc.parse_where(where, COLUMNS) == expected


@pytest.mark.parametrize(
    "where",
    ["NOPE = 'A'", "MATNR = ", "MATNR = 'A' XOR WERKS = 'B'", "MATNR IN 'A'", "MATNR ~ 'A'",
     "MATNR IN ('A' 'B')", "MATNR = WERKS"],
)  # fmt: skip
def test_an_unsupported_where_is_option_not_valid(where: str) -> None:
    with pytest.raises(rfc.RfcException) as raised:
        rfc.parse_where(where, COLUMNS)
    assert raised.value.name == "OPTION_NOT_VALID"


def test_matching_ignores_trailing_blanks_and_compares_quantities_as_numbers() -> None:
    row: rfc.Row = {"MATNR": "A", "WERKS": "1000", "LABST": Decimal("10.5")}
    assert rfc.matches(row, rfc.parse_where("MATNR = 'A   '", COLUMNS))
    assert rfc.matches(row, rfc.parse_where("LABST >= 10.5 AND LABST < 11", COLUMNS))
    assert not rfc.matches(row, rfc.parse_where("LABST > 10.5", COLUMNS))
    assert rfc.matches(row, rfc.parse_where("WERKS LIKE '1_0%'", COLUMNS))
    assert rfc.matches(row, rfc.parse_where("MATNR = 'B' OR WERKS IN ('2000', '1000')", COLUMNS))


def _call(table: str, fields: tuple[str, ...], options: tuple[str, ...] = ()) -> ET.Element:
    call = ET.Element("RFC_READ_TABLE")
    ET.SubElement(call, "QUERY_TABLE").text = table
    ET.SubElement(call, "DELIMITER").text = "|"
    for parent, column, values in (("OPTIONS", "TEXT", options), ("FIELDS", "FIELDNAME", fields)):
        element = ET.SubElement(call, parent)
        for value in values:
            ET.SubElement(ET.SubElement(element, "item"), column).text = value
    return call


def test_rows_are_fixed_width_at_the_offsets_answered() -> None:
    rows: list[rfc.Row] = [
        {"MATNR": "A", "WERKS": "1000", "LGORT": "0001", "LVORM": "", "LABST": Decimal(3),
         "INSME": Decimal(0), "SPEME": Decimal(0)},
        {"MATNR": "B", "WERKS": "1000", "LGORT": "0001", "LVORM": "", "LABST": Decimal("12.5"),
         "INSME": Decimal(0), "SPEME": Decimal(0)},
    ]  # fmt: skip
    answer = rfc.read_table(
        _call("MARD", ("MATNR", "LABST"), ("LABST > 5",)), lambda table, where: rows, "100"
    )
    assert answer.tag == f"{{{xml.RFC_NS}}}RFC_READ_TABLE.Response"
    layout = [
        (f.findtext("FIELDNAME"), f.findtext("OFFSET"), f.findtext("LENGTH"), f.findtext("TYPE"))
        for f in answer.iterfind("FIELDS/item")
    ]
    assert layout == [("MATNR", "000000", "000018", "C"), ("LABST", "000019", "000017", "P")]
    (wa,) = [item.findtext("WA") for item in answer.iterfind("DATA/item")]
    assert wa == "B" + " " * 17 + "|" + "12.500".rjust(17)
    assert [t.findtext("TEXT") for t in answer.iterfind("OPTIONS/item")] == ["LABST > 5"]


def test_all_columns_start_with_the_client_and_digits_are_zero_padded() -> None:
    row: rfc.Row = {"DOCNUM": "42", "LOGDAT": "20261203", "LOGTIM": "120000", "COUNTR": "1",
           "CREDAT": "20261203", "CRETIM": "120000", "STATUS": "53", "UNAME": "U",
           "STATXT": "ok", "STAMQU": "", "STAMID": "", "STAMNO": "", "STATYP": "",
           "STAPA1": "", "STAPA2": "", "STAPA3": "", "STAPA4": ""}  # fmt: skip
    answer = rfc.read_table(_call("EDIDS", ()), lambda table, where: [row], "100")
    wa = answer.findtext("DATA/item/WA") or ""
    assert wa.startswith("100|0000000000000042|20261203|")
    names = [f.findtext("FIELDNAME") for f in answer.iterfind("FIELDS/item")]
    assert names[0] == "MANDT"
    assert len(names) == len(rfc.TABLES["EDIDS"])


@pytest.mark.parametrize(
    ("table", "fields", "name"),
    [("NOPE", (), "TABLE_NOT_AVAILABLE"), ("MARA", ("NOPE",), "FIELD_NOT_VALID"),
     ("MSEG", (), "DATA_BUFFER_EXCEEDED")],
)  # fmt: skip
def test_read_table_exceptions(table: str, fields: tuple[str, ...], name: str) -> None:
    with pytest.raises(rfc.RfcException) as raised:
        rfc.read_table(_call(table, fields), lambda table, where: [], "100")
    assert raised.value.name == name
