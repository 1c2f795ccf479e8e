"""The ``ORDERS05`` IDoc-XML of a sales order (message type ``ORDERS``; ECC's inbound function
``IDOC_INPUT_ORDERS``, process code ORDE, makes the order [DOC: research A6]).

Control record as for goods movements (:func:`handlers.connectors.ecc.idoc.idoc_root`: the
partner profile's, ``DOCNUM`` skuflow's, ``ARCKEY`` ``order:<reference>#<docnum>``). Header
segments in ORDERS05's order [UNCONF: recollection of WE30's segment sequence]:

- ``E1EDK01`` ``CURCY`` — the order's currency [DOC-3P: beyondse16 E1EDK01 field list].
- ``E1EDK14`` ``QUALF`` 008 sales organisation, 007 distribution channel, 006 division, 012
  order type, each only when set (none: ECC determines the sales area from EDSDC by the
  sold-to party; no order type: OR) [DOC: help.sap.com "Document Header: Organizational Data
  (E1EDK14)"].
- ``E1EDK03`` ``IDDAT`` 012 document date, 002 requested delivery date [DOC-3P: EGGER guide].
- ``E1EDKA1`` ``PARVW`` AG (sold-to) and WE (ship-to), ``PARTN`` the customer number, numeric
  ones in internal format (10 digits) [DOC: "Document Header: Partner Info (E1EDKA1)"].
- ``E1EDK02`` ``QUALF`` 001 ``BELNR`` the marketplace order id = the customer's purchase order
  number (VBKD-BSTKD; VBAK-BSTNK holds 20 characters [DOC: data element BSTNK]) [DOC:
  E1EDK02/E1EDP02 help].

Per line an ``E1EDP01`` — ``POSEX`` (the line's position, 6), ``MENGE``, ``WERKS``/``LGORT``
from the warehouse code ``<plant>/<storage location>`` [UNCONF: E1EDP01 plant and storage
location fields], ``VPREI``/``PEINH`` (net unit price per 1) [DOC-3P: leanx E1EDP01] — with
``E1EDP02`` ``QUALF`` 044 ``BELNR`` the marketplace line id (VBKD-BSTKD_E of the item, read
back to match ERP items to lines [UNCONF: that IDOC_INPUT_ORDERS keeps an item-level 044]),
``E1EDP05`` an absolute discount (``ALCKZ`` -, ``KSCHL`` the discount condition type,
``BETRG``) [UNCONF: manual conditions are customising], ``E1EDP20`` the schedule line
(``WMENG``, ``EDATU``) and ``E1EDP19`` ``QUALF`` 002 ``IDTNR`` the internal material number in
database format [DOC: "Document Item: Object Identification (E1EDP19)"]. No unit (``MENEE``):
ECC takes the sales unit from the material. A line's tax code is not sent: ECC determines tax
from the customer and material master.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from xml.etree import ElementTree as ET

import msgspec

from handlers.connectors.ecc.idoc import (
    ControlRecord,
    IdocError,
    idoc_root,
    material_number,
    quantity_text,
    sap_date,
    segment,
    split_warehouse,
)
from handlers.ports.erp import SalesLine, SalesOrder

BELNR_MAX = 35
PARTN_MAX = 17
POSEX_MAX = 6
AMOUNT_MAX = 15  # VPREI; BETRG has 18
CUSTOMER_DIGITS = 10


class SalesArea(msgspec.Struct, frozen=True, kw_only=True):
    """E1EDK14's organisational data (empty: left to ECC)."""

    sales_org: str = ""
    distribution_channel: str = ""
    division: str = ""
    order_type: str = ""


def customer_number(code: str) -> str:
    """A customer number in internal format: numeric ones with leading zeros to 10 digits."""
    code = code.strip()
    if not code:
        raise IdocError("empty customer number")
    if code.isdigit():
        if len(code) > CUSTOMER_DIGITS:
            raise IdocError(f"numeric customer {code!r} is longer than {CUSTOMER_DIGITS} digits")
        return code.zfill(CUSTOMER_DIGITS)
    if len(code) > CUSTOMER_DIGITS:
        raise IdocError(f"customer {code!r} is longer than {CUSTOMER_DIGITS} characters")
    return code.upper()


