"""The customer's wrapper function modules over SOAP-RFC (``/sap/bc/soap/rfc``), as the SAP ECC
simulator answers them.

A stateless SOAP-RFC call cannot commit a BAPI called in a separate request, so vendors ship
**wrapper function modules that call the BAPI followed by COMMIT WORK** [DOC-3P: research A8,
Optimal Systems' /OSGMBH/D2S_DOCUMENT_POST]. skuflow defines the interface of five such
modules; the customer builds them (names are settings, ``ecc.sales_functions``). Each is
remote-enabled, returns a ``RETURN`` table of BAPIRET2 rows (``TYPE`` E/A error, W warning, S
success; ``ID`` message class, ``NUMBER``, ``MESSAGE``, ``MESSAGE_V1``-``V4``, ``ROW`` the
1-based ``ITEMS`` row an error names, 0 none) [DOC: BAPIRET2, research A3], commits only when
no E/A row is returned (else ROLLBACK WORK: nothing changed), and refuses a second document
with the same ``EXT_REF`` (E ``ZSKUFLOW 001``), so a call whose answer was lost can be repeated
safely and the document is found by ``EXT_REF``:

``Z_SKUFLOW_DELIVERY_CREATE`` — BAPI_OUTB_DELIVERY_CREATE_SLS (``SALES_ORDER_ITEMS``: REF_DOC,
  REF_ITEM, DLV_QTY), then WS_DELIVERY_UPDATE for storage location, batch, serial numbers,
  LIKP-LIFEX and the goods issue (VBKOK-WABUC = X), COMMIT WORK AND WAIT.
  Imports ``SALES_ORDER`` (VBELN 10), ``EXT_REF`` (CHAR 35 → LIKP-LIFEX), ``DELIVERY_DATE``
  (DATS, optional). Tables in ``ITEMS`` (``REF_ITEM`` NUMC 6 order item, ``DLV_QTY`` QUAN
  13.3, ``MATERIAL`` CHAR 18 optional check, ``PLANT`` CHAR 4, ``STGE_LOC`` CHAR 4, ``BATCH``
  CHAR 10), ``SERIAL_NUMBERS`` (``ROW`` NUMC 6 the ITEMS row, ``SERIALNO`` CHAR 18). Exports
  ``DELIVERY`` (VBELN), ``MAT_DOC`` (MBLNR), ``DOC_YEAR`` (MJAHR).
``Z_SKUFLOW_BILLING_CREATE`` — BAPI_BILLINGDOC_CREATEMULTIPLE (BILLINGDATAIN: REF_DOC = the
  delivery, REF_DOC_CA = J; the BAPI commits itself [DOC]). Imports ``DELIVERY``, ``EXT_REF``
  (CHAR 16 → VBRK-XBLNR), ``BILLING_DATE`` (optional). Exports ``BILLING_DOC``.
``Z_SKUFLOW_RETURN_CREATE`` — BAPI_CUSTOMERRETURN_CREATE (order type RE), the returns delivery
  (BAPI_OUTB_DELIVERY_CREATE_SLS on the returns order) and its goods receipt, COMMIT WORK.
  Imports ``DELIVERY`` (the outbound delivery returned from), ``INVOICE`` (its invoice, when
  the goods were invoiced: the returns order references it; optional), ``EXT_REF`` (CHAR 35 →
  VBKD-BSTKD and VBAK-BSTNK of the returns order, and LIKP-LIFEX of the returns delivery),
  ``ORDER_REASON`` (AUGRU, optional), ``RETURN_DATE`` (optional). Tables in ``ITEMS``
  (``REF_ITEM`` the delivery item, ``QUANTITY``, ``MATERIAL``, ``PLANT``, ``STGE_LOC``,
  ``BATCH``, ``MOVE_TYPE`` 651/653), ``SERIAL_NUMBERS``. Exports ``RETURN_ORDER``,
  ``RETURN_DELIVERY``, ``MAT_DOC``, ``DOC_YEAR``.
``Z_SKUFLOW_CREDIT_MEMO_CREATE`` — the billing BAPI with the returns order (REF_DOC_CA H).
  Imports ``RETURN_ORDER``, ``EXT_REF`` (CHAR 16 → VBRK-XBLNR). Exports ``BILLING_DOC``.
``Z_SKUFLOW_ORDER_REJECT`` — BAPI_SALESORDER_CHANGE with ``ORDER_ITEM_IN-REASON_REJ`` on every
  item (``ORDER_HEADER_INX-UPDATEFLAG`` U), COMMIT WORK. Imports ``SALES_ORDER``, ``REASON``
  (ABGRU CHAR 2). An order already rejected answers W ``ZSKUFLOW 003``.

Success answers S ``ZSKUFLOW 000`` "&1 &2 created". A document another call is working on (or
``Faults.order_lock_next``) answers E ``V1 042`` "Sales document &1 is locked by user &2"
[UNCONF number]: the enqueue lock of the sales document, held ``SalesRules.function_ms``.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import msgspec

from devstack.sims.ecc import shipping
from devstack.sims.ecc.idoc import RFC_NS
from devstack.sims.ecc.model import Message, Rejected
from devstack.sims.ecc.sales import SalesBook
from devstack.sims.ecc.shipping import ItemRequest

CREATED = Message("ZSKUFLOW", "000", "&1 &2 created")
UNCHANGED = Message("ZSKUFLOW", "003", "Sales document &1 was already rejected")
LOCKED = Message("V1", "042", "Sales document &1 is locked by user &2")  # [UNCONF] number
MISSING = Message("ZSKUFLOW", "004", "Parameter &1 is missing or not valid")


class WrapperNames(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The function module names the customer gave the wrappers."""

    delivery: str = "Z_SKUFLOW_DELIVERY_CREATE"
    invoice: str = "Z_SKUFLOW_BILLING_CREATE"
    return_: str = msgspec.field(default="Z_SKUFLOW_RETURN_CREATE", name="return")
    credit_note: str = "Z_SKUFLOW_CREDIT_MEMO_CREATE"
    reject: str = "Z_SKUFLOW_ORDER_REJECT"


