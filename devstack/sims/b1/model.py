"""The SAP Business One model the Service Layer simulator (:mod:`devstack.sims.b1.server`) enforces.

Service Layer's error answers and :class:`SLError` to raise them, the master data
(:class:`Item`, :class:`Warehouse`), the stock book (:class:`StockBook`: on hand per item and
warehouse, batch quantities, serial numbers), the checks an ``InventoryGenEntries`` /
``InventoryGenExits`` / ``StockTransfers`` body must pass before it moves stock
(:func:`check_document`, :func:`check_transfer`, and :func:`line_moves` for the sales documents
of :mod:`devstack.sims.b1.sales`), and the small OData subset the connector uses (``$filter`` of
``eq`` joined by ``and`` / ``or`` with parentheses, ``$select``).

Answers follow the OData v3 shape of ``/b1s/v1``: ``{"error": {"code": <int>, "message":
{"lang": "en-us", "value": <text>}}}``. Codes and texts marked *verified* below were checked
against SAP's user guide ("Working with SAP Business One Service Layer", 1.28), SAP KB 2693418
and error texts that integrators quote from live systems; the others are modelled on them.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeAlias, TypeVar

import msgspec
from aiohttp import web

Kind = Literal["entry", "exit", "transfer"]
#: What a recorded document is: a stock document's kind, or a sales document's.
RecordKind = Literal[
    "entry", "exit", "transfer", "order", "draft", "delivery", "invoice", "return", "credit_note"
]
Pair: TypeAlias = tuple[str, str]  # (item, warehouse)
Triple: TypeAlias = tuple[str, str, str]  # (item, warehouse, batch)
KnobsT = TypeVar("KnobsT", bound=msgspec.Struct)
ENTITIES: dict[str, Kind] = {
    "InventoryGenEntries": "entry",
    "InventoryGenExits": "exit",
    "StockTransfers": "transfer",
}
LINE_TABLE: dict[Kind, str] = {"entry": "IGN1", "exit": "IGE1", "transfer": "WTR1"}
#: The JournalMemo B1 writes when none is given; the transfer's is [UNCONF] (modelled).
DEFAULT_MEMO: dict[Kind, str] = {
    "entry": "Goods Receipt",
    "exit": "Goods Issue",
    "transfer": "Inventory Transfer",
}
#: The collection property holding a document's lines.
LINES: dict[Kind, str] = {
    "entry": "DocumentLines",
    "exit": "DocumentLines",
    "transfer": "StockTransferLines",
}
#: Column lengths of the document header (ODOC structure: OIGN/OIGE), SAP Business One 9.3.
FIELD_LENGTHS = {"Reference2": 11, "Comments": 254, "JournalMemo": 50}
HEADER_FIELDS = frozenset({"DocDate", "DocDueDate", "TaxDate", "DocumentLines", *FIELD_LENGTHS})
LINE_FIELDS = frozenset({"LineNum", "ItemCode", "Quantity", "WarehouseCode"})
LINE_FIELDS |= {"BatchNumbers", "SerialNumbers"}
#: ``StockTransfer`` (header OWTR, lines WTR1): the properties the simulator accepts. The header
#: lengths are taken as ODOC's (OWTR has the same columns) [UNCONF]; ``UnitPrice`` (in SAP's
#: reference example) is accepted and ignored, as the simulator keeps no valuation.
TRANSFER_HEADER_FIELDS = frozenset({"DocDate", "DueDate", "TaxDate", *FIELD_LENGTHS})
TRANSFER_HEADER_FIELDS |= {"FromWarehouse", "ToWarehouse", "StockTransferLines"}
TRANSFER_LINE_FIELDS = frozenset({"LineNum", "ItemCode", "Quantity", "UnitPrice"})
TRANSFER_LINE_FIELDS |= {"FromWarehouseCode", "WarehouseCode", "BatchNumbers", "SerialNumbers"}

NOT_FOUND = (-2028, "No matching records found (ODBC -2028)")  # verified (404 on a key GET)
INVALID_SESSION = (301, "Invalid session or session already timeout.")  # verified (401)
LOGIN_FAILED = (100000027, "Login failed")  # verified
MODIFIED = (  # verified: the text of ODBC -2039, B1's concurrent-modification error
    -2039,
    "Another user or another operation modified data; to continue, open the window again "
    "(ODBC -2039)",
)
#: Observed (integrators quote it from live Service Layer answers, code and text as here): B1's
#: duplicate-key error on insert. What collides is not named ("the following tables" lists
#: none); see :mod:`devstack.sims.b1.server` for how the simulator models when it is answered.
DUPLICATE = (-2035, "This entry already exists in the following tables (ODBC -2035)")
NO_BATCH_SERIAL = (-4014, "Cannot add row without complete selection of batch/serial numbers")
INACTIVE = "10001069 - Item {item} is inactive"  # verified (code -10, KB 2693418)
NEGATIVE = "Quantity falls into negative inventory  [{table}.ItemCode][line: {row}]"  # verified
NOT_INVENTORY = "Item {item} is not an inventory item  [{table}.ItemCode][line: {row}]"
NO_BATCH = (  # verified text (480000112)
    "480000112 - Batch/serial number {number} selected in row {row} does not exist; "
    "specify a valid batch/serial number"
)
SHORT_BATCH = "10001153 - Insufficient quantity for item {item} with batch {batch} in warehouse"
TOO_LONG = (  # verified text
    "CServiceData::SetPropertyValueString failed; Value too long in property '{name}' of '{entity}'"
)
BAD_PROPERTY = "Property '{name}' of '{entity}' is invalid"
#: [UNCONF] modelled: B1's own text for a transfer into its source warehouse is not known.
SAME_WAREHOUSE = "Source and target warehouses must differ  [{table}.WhsCode][line: {row}]"


class SLError(Exception):
    """A Service Layer error answer, raised from anywhere in request handling."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message

    @classmethod
    def of(cls, status: int, answer: tuple[int, str]) -> SLError:
        return cls(status, *answer)

    @property
    def response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": {"lang": "en-us", "value": self.message}}}
        return web.json_response(body, status=self.status)


