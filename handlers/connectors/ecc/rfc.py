"""SOAP-RFC for SAP ECC: ``RFC_READ_TABLE`` (and any remote-enabled function module, such as the
customer's wrappers for sales documents: :func:`function_request`) through the ICF handler
``/sap/bc/soap/rfc``.

The handler takes a SOAP envelope whose body element is the function module in the namespace
``urn:sap-com:document:sap:rfc:functions`` [DOC: help.sap.com scm700 "Structure of a SOAP
Message"], answers ``<FM>.Response`` with the export parameters and tables, each table's rows
as ``<item>`` elements [OBS: SAP::WAS::SOAP (CPAN), which reads
``//Envelope/Body/<FM>.Response/<TABLE>/item``]. ``RFC_READ_TABLE`` [OBS: public connectors
calling it over this handler] takes ``QUERY_TABLE``, ``ROWCOUNT``, ``ROWSKIPS``, ``OPTIONS``
(the WHERE clause in lines of 72 characters, ``TEXT``) and ``FIELDS`` (``FIELDNAME``), and
answers ``FIELDS`` (with each field's ``OFFSET`` and ``LENGTH`` in the row) and ``DATA`` (one
``WA`` per row). Rows are read by those offsets with no ``DELIMITER``, so a value containing
any character reads back whole. Exceptions (``TABLE_NOT_AVAILABLE``, ``FIELD_NOT_VALID``,
``OPTION_NOT_VALID``, ``NOT_AUTHORIZED``, ...) come back as a SOAP fault; the exception's name
is read from the fault's detail (an element ``Name``) or its ``faultstring`` [UNCONF: the exact
detail layout; both places are read].

``RFC_READ_TABLE`` needs the table authorisation ``S_TABU_DIS`` (or ``S_TABU_NAM``) for the
tables the connector reads; the README lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree import ElementTree as ET

import msgspec
from defusedxml import ElementTree as SafeET

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
RFC_NS = "urn:sap-com:document:sap:rfc:functions"
#: OPTIONS-TEXT is CHAR 72: a longer WHERE clause is split over several lines.
OPTION_LINE = 72


class RfcError(ValueError):
    """An answer that is not a readable ``RFC_READ_TABLE`` response."""


class RfcException(Exception):
    """The function module raised an ABAP exception (a SOAP fault naming it)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}" if text and text != name else name)
        self.name = name
        self.text = text


class Field(msgspec.Struct, frozen=True):
    name: str
    offset: int
    length: int