@dataclass
class Answer:
    """A wrapper's exports and RETURN rows (the E/A rows decide whether it committed)."""

    exports: dict[str, str]
    messages: list[dict[str, str]]


class SalesFunctions:
    """Runs the wrappers on a :class:`~devstack.sims.ecc.sales.SalesBook`."""

    def __init__(self, sales: SalesBook) -> None:
        self.sales = sales
        self.names = WrapperNames()
        self.calls: list[tuple[str, str]] = []  # (function, TYPE of its first message)
        self._enqueued: dict[str, str] = {}  # VBELN → the user holding its lock

    def knows(self, function: str) -> bool:
        return function in self._operations()

    def set_names(self, **changes: str) -> WrapperNames:
        self.names = msgspec.convert(
            {**msgspec.to_builtins(self.names), **changes}, WrapperNames, strict=False
        )
        return self.names

    async def call(
        self, function: str, request: ET.Element, user: str, *, forced_lock: bool = False
    ) -> ET.Element:
        """The ``<FM>.Response`` element of one call."""
        operation, locks = self._operations()[function]
        try:
            document = locks(request)
        except Rejected as error:
            return self._respond(function, Answer({}, [_message("E", error)]))
        holder = self.sales.rules.lock_user if forced_lock else self._enqueued.get(document)
        if holder is not None:
            answer = Answer({}, [_row("E", LOCKED, document, holder)])
            return self._respond(function, answer)
        self._enqueued[document] = user
        try:
            await asyncio.sleep(self.sales.rules.function_ms / 1000)
            try:
                answer = operation(request)
            except Rejected as error:
                answer = Answer({}, [_message("E", error)])
        finally:
            self._enqueued.pop(document, None)
        return self._respond(function, answer)

    def _respond(self, function: str, answer: Answer) -> ET.Element:
        first = answer.messages[0]["TYPE"] if answer.messages else ""
        self.calls.append((function, first))
        ET.register_namespace("rfc", RFC_NS)
        response = ET.Element(f"{{{RFC_NS}}}{function}.Response")
        for name, value in answer.exports.items():
            ET.SubElement(response, name).text = value
        table = ET.SubElement(response, "RETURN")
        for row in answer.messages:
            item = ET.SubElement(table, "item")
            for name, value in row.items():
                ET.SubElement(item, name).text = value
        return response

    def _operations(
        self,
    ) -> dict[str, tuple[Callable[[ET.Element], Answer], Callable[[ET.Element], str]]]:
        names = self.names
        return {
            names.delivery: (self._deliver, lambda r: _vbeln(r, "SALES_ORDER")),
            names.invoice: (self._bill, lambda r: self._order_of(_vbeln(r, "DELIVERY"))),
            names.return_: (self._return, lambda r: self._order_of(_vbeln(r, "DELIVERY"))),
            names.credit_note: (self._credit, lambda r: _vbeln(r, "RETURN_ORDER")),
            names.reject: (self._reject, lambda r: _vbeln(r, "SALES_ORDER")),
        }

    def _order_of(self, delivery: str) -> str:
        """The sales document a call on ``delivery`` locks: the order it delivers."""
        found = self.sales.deliveries.get(delivery)
        return found.items[0].vgbel if found is not None and found.items else delivery

    # --- the five wrappers ---

    def _deliver(self, request: ET.Element) -> Answer:
        delivery = shipping.deliver(
            self.sales, _vbeln(request, "SALES_ORDER"), _text(request, "EXT_REF"),
            _items(request, "DLV_QTY"), _day(request, "DELIVERY_DATE"),
        )  # fmt: skip
        exports = {"DELIVERY": delivery.vbeln, "MAT_DOC": delivery.mblnr,
                   "DOC_YEAR": delivery.mjahr}  # fmt: skip
        return Answer(exports, [_created("Outbound Delivery", delivery.vbeln)])

    def _bill(self, request: ET.Element) -> Answer:
        billing = shipping.bill(
            self.sales, _vbeln(request, "DELIVERY"), _text(request, "EXT_REF"),
            _day(request, "BILLING_DATE"),
        )  # fmt: skip
        return Answer({"BILLING_DOC": billing.vbeln}, [_created("Invoice", billing.vbeln)])

    def _return(self, request: ET.Element) -> Answer:
        returns, receipt = shipping.create_return(
            self.sales, _vbeln(request, "DELIVERY"), _text(request, "EXT_REF"),
            _items(request, "QUANTITY"), _text(request, "ORDER_REASON"),
            _day(request, "RETURN_DATE"), _text(request, "INVOICE"),
        )  # fmt: skip
        exports = {"RETURN_ORDER": returns.vbeln, "RETURN_DELIVERY": receipt.vbeln,
                   "MAT_DOC": receipt.mblnr, "DOC_YEAR": receipt.mjahr}  # fmt: skip
        return Answer(exports, [_created("Returns", returns.vbeln)])

    def _credit(self, request: ET.Element) -> Answer:
        billing = shipping.credit(
            self.sales, _vbeln(request, "RETURN_ORDER"), _text(request, "EXT_REF"),
            _day(request, "BILLING_DATE"),
        )  # fmt: skip
        return Answer({"BILLING_DOC": billing.vbeln}, [_created("Credit Memo", billing.vbeln)])

    def _reject(self, request: ET.Element) -> Answer:
        vbeln, reason = _vbeln(request, "SALES_ORDER"), _text(request, "REASON")
        if not 0 < len(reason) <= 2:
            raise Rejected(MISSING, "REASON")
        if not shipping.reject(self.sales, vbeln, reason):
            return Answer({}, [_row("W", UNCHANGED, vbeln)])
        return Answer({}, [_created("Rejection of", vbeln)])