def with_changes(knobs: KnobsT, changes: dict[str, Any]) -> KnobsT:
    """A knobs Struct with some fields changed, the others kept (validated as on HTTP)."""
    merged = {**msgspec.structs.asdict(knobs), **changes}
    return msgspec.convert(merged, type(knobs), strict=False)


def rejected(message: str, code: int = -10) -> SLError:
    return SLError(400, code, message)


def yes_no(flag: bool) -> str:
    return "tYES" if flag else "tNO"


def decimal(value: Any) -> Decimal:
    number = Decimal("NaN")
    if isinstance(value, (int, Decimal, str)) and not isinstance(value, bool):
        with contextlib.suppress(InvalidOperation):
            number = Decimal(value)
    if not number.is_finite():
        raise rejected(f"Invalid quantity value '{value}'", -1000)
    return number


# --- master data and the stock book ---


@dataclass
class Item:
    code: str
    name: str
    valid: bool = True
    frozen: bool = False
    inventory: bool = True
    batches: bool = False
    serials: bool = False

    def as_json(self, book: StockBook) -> dict[str, Any]:
        return {
            "ItemCode": self.code,
            "ItemName": self.name,
            "Valid": yes_no(self.valid),
            "Frozen": yes_no(self.frozen),
            "InventoryItem": yes_no(self.inventory),
            "ManageBatchNumbers": yes_no(self.batches),
            "ManageSerialNumbers": yes_no(self.serials),
            "QuantityOnStock": book.total(self.code),
            "ItemWarehouseInfoCollection": [
                {
                    "ItemCode": self.code,
                    "WarehouseCode": warehouse,
                    "InStock": quantity,
                    "Committed": Decimal(0),
                    "Ordered": Decimal(0),
                }
                for warehouse, quantity in book.by_warehouse(self.code)
            ],
        }


