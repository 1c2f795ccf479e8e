"""``RFC_READ_TABLE`` as the ICF SOAP-RFC service ``/sap/bc/soap/rfc`` answers it.

- [DOC] (help.sap.com "Structure of a SOAP Message") the body element is the function module,
  ``<rfc:RFC_READ_TABLE xmlns:rfc="urn:sap-com:document:sap:rfc:functions">``, parameters as
  child elements, tables as ``<item>`` rows. [OBS] (SAP::WAS::SOAP, Piers Harding) the answer
  is ``<rfc:RFC_READ_TABLE.Response>`` with the export parameters and tables the same way.
  [OBS] public ECC connectors read tables this way.
- The function's interface (widely used, [OBS]): imports ``QUERY_TABLE``, ``DELIMITER``,
  ``NO_DATA``, ``ROWSKIPS``, ``ROWCOUNT``; tables ``OPTIONS`` (``TEXT`` 72: the WHERE clause,
  lines joined), ``FIELDS`` (``FIELDNAME``, ``OFFSET``, ``LENGTH``, ``TYPE``, ``FIELDTEXT``),
  ``DATA`` (``WA`` 512: each row's fields at their offsets, fixed width, joined by
  ``DELIMITER``); exceptions ``TABLE_NOT_AVAILABLE``, ``TABLE_WITHOUT_DATA``,
  ``OPTION_NOT_VALID``, ``FIELD_NOT_VALID``, ``NOT_AUTHORIZED``, ``DATA_BUFFER_EXCEEDED``.
  With no ``FIELDS`` every column is returned, ``MANDT`` first — the simulator models a subset
  of each table's columns, so for MARA, MARC, MARD and MSEG, whose real rows are far wider
  than 512 characters, no ``FIELDS`` is ``DATA_BUFFER_EXCEEDED`` as on a real system.
- [UNCONF] the SOAP fault for an exception: ``faultstring`` = the exception name, ``detail`` >
  ``rfc:RFC_READ_TABLE.Exception`` > ``Name`` (+ ``Text``), HTTP 500 (SOAP 1.1 over HTTP).
- [UNCONF] quantities (type P) are written right-aligned with a decimal point and no
  thousands separator; a real system WRITEs them in the RFC user's decimal notation.
- The WHERE subset understood: ``FIELD op literal`` (op ``=`` ``<>`` ``<`` ``>`` ``<=``
  ``>=`` or ``EQ NE LT GT LE GE``), ``FIELD IN ('a', 'b')``, ``FIELD LIKE 'A%'``, joined by
  ``AND`` / ``OR`` (AND binds tighter); literals in single quotes (``''`` escapes one) or
  numbers. Anything else is ``OPTION_NOT_VALID``. Character values compare with trailing blanks
  ignored, as ABAP compares ``C`` fields.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from devstack.sims.ecc.idoc import RFC_NS

WA_LENGTH = 512
#: Tables whose real row (all columns) is wider than WA: reading them without FIELDS fails.
WIDE_TABLES = frozenset({"MARA", "MARC", "MARD", "MSEG"})
EXCEPTIONS = frozenset(
    {
        "TABLE_NOT_AVAILABLE",
        "TABLE_WITHOUT_DATA",
        "OPTION_NOT_VALID",
        "FIELD_NOT_VALID",
        "NOT_AUTHORIZED",
        "DATA_BUFFER_EXCEEDED",
    }
)
Value = str | Decimal
Row = Mapping[str, Value]
Condition = tuple[str, str, tuple[str, ...]]  # (field, op, literals)
Where = list[list[Condition]]  # OR of ANDs


@dataclass(frozen=True)
class Column:
    name: str
    length: int
    type: str  # C char, N digits, D date, T time, P packed (quantities)
    text: str


def columns(spec: str) -> tuple[Column, ...]:
    """``"MATNR:18:C:Material, ..."`` → columns."""
    columns = []
    for part in spec.split(","):
        name, length, kind, text = part.strip().split(":")
        columns.append(Column(name, int(length), kind, text))
    return tuple(columns)


_QUAN = "17:P"
TABLES: dict[str, tuple[Column, ...]] = {
    "MARA": columns(
        "MANDT:3:C:Client, MATNR:18:C:Material, MTART:4:C:Material type, "
        "MEINS:3:C:Base unit, LVORM:1:C:Deletion flag (client)"
    ),
    "MARC": columns(
        "MANDT:3:C:Client, MATNR:18:C:Material, WERKS:4:C:Plant, LVORM:1:C:Deletion flag, "
        "MMSTA:2:C:Plant-sp.matl status, XCHPF:1:C:Batch management, SERNP:4:C:Serial profile"
    ),
    "T001L": columns(
        "MANDT:3:C:Client, WERKS:4:C:Plant, LGORT:4:C:Storage location, LGOBE:16:C:Description"
    ),
    "MARD": columns(
        f"MANDT:3:C:Client, MATNR:18:C:Material, WERKS:4:C:Plant, LGORT:4:C:Storage location, "
        f"LVORM:1:C:Deletion flag, LABST:{_QUAN}:Unrestricted, INSME:{_QUAN}:In quality insp., "
        f"SPEME:{_QUAN}:Blocked"
    ),
    "MCHB": columns(
        f"MANDT:3:C:Client, MATNR:18:C:Material, WERKS:4:C:Plant, LGORT:4:C:Storage location, "
        f"CHARG:10:C:Batch, CLABS:{_QUAN}:Unrestricted"
    ),
    "MKPF": columns(
        "MANDT:3:C:Client, MBLNR:10:C:Material document, MJAHR:4:N:Material doc. year, "
        "VGART:2:C:Transaction type, BLART:2:C:Document type, BLDAT:8:D:Document date, "
        "BUDAT:8:D:Posting date, CPUDT:8:D:Entry date, CPUTM:6:T:Entry time, "
        "USNAM:12:C:User name, XBLNR:16:C:Reference, BKTXT:25:C:Doc.header text"
    ),
    "MSEG": columns(
        f"MANDT:3:C:Client, MBLNR:10:C:Material document, MJAHR:4:N:Material doc. year, "
        f"ZEILE:4:N:Item, BWART:3:C:Movement type, XAUTO:1:C:Item automatically created, "
        f"MATNR:18:C:Material, WERKS:4:C:Plant, LGORT:4:C:Storage location, CHARG:10:C:Batch, "
        f"SHKZG:1:C:Debit/credit ind., MENGE:{_QUAN}:Quantity, MEINS:3:C:Base unit, "
        f"ERFMG:{_QUAN}:Qty in unit of entry, ERFME:3:C:Unit of entry, UMWRK:4:C:Receiving plant, "
        f"UMLGO:4:C:Receiving stor. loc., UMCHA:10:C:Receiving batch"
    ),
    "EDIDC": columns(
        "MANDT:3:C:Client, DOCNUM:16:N:IDoc number, DOCREL:4:C:SAP release, STATUS:2:C:Status, "
        "DIRECT:1:C:Direction, IDOCTP:30:C:Basic type, MESTYP:30:C:Message type, "
        "SNDPOR:10:C:Sender port, SNDPRT:2:C:Partner type, SNDPRN:10:C:Partner number, "
        "RCVPOR:10:C:Receiver port, RCVPRT:2:C:Partner type, RCVPRN:10:C:Partner number, "
        "CREDAT:8:D:Created on, CRETIM:6:T:Created at, UPDDAT:8:D:Changed on, "
        "UPDTIM:6:T:Changed at, SERIAL:20:C:Serialization, ARCKEY:70:C:Archive key"
    ),
    "EDIDS": columns(
        "MANDT:3:C:Client, DOCNUM:16:N:IDoc number, LOGDAT:8:D:Date, LOGTIM:6:T:Time, "
        "COUNTR:16:N:Counter, CREDAT:8:D:Created on, CRETIM:6:T:Created at, STATUS:2:C:Status, "
        "UNAME:12:C:User, STATXT:70:C:Text, STAMQU:3:C:Message qualifier, "
        "STAMID:20:C:Message class, STAMNO:3:N:Message number, STATYP:1:C:Message type, "
        "STAPA1:50:C:Parameter 1, STAPA2:50:C:Parameter 2, STAPA3:50:C:Parameter 3, "
        "STAPA4:50:C:Parameter 4"
    ),
}


class RfcException(Exception):
    """An ABAP exception of the function module: a SOAP fault."""

    def __init__(self, name: str, text: str = "") -> None:
        super().__init__(name)
        self.name, self.text = name, text

    def detail(self, function: str) -> ET.Element:
        ET.register_namespace("rfc", RFC_NS)
        element = ET.Element(f"{{{RFC_NS}}}{function}.Exception")
        ET.SubElement(element, "Name").text = self.name
        if self.text:
            ET.SubElement(element, "Text").text = self.text
        return element


# --- the WHERE subset ---

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|<=|>=|=|<|>)"
    r"|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_WORD_OPS = {"EQ": "=", "NE": "<>", "LT": "<", "GT": ">", "LE": "<=", "GE": ">="}


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise RfcException("OPTION_NOT_VALID", f"Cannot parse WHERE at {text[position:]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "str":
            value = value[1:-1].replace("''", "'")
        tokens.append((kind, value))
        position = match.end()
    return tokens


def parse_where(text: str, columns: Iterable[str]) -> Where:
    """A WHERE clause as OR of ANDs of conditions; unknown fields are OPTION_NOT_VALID."""
    known = set(columns)
    tokens = _tokens(text)
    if not tokens:
        return []
    disjunction: list[list[Condition]] = [[]]
    index = 0

    def take() -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens):
            raise RfcException("OPTION_NOT_VALID", "Incomplete WHERE clause")
        index += 1
        return tokens[index - 1]

    while True:
        kind, name = take()
        name = name.upper()
        if kind != "word" or name not in known:
            raise RfcException("OPTION_NOT_VALID", f"Unknown column name {name}")
        kind, op = take()
        op = _WORD_OPS.get(op.upper(), op.upper()) if kind in ("word", "op") else op
        if op == "IN":
            if take() != ("punct", "("):
                raise RfcException("OPTION_NOT_VALID", "IN without a value list")
            values: list[str] = []
            while True:
                kind, value = take()
                if kind not in ("str", "num"):
                    raise RfcException("OPTION_NOT_VALID", f"Bad value {value!r} in IN list")
                values.append(value)
                separator = take()
                if separator == ("punct", ")"):
                    break
                if separator != ("punct", ","):
                    raise RfcException("OPTION_NOT_VALID", "Bad IN list")
            disjunction[-1].append((name, "IN", tuple(values)))
        elif op in ("=", "<>", "<", ">", "<=", ">=", "LIKE"):
            kind, value = take()
            if kind not in ("str", "num"):
                raise RfcException("OPTION_NOT_VALID", f"Bad value {value!r}")
            disjunction[-1].append((name, op, (value,)))
        else:
            raise RfcException("OPTION_NOT_VALID", f"Unknown operator {op}")
        if index == len(tokens):
            return disjunction
        kind, joiner = take()
        if kind != "word" or joiner.upper() not in ("AND", "OR"):
            raise RfcException("OPTION_NOT_VALID", f"Expected AND/OR, found {joiner!r}")
        if joiner.upper() == "OR":
            disjunction.append([])


def _compare(actual: Value, op: str, literal: str) -> bool:
    left: Value
    right: Value
    if isinstance(actual, Decimal):
        try:
            left, right = actual, Decimal(literal)
        except InvalidOperation:
            return False
    else:
        left, right = actual.rstrip(), literal.rstrip()
    if op == "LIKE":
        pattern = re.escape(str(right)).replace("%", ".*").replace("_", ".")
        return re.fullmatch(pattern, str(left)) is not None
    if op == "IN":
        return left == right
    results = {
        "=": left == right,
        "<>": left != right,
        "<": left < right,  # type: ignore[operator]  # both str or both Decimal
        ">": left > right,  # type: ignore[operator]  # both str or both Decimal
        "<=": left <= right,  # type: ignore[operator]  # both str or both Decimal
        ">=": left >= right,  # type: ignore[operator]  # both str or both Decimal
    }
    return results[op]


def keyed_values(where: Where, field: str) -> list[str] | None:
    """The values of ``field`` that every AND of ``where`` pins with ``=`` or ``IN`` (trailing
    blanks removed, each once, in order), so rows can be looked up by key instead of scanned;
    None when some AND leaves ``field`` open (or there is no WHERE)."""
    if not where:
        return None
    values: dict[str, None] = {}
    for conjunction in where:
        pinned = [v for name, op, vs in conjunction if name == field and op in ("=", "IN")
                  for v in vs]  # fmt: skip
        if not pinned:
            return None
        values.update((value.rstrip(), None) for value in pinned)
    return list(values)


def matches(row: Row, where: Where) -> bool:
    if not where:
        return True
    return any(
        all(any(_compare(row[name], op, v) for v in values) for name, op, values in conj)
        for conj in where
    )


# --- the function module ---


def _text(element: ET.Element, name: str) -> str:
    found = element.find(name)
    return (found.text or "") if found is not None else ""


def _items(element: ET.Element, table: str, column: str) -> list[str]:
    found = element.find(table)
    if found is None:
        return []
    return [(item.findtext(column) or "") for item in found.findall("item")]


def _format(value: Value, column: Column) -> str:
    if isinstance(value, Decimal):
        return f"{value:.3f}".rjust(column.length)[-column.length :]
    if column.type == "N":
        return value.rjust(column.length, "0")[-column.length :]
    return value.ljust(column.length)[: column.length]


def read_table(
    request: ET.Element,
    rows_of: Callable[[str, Where], Iterable[Row]],
    client: str,
    schema: Mapping[str, tuple[Column, ...]] = TABLES,
    wide: frozenset[str] = WIDE_TABLES,
) -> ET.Element:
    """Run RFC_READ_TABLE on a parsed request element; the ``.Response`` element or an
    :class:`RfcException`. ``rows_of(table, where)`` gives the candidate rows — all of them, or
    those an index finds for the keys ``where`` pins (:func:`keyed_values`); every one is still
    checked against ``where``."""
    table = _text(request, "QUERY_TABLE").strip().upper()
    columns = schema.get(table)
    if columns is None:
        raise RfcException("TABLE_NOT_AVAILABLE", f"Table {table} is not available")
    by_name = {column.name: column for column in columns}
    delimiter = _text(request, "DELIMITER")[:1]
    wanted = [name.strip().upper() for name in _items(request, "FIELDS", "FIELDNAME")]
    wanted = [name for name in wanted if name]
    if not wanted and table in wide:
        raise RfcException("DATA_BUFFER_EXCEEDED", f"A row of {table} exceeds {WA_LENGTH}")
    wanted = wanted or [column.name for column in columns]
    for name in wanted:
        if name not in by_name:
            raise RfcException("FIELD_NOT_VALID", f"Field {name} is not in table {table}")
    options = _items(request, "OPTIONS", "TEXT")
    where = parse_where(" ".join(options), by_name)
    skips = int(_text(request, "ROWSKIPS").strip() or 0)
    count = int(_text(request, "ROWCOUNT").strip() or 0)
    layout, offset = [], 0
    for name in wanted:
        column = by_name[name]
        layout.append((column, offset))
        offset += column.length + len(delimiter)
    if offset - len(delimiter) > WA_LENGTH:
        raise RfcException("DATA_BUFFER_EXCEEDED", f"Selected fields exceed {WA_LENGTH}")
    selected = [row for row in rows_of(table, where) if matches({"MANDT": client, **row}, where)]
    selected = selected[skips : skips + count] if count > 0 else selected[skips:]
    ET.register_namespace("rfc", RFC_NS)
    response = ET.Element(f"{{{RFC_NS}}}RFC_READ_TABLE.Response")
    data = ET.SubElement(response, "DATA")
    for row in selected:
        values = {"MANDT": client, **row}
        wa = delimiter.join(_format(values[column.name], column) for column, _ in layout)
        ET.SubElement(ET.SubElement(data, "item"), "WA").text = wa
    fields = ET.SubElement(response, "FIELDS")
    for column, start in layout:
        item = ET.SubElement(fields, "item")
        ET.SubElement(item, "FIELDNAME").text = column.name
        ET.SubElement(item, "OFFSET").text = f"{start:06d}"
        ET.SubElement(item, "LENGTH").text = f"{column.length:06d}"
        ET.SubElement(item, "TYPE").text = column.type
        ET.SubElement(item, "FIELDTEXT").text = column.text
    echoed = ET.SubElement(response, "OPTIONS")
    for line in options:
        ET.SubElement(ET.SubElement(echoed, "item"), "TEXT").text = line
    return response