def _text(element: ET.Element, name: str) -> str:
    return (element.findtext(name) or "").strip()


def _vbeln(element: ET.Element, name: str) -> str:
    value = _text(element, name)
    if not value:
        raise Rejected(MISSING, name)
    return value.zfill(10) if value.isdigit() else value


def _day(element: ET.Element, name: str) -> str:
    value = _text(element, name)
    return value if len(value) == 8 and value.isdigit() else datetime.now(UTC).strftime("%Y%m%d")


def _items(request: ET.Element, quantity_field: str) -> list[ItemRequest]:
    serials: dict[int, list[str]] = {}
    for serial in request.iterfind("SERIAL_NUMBERS/item"):
        serials.setdefault(_int(_text(serial, "ROW")), []).append(_text(serial, "SERIALNO"))
    items = []
    for row, item in enumerate(request.iterfind("ITEMS/item"), start=1):
        try:
            quantity = Decimal(_text(item, quantity_field) or "0")
        except InvalidOperation:
            raise Rejected(MISSING, quantity_field, row=row) from None
        ref_item = _int(_text(item, "REF_ITEM"))
        if not ref_item:
            raise Rejected(MISSING, "REF_ITEM", row=row)
        items.append(
            ItemRequest(
                row=row, ref_item=ref_item, quantity=quantity,
                material=_text(item, "MATERIAL"), plant=_text(item, "PLANT"),
                sloc=_text(item, "STGE_LOC"), batch=_text(item, "BATCH").upper(),
                move_type=_text(item, "MOVE_TYPE"), serials=tuple(serials.get(row, ())),
            )
        )  # fmt: skip
    return items


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _message(kind: str, error: Rejected) -> dict[str, str]:
    return _row(kind, error.message, *error.values, row=error.row)


def _row(kind: str, message: Message, *values: str, row: int = 0) -> dict[str, str]:
    """One BAPIRET2 row."""
    text, variables = message.format(*values)
    return {
        "TYPE": kind, "ID": message.klass, "NUMBER": message.number, "MESSAGE": text,
        "MESSAGE_V1": variables[0], "MESSAGE_V2": variables[1], "MESSAGE_V3": variables[2],
        "MESSAGE_V4": variables[3], "ROW": str(row), "FIELD": "", "SYSTEM": "",
    }  # fmt: skip


def _created(what: str, vbeln: str) -> dict[str, str]:
    return _row("S", CREATED, what, vbeln)