@dataclass
class Warehouse:
    code: str
    name: str
    inactive: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "WarehouseCode": self.code,
            "WarehouseName": self.name,
            "Inactive": yes_no(self.inactive),
        }


class OnHand(defaultdict[Pair, Decimal]):
    """Stock per (item, warehouse), indexed by item so one item's stock costs O(warehouses)."""

    def __init__(self) -> None:
        super().__init__(Decimal)
        self.places: defaultdict[str, set[str]] = defaultdict(set)

    def __setitem__(self, key: Pair, value: Decimal) -> None:
        super().__setitem__(key, value)
        self.places[key[0]].add(key[1])


@dataclass
class StockBook:
    on_hand: OnHand = field(default_factory=OnHand)
    batches: defaultdict[Triple, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    serials: defaultdict[Pair, set[str]] = field(default_factory=lambda: defaultdict(set))

    def total(self, item: str) -> Decimal:
        return sum((q for _, q in self.by_warehouse(item)), Decimal(0))

    def by_warehouse(self, item: str) -> list[tuple[str, Decimal]]:
        on_hand = self.on_hand
        return sorted((w, on_hand[item, w]) for w in on_hand.places.get(item, ()))


@dataclass
class Move:
    """One document line, checked: ``sign`` is +1 for an entry, -1 for an exit."""

    item: str
    warehouse: str
    quantity: Decimal
    sign: int
    batches: dict[str, Decimal]
    serials: list[str]

    def apply(self, book: StockBook) -> None:
        book.on_hand[self.item, self.warehouse] += self.sign * self.quantity
        for batch, quantity in self.batches.items():
            book.batches[self.item, self.warehouse, batch] += self.sign * quantity
        held = book.serials[self.item, self.warehouse]
        (held.update if self.sign > 0 else held.difference_update)(self.serials)


# --- document checks: the order B1 reports them in, line by line ---


def check_header(
    body: Any,
    entity: str,
    type_name: str = "Document",
    fields: frozenset[str] = HEADER_FIELDS,
    lines_name: str = "DocumentLines",
    lengths: dict[str, int] = FIELD_LENGTHS,
) -> list[Any]:
    if not isinstance(body, dict):
        raise rejected(f"Invalid JSON body: a {type_name} object is expected", -1000)
    for name, value in body.items():
        if name not in fields and not name.startswith("U_"):
            raise rejected(BAD_PROPERTY.format(name=name, entity=type_name), -1000)
        limit = lengths.get(name)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise rejected(TOO_LONG.format(name=name, entity=type_name), -1000)
    lines = body.get(lines_name)
    if not isinstance(lines, list) or not lines:
        raise rejected(f"{entity}: the document must have at least one row", -5002)
    return lines


def check_document(
    kind: Kind,
    body: Any,
    entity: str,
    items: dict[str, Item],
    warehouses: dict[str, Warehouse],
    book: StockBook,
) -> list[Move]:
    """Every line of ``body`` checked against master data and stock, or the first SLError."""
    if kind == "transfer":
        return check_transfer(body, entity, items, warehouses, book)

    def resolved() -> Iterator[tuple[int, Item, str, dict[str, Any]]]:
        for index, line in enumerate(check_header(body, entity)):
            check_properties(line, LINE_FIELDS, "DocumentLine")
            item = items.get(str(line.get("ItemCode", "")))
            warehouse = warehouses.get(str(line.get("WarehouseCode", "")))
            if item is None or warehouse is None:
                raise SLError.of(400, NOT_FOUND)
            yield index + 1, item, warehouse.code, line

    return line_moves(1 if kind == "entry" else -1, LINE_TABLE[kind], resolved(), book)


def line_moves(
    sign: int,
    table: str,
    lines: Iterable[tuple[int, Item, str, dict[str, Any]]],
    book: StockBook,
) -> list[Move]:
    """The stock moves of document lines ``(row, item, warehouse, line)``, each checked in turn
    (quantity, item, batches and serials; for an exit, what is on hand), or the first SLError.
    An exit may not take stock negative, all its lines taken together."""
    moves: list[tuple[int, Move]] = []
    for row, item, warehouse, line in lines:
        quantity = decimal(line.get("Quantity", 0))
        batches, serials = _check_item(item, line, quantity, table, row)
        if sign < 0:
            _check_exit(item, warehouse, batches, serials, row, book, [m for _, m in moves])
        moves.append((row, Move(item.code, warehouse, quantity, sign, batches, serials)))
    if sign < 0:
        _check_negative(moves, table, book)
    return [move for _, move in moves]


def _check_negative(outgoing: list[tuple[int, Move]], table: str, book: StockBook) -> None:
    """Stock may not go negative, the outgoing lines ``(row, move)`` of a document together."""
    needed: defaultdict[Pair, Decimal] = defaultdict(Decimal)
    for row, move in outgoing:
        needed[move.item, move.warehouse] += move.quantity
        if needed[move.item, move.warehouse] > book.on_hand[move.item, move.warehouse]:
            raise rejected(NEGATIVE.format(table=table, row=row))


def transfer_ends(body: dict[str, Any], line: dict[str, Any]) -> tuple[str, str]:
    """A transfer line's (source, destination): the line's ``FromWarehouseCode`` /
    ``WarehouseCode``, else the header's ``FromWarehouse`` / ``ToWarehouse`` [UNCONF: B1's client
    copies the header warehouses into the rows as defaults; that Service Layer resolves an
    omitted or a differing line value the same way is modelled, not confirmed]."""
    source = line.get("FromWarehouseCode") or body.get("FromWarehouse") or ""
    destination = line.get("WarehouseCode") or body.get("ToWarehouse") or ""
    return str(source), str(destination)


def check_transfer(
    body: Any,
    entity: str,
    items: dict[str, Item],
    warehouses: dict[str, Warehouse],
    book: StockBook,
) -> list[Move]:
    """A ``StockTransfer`` checked line by line, or the first SLError: per line an exit at its
    source (checked as an exit is: batches, serials, no negative stock, all lines together) and
    an entry at its destination. Stock arriving by one line is not available to another line of
    the same transfer [UNCONF]."""
    table = LINE_TABLE["transfer"]
    lines = check_header(body, entity, "StockTransfer", TRANSFER_HEADER_FIELDS, LINES["transfer"])
    for name in ("FromWarehouse", "ToWarehouse"):  # a header warehouse named must exist
        if name in body and str(body[name] or "") not in warehouses:
            raise SLError.of(400, NOT_FOUND)
    outgoing: list[tuple[int, Move]] = []
    moves: list[Move] = []
    for index, line in enumerate(lines):
        row = index + 1
        check_properties(line, TRANSFER_LINE_FIELDS, "StockTransferLine")
        source, destination = transfer_ends(body, line)
        item = items.get(str(line.get("ItemCode", "")))
        if item is None or source not in warehouses or destination not in warehouses:
            raise SLError.of(400, NOT_FOUND)
        if source == destination:
            raise rejected(SAME_WAREHOUSE.format(table=table, row=row))
        quantity = decimal(line.get("Quantity", 0))
        batches, serials = _check_item(item, line, quantity, table, row)
        earlier = [move for _, move in outgoing]
        _check_exit(item, source, batches, serials, row, book, earlier)
        out = Move(item.code, source, quantity, -1, batches, serials)
        outgoing.append((row, out))
        moves += [out, Move(item.code, destination, quantity, 1, batches, serials)]
    _check_negative(outgoing, table, book)
    return moves


def check_properties(line: Any, fields: frozenset[str], type_name: str) -> None:
    if not isinstance(line, dict):
        raise rejected(f"Invalid JSON body: a {type_name} object is expected", -1000)
    for name in line:
        if name not in fields and not name.startswith("U_"):
            raise rejected(BAD_PROPERTY.format(name=name, entity=type_name), -1000)


def _check_item(
    item: Item, line: dict[str, Any], quantity: Decimal, table: str, row: int
) -> tuple[dict[str, Decimal], list[str]]:
    """The checks of a line's item and quantity; its batches and serials."""
    if quantity <= 0:
        raise rejected(f"Quantity must be positive  [{table}.Quantity][line: {row}]")
    if not item.valid or item.frozen:
        raise rejected(INACTIVE.format(item=item.code))
    if not item.inventory:
        raise rejected(NOT_INVENTORY.format(item=item.code, table=table, row=row))
    batches = _batches(line) if item.batches else {}
    serials = _serials(line, quantity) if item.serials else []
    if item.batches and sum(batches.values(), Decimal(0)) != quantity:
        raise SLError.of(400, NO_BATCH_SERIAL)
    return batches, serials


def _batches(line: dict[str, Any]) -> dict[str, Decimal]:
    batches: defaultdict[str, Decimal] = defaultdict(Decimal)
    for entry in line.get("BatchNumbers") or []:
        if not isinstance(entry, dict) or not entry.get("BatchNumber"):
            raise SLError.of(400, NO_BATCH_SERIAL)
        batches[str(entry["BatchNumber"])] += decimal(entry.get("Quantity", 0))
    if not batches:
        raise SLError.of(400, NO_BATCH_SERIAL)
    return dict(batches)


def _serials(line: dict[str, Any], quantity: Decimal) -> list[str]:
    numbers = [
        str(entry.get("InternalSerialNumber") or entry.get("ManufacturerSerialNumber") or "")
        for entry in line.get("SerialNumbers") or []
        if isinstance(entry, dict)
    ]
    if not all(numbers) or len(set(numbers)) != len(numbers) or Decimal(len(numbers)) != quantity:
        raise SLError.of(400, NO_BATCH_SERIAL)
    return numbers


def _check_exit(
    item: Item,
    warehouse: str,
    batches: dict[str, Decimal],
    serials: list[str],
    row: int,
    book: StockBook,
    earlier: list[Move],
) -> None:
    for batch, quantity in batches.items():
        key = (item.code, warehouse, batch)
        if key not in book.batches:
            raise rejected(NO_BATCH.format(number=batch, row=row))
        taken = sum(
            (m.batches.get(batch, Decimal(0)) for m in earlier if (m.item, m.warehouse) == key[:2]),
            Decimal(0),
        )
        if taken + quantity > book.batches[key]:
            raise rejected(SHORT_BATCH.format(item=item.code, batch=batch))
    held = book.serials[item.code, warehouse]
    for number in serials:
        if number not in held or any(number in m.serials for m in earlier):
            raise rejected(NO_BATCH.format(number=number, row=row))


# --- the OData subset: $filter (eq, and, or, parentheses) and $select ---

Clause: TypeAlias = tuple[str, Any]  # (property, value)
#: A parsed ``$filter``: alternatives (``or``), each a conjunction (``and``) of ``eq`` clauses.
Filter: TypeAlias = list[list[Clause]]
_TOKEN = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<op>and|or)(?=[\s(])"
    r"|(?P<name>\w+)\s+eq\s+(?:'(?P<string>(?:[^']|'')*)'|(?P<number>-?\d+(?:\.\d+)?)))"
)
#: Enum values Service Layer also takes by their database value in a filter (``'Y'`` for
#: ``tYES``, ``'O'`` for ``bost_Open``, an object type number for ``DocObjectCode``) [UNCONF:
#: SAP documents name-or-value for enums in bodies (manual p.22); assumed for $filter too].
ENUM_FIELDS = frozenset({"DocumentStatus", "LineStatus", "Cancelled", "Confirmed", "Frozen"})
ENUM_FIELDS |= {"Valid", "DocObjectCode", "InventoryItem", "Inactive"}
ENUM_ALIASES = {"Y": "tYES", "N": "tNO", "O": "bost_Open", "C": "bost_Close"}
ENUM_ALIASES |= {"17": "oOrders", "15": "oDeliveryNotes", "13": "oInvoices", "16": "oReturns"}
ENUM_ALIASES |= {"14": "oCreditNotes"}