def literal(value: str) -> str:
    """An ABAP Open SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def any_of(field: str, values: Sequence[str]) -> str:
    """``FIELD = 'a' OR FIELD = 'b'``: many keys in one read (a clause of its own: AND binds
    tighter than OR, so it is not combined with other conditions)."""
    if not values:
        raise ValueError(f"{field}: OR needs at least one value")
    return " OR ".join(where([(field, value)]) for value in values)


def where(conditions: Sequence[tuple[str, str | Sequence[str]]]) -> str:
    """``FIELD = 'v' AND FIELD IN ('a', 'b')`` from (field, value or values) pairs."""
    parts = []
    for field, value in conditions:
        if not field.isidentifier() and not field.replace("/", "").isidentifier():
            raise ValueError(f"not a field name: {field!r}")
        if isinstance(value, str):
            parts.append(f"{field} = {literal(value)}")
        else:
            if not value:
                raise ValueError(f"{field}: IN needs at least one value")
            parts.append(f"{field} IN ({', '.join(literal(v) for v in value)})")
    return " AND ".join(parts)


def option_lines(clause: str) -> list[str]:
    """The WHERE clause in ``OPTIONS`` lines of at most 72 characters, broken between words
    (a literal longer than a line is broken inside, which Open SQL joins back [UNCONF])."""
    lines: list[str] = []
    current = ""
    for word in clause.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= OPTION_LINE:
            current = candidate
            continue
        if current:
            lines.append(current)
        while len(word) > OPTION_LINE:
            lines.append(word[:OPTION_LINE])
            word = word[OPTION_LINE:]
        current = word
    if current:
        lines.append(current)
    return lines


def read_table_request(
    table: str,
    fields: Sequence[str],
    clause: str = "",
    *,
    row_count: int = 0,
    row_skips: int = 0,
) -> bytes:
    """The SOAP envelope of one ``RFC_READ_TABLE`` call."""
    envelope = ET.Element(f"{{{SOAP_ENV}}}Envelope")
    body = ET.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    call = ET.SubElement(body, f"{{{RFC_NS}}}RFC_READ_TABLE")
    ET.SubElement(call, "QUERY_TABLE").text = table
    ET.SubElement(call, "ROWCOUNT").text = str(row_count)
    ET.SubElement(call, "ROWSKIPS").text = str(row_skips)
    options = ET.SubElement(call, "OPTIONS")
    for line in option_lines(clause):
        ET.SubElement(ET.SubElement(options, "item"), "TEXT").text = line
    wanted = ET.SubElement(call, "FIELDS")
    for name in fields:
        ET.SubElement(ET.SubElement(wanted, "item"), "FIELDNAME").text = name
    ET.SubElement(call, "DATA")
    data: bytes = ET.tostring(envelope, encoding="utf-8", xml_declaration=True)
    return data


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _items(element: ET.Element | None) -> list[ET.Element]:
    if element is None:
        return []
    return [child for child in element if _local(child.tag) == "item"]


def _text(element: ET.Element | None, name: str) -> str:
    if element is None:
        return ""
    child = _child(element, name)
    return (child.text or "") if child is not None else ""


def _body(raw: bytes) -> ET.Element:
    """The SOAP Body of an answer; a fault raises :class:`RfcException` with the exception's
    name (from the detail's ``Name``, else the ``faultstring``)."""
    try:
        root = SafeET.fromstring(raw)
    except (ET.ParseError, ValueError) as exc:
        raise RfcError(f"not XML: {exc}") from None
    body = _child(root, "Body") if _local(root.tag) == "Envelope" else None
    if body is None:
        raise RfcError("not a SOAP envelope")
    fault = _child(body, "Fault")
    if fault is not None:
        detail = _child(fault, "detail")
        name = ""
        if detail is not None:
            for element in detail.iter():
                if _local(element.tag) == "Name" and element.text:
                    name = element.text.strip()
                    break
        faultstring = _text(fault, "faultstring").strip()
        raise RfcException(name or faultstring or "SOAP fault", faultstring)
    return body


def parse_read_table(raw: bytes) -> list[dict[str, str]]:
    """The rows of an ``RFC_READ_TABLE`` answer, each a field → value (trailing blanks
    removed) mapping; a SOAP fault raises :class:`RfcException` with the exception's name."""
    body = _body(raw)
    response = _child(body, "RFC_READ_TABLE.Response")
    if response is None:
        raise RfcError("no RFC_READ_TABLE.Response in the answer")
    fields = []
    for item in _items(_child(response, "FIELDS")):
        try:
            fields.append(
                Field(
                    _text(item, "FIELDNAME").strip(),
                    int(_text(item, "OFFSET") or 0),
                    int(_text(item, "LENGTH") or 0),
                )
            )
        except ValueError:
            raise RfcError("a FIELDS entry without a numeric OFFSET/LENGTH") from None
    rows = []
    for item in _items(_child(response, "DATA")):
        line = _text(item, "WA")
        rows.append({f.name: line[f.offset : f.offset + f.length].rstrip() for f in fields})
    return rows


class FunctionAnswer(msgspec.Struct, frozen=True):
    """A function module's answer: its scalar exports and its tables (rows of field → value)."""

    exports: dict[str, str]
    tables: dict[str, list[dict[str, str]]]


Row = dict[str, str]


def function_request(
    function: str, parameters: dict[str, str], tables: dict[str, Sequence[Row]]
) -> bytes:
    """The SOAP envelope of one call of ``function`` (import parameters, then tables as
    ``<item>`` rows) [DOC: help.sap.com "Structure of a SOAP Message"]."""
    if not function.replace("_", "").replace("/", "").isalnum():
        raise ValueError(f"not a function module name: {function!r}")
    envelope = ET.Element(f"{{{SOAP_ENV}}}Envelope")
    body = ET.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    call = ET.SubElement(body, f"{{{RFC_NS}}}{function.replace('/', '_-')}")
    for name, value in parameters.items():
        ET.SubElement(call, name).text = value
    for name, rows in tables.items():
        table = ET.SubElement(call, name)
        for row in rows:
            item = ET.SubElement(table, "item")
            for field, value in row.items():
                ET.SubElement(item, field).text = value
    data: bytes = ET.tostring(envelope, encoding="utf-8", xml_declaration=True)
    return data


def parse_function_response(raw: bytes, function: str) -> FunctionAnswer:
    """The exports and tables of ``<function>.Response``; a SOAP fault raises
    :class:`RfcException` (``FU_NOT_FOUND``: the function module does not exist)."""
    body = _body(raw)
    response = _child(body, f"{function.replace('/', '_-')}.Response")
    if response is None:
        raise RfcError(f"no {function}.Response in the answer")
    exports: dict[str, str] = {}
    tables: dict[str, list[Row]] = {}
    for child in response:
        name = _local(child.tag)
        if len(child):
            tables[name] = [
                {_local(f.tag): (f.text or "").strip() for f in item} for item in _items(child)
            ]
        else:
            exports[name] = (child.text or "").strip()
    return FunctionAnswer(exports, tables)
