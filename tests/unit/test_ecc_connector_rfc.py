"""SOAP-RFC RFC_READ_TABLE: the request ECC's handler expects, rows read back by offset."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.connectors.ecc.rfc import (
    OPTION_LINE,
    RFC_NS,
    RfcError,
    RfcException,
    option_lines,
    parse_read_table,
    read_table_request,
    where,
)

pytestmark = pytest.mark.timeout(30)


def test_the_request_names_the_function_module_in_sap_rfc_namespace() -> None:
    raw = read_table_request("EDIDC", ["DOCNUM", "STATUS"], "ARCKEY = 'SKF1'", row_count=5)
    root = ET.fromstring(raw)
    call = root.find(
        f"{{http://schemas.xmlsoap.org/soap/envelope/}}Body/{{{RFC_NS}}}RFC_READ_TABLE"
    )
    assert call is not None
    assert call.findtext("QUERY_TABLE") == "EDIDC"
    assert (call.findtext("ROWCOUNT"), call.findtext("ROWSKIPS")) == ("5", "0")
    assert [i.findtext("TEXT") for i in call.findall("OPTIONS/item")] == ["ARCKEY = 'SKF1'"]
    assert [i.findtext("FIELDNAME") for i in call.findall("FIELDS/item")] == ["DOCNUM", "STATUS"]


def test_where_quotes_values_as_open_sql_literals() -> None:
    clause = where([("MATNR", "O'NEIL"), ("WERKS", ["1000", "2000"])])
    assert clause == "MATNR = 'O''NEIL' AND WERKS IN ('1000', '2000')"
    with pytest.raises(ValueError, match="field name"):
        where([("MATNR = 'x' OR 1", "y")])


@given(st.lists(st.text(alphabet="ABCDEF' 0123", min_size=1, max_size=30), min_size=1))
def test_option_lines_fit_72_characters_and_join_back(values: list[str]) -> None:
    clause = where([("ARCKEY", values)])
    lines = option_lines(clause)
    assert all(len(line) <= OPTION_LINE for line in lines)
    assert "".join(lines).replace(" ", "") == clause.replace(" ", "")


ANSWER = b"""<?xml version="1.0" encoding="utf-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
<SOAP-ENV:Body><rfc:RFC_READ_TABLE.Response xmlns:rfc="urn:sap-com:document:sap:rfc:functions">
<DATA><item><WA>0000000000581234531 | 2</WA></item><item><WA>000000000058123551</WA></item></DATA>
<FIELDS>
<item><FIELDNAME>DOCNUM</FIELDNAME><OFFSET>000000</OFFSET><LENGTH>000016</LENGTH></item>
<item><FIELDNAME>STATUS</FIELDNAME><OFFSET>000016</OFFSET><LENGTH>000002</LENGTH></item>
<item><FIELDNAME>ARCKEY</FIELDNAME><OFFSET>000018</OFFSET><LENGTH>000070</LENGTH></item>
</FIELDS><OPTIONS/></rfc:RFC_READ_TABLE.Response></SOAP-ENV:Body></SOAP-ENV:Envelope>"""


def test_rows_are_read_by_offset_so_any_character_survives() -> None:
    assert parse_read_table(ANSWER) == [
        {"DOCNUM": "0000000000581234", "STATUS": "53", "ARCKEY": "1 | 2"},
        {"DOCNUM": "0000000000581235", "STATUS": "51", "ARCKEY": ""},
    ]


FAULT = b"""<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode>
<faultstring>TABLE_NOT_AVAILABLE</faultstring><detail>
<rfc:RFC_READ_TABLE.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions">
<Name>TABLE_NOT_AVAILABLE</Name></rfc:RFC_READ_TABLE.Exception></detail>
</SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"""


def test_an_abap_exception_is_raised_by_name() -> None:
    with pytest.raises(RfcException) as caught:
        parse_read_table(FAULT)
    assert caught.value.name == "TABLE_NOT_AVAILABLE"


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>logon</html>",
        b"<x",
        b'<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body/></SOAP-ENV:Envelope>',
    ],
    ids=["html", "broken", "no-response"],
)
def test_anything_else_is_not_an_answer(raw: bytes) -> None:
    with pytest.raises(RfcError):
        parse_read_table(raw)