def parse_filter(text: str) -> Filter:
    """``A eq 'x' and (B eq 3 or B eq 4)`` → ``[[("A", "x"), ("B", 3)], [("A", "x"), ("B", 4)]]``;
    an empty filter matches everything (``[[]]``); anything else is a 400."""
    tokens: list[tuple[str, Any]] = []
    position, text = 0, text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise rejected(f"Unsupported $filter expression: {text[position:].strip()!r}", -1000)
        position = match.end()
        if match["name"]:
            string, number = match["string"], match["number"]
            value: Any = string.replace("''", "'") if string is not None else Decimal(number)
            tokens.append(("clause", (match["name"], value)))
        else:
            tokens.append((match["open"] or match["close"] or match["op"], None))
    if not tokens:
        return [[]]
    alternatives, rest = _disjunction(tokens)
    if rest:
        raise rejected(f"Unsupported $filter expression: {text!r}", -1000)
    return alternatives


def _disjunction(tokens: list[tuple[str, Any]]) -> tuple[Filter, list[tuple[str, Any]]]:
    found, rest = _conjunction(tokens)
    while rest and rest[0][0] == "or":
        more, rest = _conjunction(rest[1:])
        found = found + more
    return found, rest


def _conjunction(tokens: list[tuple[str, Any]]) -> tuple[Filter, list[tuple[str, Any]]]:
    found, rest = _operand(tokens)
    while rest and rest[0][0] == "and":
        more, rest = _operand(rest[1:])
        found = [left + right for left in found for right in more]
    return found, rest