def orders_xml(
    control: ControlRecord,
    docnum: int,
    order: SalesOrder,
    *,
    area: SalesArea,
    discount_condition: str,
    created: datetime,
    arckey: str,
) -> bytes:
    """The ``ORDERS05`` IDoc-XML of ``order`` (UTF-8 bytes with an XML declaration)."""
    if not order.lines:
        raise IdocError("a sales order needs at least one line")
    if not 0 < len(order.reference) <= BELNR_MAX or not order.reference.isprintable():
        raise IdocError(f"reference must be 1 to {BELNR_MAX} printable characters")
    if len(order.lines) * 10 > 999_999:
        raise IdocError("too many lines for six-digit item numbers")
    root, idoc = idoc_root(control, docnum, ("ORDERS05", "ORDERS"), created, arckey)
    segment(idoc, "E1EDK01", [("CURCY", order.currency)])
    organisation = (("008", area.sales_org), ("007", area.distribution_channel),
                    ("006", area.division), ("012", area.order_type))  # fmt: skip
    for qualf, value in organisation:
        if value:
            segment(idoc, "E1EDK14", [("QUALF", qualf), ("ORGID", value)])
    segment(idoc, "E1EDK03", [("IDDAT", "012"), ("DATUM", sap_date(order.order_date))])
    segment(idoc, "E1EDK03", [("IDDAT", "002"), ("DATUM", sap_date(order.due_date))])
    partner = customer_number(order.customer_code)
    for role in ("AG", "WE"):
        segment(idoc, "E1EDKA1", [("PARVW", role), ("PARTN", partner)])
    segment(idoc, "E1EDK02", [("QUALF", "001"), ("BELNR", order.reference),
                              ("DATUM", sap_date(order.order_date))])  # fmt: skip
    for index, line in enumerate(order.lines, start=1):
        _item(idoc, index, line, order, discount_condition)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def _item(
    idoc: ET.Element, index: int, line: SalesLine, order: SalesOrder, discount_condition: str
) -> None:
    field, material = material_number(line.item_code)
    if field != "MATERIAL":
        raise IdocError(f"material {line.item_code!r} is longer than 18 characters (IDTNR)")
    if not 0 < len(line.line_id) <= BELNR_MAX:
        raise IdocError(f"line id must be 1 to {BELNR_MAX} characters: {line.line_id!r}")
    try:
        plant, sloc = split_warehouse(line.warehouse_code)
    except ValueError as exc:
        raise IdocError(str(exc)) from None
    price = _amount(line.unit_price) if line.unit_price is not None else None
    if line.discount and line.unit_price is None:
        raise IdocError(f"line {line.line_id}: a discount needs a unit price")
    item = segment(
        idoc,
        "E1EDP01",
        [
            ("POSEX", f"{index:0{POSEX_MAX}d}"),
            ("MENGE", quantity_text(line.quantity)),
            ("VPREI", price),
            ("PEINH", "1" if price is not None else None),
            ("WERKS", plant),
            ("LGORT", sloc),
        ],
    )
    segment(item, "E1EDP02", [("QUALF", "044"), ("BELNR", line.line_id)])
    if line.discount:
        segment(item, "E1EDP05", [("ALCKZ", "-"), ("KSCHL", discount_condition),
                                  ("BETRG", _amount(abs(line.discount)))])  # fmt: skip
    segment(item, "E1EDP20", [("WMENG", quantity_text(line.quantity)),
                              ("EDATU", sap_date(order.due_date))])  # fmt: skip
    segment(item, "E1EDP19", [("QUALF", "002"), ("IDTNR", material)])


def _amount(value: Decimal) -> str:
    if value < 0 or not value.is_finite():
        raise IdocError(f"amount must be zero or more, not {value}")
    text = format(value.normalize(), "f")
    if len(text) > AMOUNT_MAX:
        raise IdocError(f"amount {text} is longer than {AMOUNT_MAX} characters")
    return text