def _operand(tokens: list[tuple[str, Any]]) -> tuple[Filter, list[tuple[str, Any]]]:
    if tokens and tokens[0][0] == "clause":
        return [[tokens[0][1]]], tokens[1:]
    if tokens and tokens[0][0] == "(":
        found, rest = _disjunction(tokens[1:])
        if rest and rest[0][0] == ")":
            return found, rest[1:]
    raise rejected("Unsupported $filter expression: unbalanced or incomplete", -1000)


def matches(entity: dict[str, Any], where: Filter, kind: str) -> bool:
    return any(_all_match(entity, clauses, kind) for clauses in where)


def _all_match(entity: dict[str, Any], clauses: list[Clause], kind: str) -> bool:
    for name, value in clauses:
        if name not in entity and not name.startswith("U_"):  # a UDF not set is null
            raise rejected(BAD_PROPERTY.format(name=name, entity=kind), -1000)
        actual = entity.get(name)
        if isinstance(actual, (int, Decimal)) and not isinstance(actual, bool):
            actual = Decimal(actual)
        if actual != value and not (name in ENUM_FIELDS and ENUM_ALIASES.get(value) == actual):
            return False
    return True


def project(entity: dict[str, Any], select: str | None, kind: str) -> dict[str, Any]:
    if not select or select.strip() == "*":
        return entity
    names = [name.strip() for name in select.split(",") if name.strip()]
    for name in names:
        if name not in entity:
            raise rejected(BAD_PROPERTY.format(name=name, entity=kind), -1000)
    return {name: entity[name] for name in names}


ENCODE = msgspec.json.Encoder(decimal_format="number").encode
DECODE = msgspec.json.Decoder(float_hook=Decimal).decode


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=ENCODE(body), status=status, content_type="application/json")


# --- records: posted documents as Service Layer returns them, the stock book as rows ---


class SimDocument(msgspec.Struct, frozen=True):
    """A posted document as it was answered when it was created (a sales document's open
    quantities and statuses change later: :mod:`devstack.sims.b1.sales` renders them live)."""

    kind: RecordKind
    entity: str
    doc_entry: int
    doc_num: int
    body: dict[str, Any]  # the document as Service Layer returns it
    at: float = msgspec.field(default_factory=time.time)


@dataclass(frozen=True)
class Plan:
    """A write that passed every check, not yet applied: ``entity`` is where its document lands
    (a draft, for an order an approval procedure stops), ``body`` what was sent; ``apply``
    changes the company database and returns the document created (``None`` for an action
    such as ``Cancel``)."""

    entity: str
    body: dict[str, Any]
    apply: Callable[[], SimDocument | None]


def document_json(number: int, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    if kind == "transfer":
        return transfer_json(number, body)
    lines = [
        {
            "LineNum": index,
            **{name: line.get(name) for name in ("ItemCode", "Quantity", "WarehouseCode")},
            "BatchNumbers": line.get("BatchNumbers") or [],
            "SerialNumbers": line.get("SerialNumbers") or [],
        }
        for index, line in enumerate(body["DocumentLines"])
    ]
    return {
        "DocEntry": number,
        "DocNum": number,
        "DocDate": str(body.get("DocDate") or date.today().isoformat())[:10],
        "Reference1": str(number),
        "Reference2": body.get("Reference2"),
        "Comments": body.get("Comments"),
        "JournalMemo": body.get("JournalMemo") or DEFAULT_MEMO[kind],
        "DocumentStatus": "bost_Close",
        "DocumentLines": lines,
        **{name: value for name, value in body.items() if name.startswith("U_")},
    }


def transfer_json(number: int, body: dict[str, Any]) -> dict[str, Any]:
    """A ``StockTransfer`` as the simulator answers it: each line with its resolved warehouses;
    the header's warehouses as given, else the first line's [UNCONF]; ``DocumentStatus``
    ``bost_Close`` as for the other documents [UNCONF]."""
    lines = []
    for index, line in enumerate(body["StockTransferLines"]):
        source, destination = transfer_ends(body, line)
        lines.append(
            {
                "LineNum": index,
                "ItemCode": line.get("ItemCode"),
                "Quantity": decimal(line.get("Quantity")),  # as a number, as B1 answers
                "FromWarehouseCode": source,
                "WarehouseCode": destination,
                "BatchNumbers": line.get("BatchNumbers") or [],
                "SerialNumbers": line.get("SerialNumbers") or [],
            }
        )
    return {
        "DocEntry": number,
        "DocNum": number,
        "DocDate": str(body.get("DocDate") or date.today().isoformat())[:10],
        "Reference1": str(number),
        "Reference2": body.get("Reference2"),
        "Comments": body.get("Comments"),
        "JournalMemo": body.get("JournalMemo") or DEFAULT_MEMO["transfer"],
        "FromWarehouse": body.get("FromWarehouse") or lines[0]["FromWarehouseCode"],
        "ToWarehouse": body.get("ToWarehouse") or lines[0]["WarehouseCode"],
        "DocumentStatus": "bost_Close",
        "StockTransferLines": lines,
        **{name: value for name, value in body.items() if name.startswith("U_")},
    }


def stock_rows(book: StockBook) -> list[dict[str, Any]]:
    return [
        {
            "ItemCode": item,
            "WarehouseCode": warehouse,
            "InStock": quantity,
            "Batches": {b: q for (i, w, b), q in book.batches.items() if (i, w) == key and q},
            "SerialNumbers": sorted(book.serials.get(key, set())),
        }
        for key, quantity in sorted(book.on_hand.items())
        for item, warehouse in (key,)
    ]


def entity_kind(entity: str) -> str:
    names = {"Items": "Item", "Warehouses": "Warehouse", "StockTransfers": "StockTransfer"}
    names["BusinessPartners"] = "BusinessPartner"
    return names.get(entity, "Document")


def count(value: str) -> int:
    if not value.isdigit():
        raise rejected(f"Invalid query option value '{value}'", -1000)
    return int(value)


def decode_body(raw: bytes) -> Any:
    try:
        return DECODE(raw) if raw else None
    except msgspec.DecodeError:
        raise rejected("Invalid JSON body", -1000) from None


def loggable(operation: str, raw: bytes) -> Any:
    """The request body for the record: JSON decoded; a login's password replaced by ``***``."""
    try:
        body = decode_body(raw)
    except SLError:
        return raw.decode(errors="replace")
    return {**body, "Password": "***"} if operation == "Login" and isinstance(body, dict) else body
