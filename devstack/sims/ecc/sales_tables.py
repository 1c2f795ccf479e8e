"""The SD tables RFC_READ_TABLE reads from the simulator's sales documents: VBAK/VBAP/VBKD (sales
and returns orders), VBUK/VBUP (their statuses, and the deliveries'), LIKP/LIPS (deliveries),
VBRK/VBRP (billing documents), VBFA (document flow). Columns are a subset of each table's
[DOC-3P: field lists of VBUK (stechno VSVBUK_CN), LIPS, LIKP, VBRK (summit-bi), VBFA
(stechno)]; VBAK, VBAP, VBKD, LIKP, LIPS, VBRK and VBRP rows are wider than 512 characters in a
real system, so reading them without ``FIELDS`` is ``DATA_BUFFER_EXCEEDED`` here too.

Reads by key are lookups (:data:`INDEXES`): every table by ``VBELN``; VBAK by ``BSTNK``, LIKP
by ``LIFEX``, VBRK by ``XBLNR``, LIPS by ``VGBEL``, VBFA by ``VBELV``. [UNCONF] that a real
ECC has secondary indexes on BSTNK, LIFEX and XBLNR: without one, such a read is a full scan
there (create them, SE11, before the volume grows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal

from devstack.sims.ecc import rfc
from devstack.sims.ecc.rfc import columns
from devstack.sims.ecc.sales import (
    DELIVERY,
    INVOICE,
    ORDER,
    RETURNS,
    RETURNS_DELIVERY,
    Billing,
    Delivery,
    Flow,
    SalesBook,
    SalesOrder,
)

_Q = "17:P"
TABLES: dict[str, tuple[rfc.Column, ...]] = {
    "VBAK": columns(
        "MANDT:3:C:Client, VBELN:10:C:Sales document, ERDAT:8:D:Created on, "
        "ERZET:6:T:Time, ERNAM:12:C:Created by, AUDAT:8:D:Document date, "
        f"VBTYP:1:C:SD document categ., AUART:4:C:Sales document type, AUGRU:3:C:Order reason, "
        f"NETWR:{_Q}:Net value, WAERK:5:C:Document currency, VKORG:4:C:Sales organization, "
        "VTWEG:2:C:Distribution channel, SPART:2:C:Division, VDATU:8:D:Requested deliv.date, "
        "LIFSK:2:C:Delivery block, FAKSK:2:C:Billing block, KUNNR:10:C:Sold-to party, "
        "BSTNK:20:C:Purchase order no."
    ),
    "VBAP": columns(
        "MANDT:3:C:Client, VBELN:10:C:Sales document, POSNR:6:N:Item, MATNR:18:C:Material, "
        f"ABGRU:2:C:Reason for rejection, KWMENG:{_Q}:Order quantity, VRKME:3:C:Sales unit, "
        f"MEINS:3:C:Base unit, NETPR:{_Q}:Net price, NETWR:{_Q}:Net value, "
        "WAERK:5:C:Document currency, WERKS:4:C:Plant, LGORT:4:C:Storage location, "
        "CHARG:10:C:Batch, VGBEL:10:C:Reference document, VGPOS:6:N:Reference item"
    ),
    "VBKD": columns(
        "MANDT:3:C:Client, VBELN:10:C:Sales document, POSNR:6:N:Item, "
        "BSTKD:35:C:Purchase order no., BSTKD_E:35:C:Ship-to party PO no."
    ),
    "VBUK": columns(
        "MANDT:3:C:Client, VBELN:10:C:SD document, LFSTK:1:C:Delivery status, "
        "WBSTK:1:C:Total goods mvt stat., FKSTK:1:C:Billing status, ABSTK:1:C:Rejection status, "
        "GBSTK:1:C:Overall status, UVALL:1:C:Incompl.status header, "
        "UVVLK:1:C:Header incompl.deliv., CMGST:1:C:Overall credit status, "
        "VBTYP:1:C:SD document categ."
    ),
    "VBUP": columns(
        "MANDT:3:C:Client, VBELN:10:C:SD document, POSNR:6:N:Item, LFSTA:1:C:Delivery status, "
        "ABSTA:1:C:Rejection status, GBSTA:1:C:Overall status, UVALL:1:C:Incompletion status"
    ),
    "LIKP": columns(
        "MANDT:3:C:Client, VBELN:10:C:Delivery, ERDAT:8:D:Created on, LFART:4:C:Delivery type, "
        "VBTYP:1:C:SD document categ., KUNNR:10:C:Ship-to party, VKORG:4:C:Sales organization, "
        "LFDAT:8:D:Delivery date, WADAT_IST:8:D:Act. gds mvmnt date, "
        "LIFEX:35:C:External delivery ID, XABLN:10:C:Goods receipt/issue slip"
    ),
    "LIPS": columns(
        "MANDT:3:C:Client, VBELN:10:C:Delivery, POSNR:6:N:Item, MATNR:18:C:Material, "
        f"WERKS:4:C:Plant, LGORT:4:C:Storage location, CHARG:10:C:Batch, LFIMG:{_Q}:Delivery qty, "
        "MEINS:3:C:Base unit, VRKME:3:C:Sales unit, VGBEL:10:C:Reference document, "
        "VGPOS:6:N:Reference item"
    ),
    "VBRK": columns(
        "MANDT:3:C:Client, VBELN:10:C:Billing document, FKART:4:C:Billing type, "
        "VBTYP:1:C:SD document categ., WAERK:5:C:Document currency, VKORG:4:C:Sales organization, "
        "VTWEG:2:C:Distribution channel, SPART:2:C:Division, FKDAT:8:D:Billing date, "
        f"KUNAG:10:C:Sold-to party, NETWR:{_Q}:Net value, XBLNR:16:C:Reference, "
        "FKSTO:1:C:Cancelled"
    ),
    "VBRP": columns(
        "MANDT:3:C:Client, VBELN:10:C:Billing document, POSNR:6:N:Item, "
        f"FKIMG:{_Q}:Billed quantity, VRKME:3:C:Sales unit, NETWR:{_Q}:Net value, "
        "MATNR:18:C:Material, VGBEL:10:C:Reference document, VGPOS:6:N:Reference item, "
        "AUBEL:10:C:Sales document, AUPOS:6:N:Sales document item"
    ),
    "VBFA": columns(
        "MANDT:3:C:Client, VBELV:10:C:Preceding document, POSNV:6:N:Preceding item, "
        "VBELN:10:C:Subsequent document, POSNN:6:N:Subsequent item, "
        f"VBTYP_N:1:C:Subsequent doc. categ., RFMNG:{_Q}:Referenced quantity, "
        "MEINS:3:C:Base unit, VBTYP_V:1:C:Preceding doc. categ., PLMIN:1:C:Plus/minus, "
        "ERDAT:8:D:Created on"
    ),
}
WIDE = frozenset({"VBAK", "VBAP", "VBKD", "LIKP", "LIPS", "VBRK", "VBRP"})
_Lookup = Callable[[SalesBook, str], Iterable[rfc.Row]]


def rows(table: str, sales: SalesBook, where: rfc.Where) -> Iterable[rfc.Row]:
    """The candidate rows of ``table`` for ``where``: looked up when it pins an indexed key."""
    for key, lookup in INDEXES[table].items():
        values = rfc.keyed_values(where, key)
        if values is not None:
            return (row for value in values for row in lookup(sales, value))
    return (row for vbeln in sorted(_documents(table, sales))
            for row in INDEXES[table]["VBELN"](sales, vbeln))  # fmt: skip


def _documents(table: str, sales: SalesBook) -> Iterable[str]:
    if table in ("VBAK", "VBAP", "VBKD", "VBUP"):
        return sales.orders
    if table in ("LIKP", "LIPS"):
        return sales.deliveries
    if table in ("VBRK", "VBRP"):
        return sales.billings
    if table == "VBUK":
        return [*sales.orders, *sales.deliveries]
    return sales.flow_from  # VBFA


def _posnr(number: int) -> str:
    return f"{number:06d}"


# --- orders ---


def _order(sales: SalesBook, vbeln: str) -> SalesOrder | None:
    order = sales.orders.get(vbeln)
    return order if order is not None and order.vbtyp in (ORDER, RETURNS) else None


def _vbak(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    order = _order(sales, vbeln)
    if order is None:
        return
    yield {
        "VBELN": order.vbeln, "ERDAT": order.created.strftime("%Y%m%d"),
        "ERZET": order.created.strftime("%H%M%S"), "ERNAM": order.ernam,
        "AUDAT": order.audat, "VBTYP": order.vbtyp, "AUART": order.auart,
        "AUGRU": order.augru, "NETWR": sum((i.netwr for i in order.items), Decimal(0)),
        "WAERK": order.waerk, "VKORG": order.area[0], "VTWEG": order.area[1],
        "SPART": order.area[2], "VDATU": order.vdatu, "LIFSK": order.lifsk,
        "FAKSK": order.faksk, "KUNNR": order.kunnr, "BSTNK": order.bstnk,
    }  # fmt: skip


def _vbap(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    order = _order(sales, vbeln)
    for item in order.items if order else ():
        yield {
            "VBELN": vbeln, "POSNR": _posnr(item.posnr), "MATNR": item.matnr,
            "ABGRU": item.abgru, "KWMENG": item.kwmeng, "VRKME": item.meins,
            "MEINS": item.meins, "NETPR": item.netpr or Decimal(0), "NETWR": item.netwr,
            "WAERK": order.waerk if order else "", "WERKS": item.werks, "LGORT": item.lgort,
            "CHARG": item.charg, "VGBEL": item.vgbel,
            "VGPOS": _posnr(item.vgpos) if item.vgbel else "000000",
        }  # fmt: skip


def _vbkd(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    order = _order(sales, vbeln)
    if order is None:
        return
    yield {"VBELN": vbeln, "POSNR": "000000", "BSTKD": order.bstkd, "BSTKD_E": ""}
    for item in order.items:
        if item.line_ref:
            yield {"VBELN": vbeln, "POSNR": _posnr(item.posnr), "BSTKD": order.bstkd,
                   "BSTKD_E": item.line_ref}  # fmt: skip


def _vbuk(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    order = _order(sales, vbeln)
    if order is not None:
        status = sales.header_status(order)
        yield {**status, "VBELN": vbeln, "WBSTK": "", "FKSTK": "", "VBTYP": order.vbtyp}
        return
    delivery = sales.deliveries.get(vbeln)
    if delivery is not None:
        billed = {flow.posnv for flow in sales.following(vbeln, INVOICE)}
        fkstk = _overall_of(item.posnr in billed for item in delivery.items)
        yield {
            "VBELN": vbeln, "LFSTK": "", "WBSTK": "C" if delivery.mblnr else "A",
            "FKSTK": fkstk if delivery.vbtyp == DELIVERY else "", "ABSTK": "",
            "GBSTK": "C" if delivery.mblnr else "A", "UVALL": "C", "UVVLK": "C", "CMGST": "",
            "VBTYP": delivery.vbtyp,
        }  # fmt: skip


def _overall_of(done: Iterable[bool]) -> str:
    seen = set(done)
    return "C" if seen == {True} else "A" if seen == {False} else "B"


def _vbup(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    order = _order(sales, vbeln)
    for item in order.items if order else ():
        assert order is not None
        yield {"VBELN": vbeln, "POSNR": _posnr(item.posnr), **sales.item_status(order, item)}


# --- deliveries ---


def _delivery(sales: SalesBook, vbeln: str) -> Delivery | None:
    return sales.deliveries.get(vbeln)


def _likp(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    delivery = _delivery(sales, vbeln)
    if delivery is None:
        return
    yield {
        "VBELN": vbeln, "ERDAT": delivery.created.strftime("%Y%m%d"), "LFART": delivery.lfart,
        "VBTYP": delivery.vbtyp, "KUNNR": delivery.kunnr, "VKORG": delivery.vkorg,
        "LFDAT": delivery.lfdat, "WADAT_IST": delivery.lfdat if delivery.mblnr else "",
        "LIFEX": delivery.lifex, "XABLN": "",
    }  # fmt: skip


def _lips(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    delivery = _delivery(sales, vbeln)
    for item in delivery.items if delivery else ():
        yield {
            "VBELN": vbeln, "POSNR": _posnr(item.posnr), "MATNR": item.matnr,
            "WERKS": item.werks, "LGORT": item.lgort, "CHARG": item.charg,
            "LFIMG": item.lfimg, "MEINS": item.meins, "VRKME": item.meins,
            "VGBEL": item.vgbel, "VGPOS": _posnr(item.vgpos),
        }  # fmt: skip


def _lips_of(sales: SalesBook, vgbel: str) -> Iterator[rfc.Row]:
    deliveries = {f.vbeln for f in sales.flow_from.get(vgbel, ())
                  if f.vbtyp_n in (DELIVERY, RETURNS_DELIVERY)}  # fmt: skip
    for vbeln in sorted(deliveries):
        yield from (row for row in _lips(sales, vbeln) if row["VGBEL"] == vgbel)


# --- billing documents ---


def _billing(sales: SalesBook, vbeln: str) -> Billing | None:
    return sales.billings.get(vbeln)


def _vbrk(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    billing = _billing(sales, vbeln)
    if billing is None:
        return
    yield {
        "VBELN": vbeln, "FKART": billing.fkart, "VBTYP": billing.vbtyp, "WAERK": billing.waerk,
        "VKORG": billing.area[0], "VTWEG": billing.area[1], "SPART": billing.area[2],
        "FKDAT": billing.fkdat, "KUNAG": billing.kunag, "NETWR": billing.netwr,
        "XBLNR": billing.xblnr, "FKSTO": "",
    }  # fmt: skip


def _vbrp(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    billing = _billing(sales, vbeln)
    for item in billing.items if billing else ():
        yield {
            "VBELN": vbeln, "POSNR": _posnr(item.posnr), "FKIMG": item.fkimg,
            "VRKME": item.meins, "NETWR": item.netwr, "MATNR": item.matnr,
            "VGBEL": item.vgbel, "VGPOS": _posnr(item.vgpos), "AUBEL": item.aubel,
            "AUPOS": _posnr(item.aupos),
        }  # fmt: skip


# --- document flow ---


def _vbfa(sales: SalesBook, vbelv: str) -> Iterator[rfc.Row]:
    for flow in sales.flow_from.get(vbelv, ()):
        yield _flow_row(flow)


def _vbfa_to(sales: SalesBook, vbeln: str) -> Iterator[rfc.Row]:
    for flow in sales.flow_to.get(vbeln, ()):
        yield _flow_row(flow)


def _flow_row(flow: Flow) -> rfc.Row:
    return {
        "VBELV": flow.vbelv, "POSNV": _posnr(flow.posnv), "VBELN": flow.vbeln,
        "POSNN": _posnr(flow.posnn), "VBTYP_N": flow.vbtyp_n, "RFMNG": flow.rfmng,
        "MEINS": flow.meins, "VBTYP_V": flow.vbtyp_v, "PLMIN": "+", "ERDAT": flow.erdat,
    }  # fmt: skip


def _keyed(index: Callable[[SalesBook], dict[str, list[str]]], rows_of: _Lookup) -> _Lookup:
    """A lookup through a secondary index (value → document numbers)."""
    return lambda sales, value: (
        row for vbeln in sorted(index(sales).get(value, ())) for row in rows_of(sales, vbeln)
    )


INDEXES: dict[str, dict[str, _Lookup]] = {
    "VBAK": {
        "VBELN": _vbak,
        "BSTNK": _keyed(lambda sales: sales.by_bstnk, _vbak),
    },
    "VBAP": {"VBELN": _vbap},
    "VBKD": {"VBELN": _vbkd},
    "VBUK": {"VBELN": _vbuk},
    "VBUP": {"VBELN": _vbup},
    "LIKP": {
        "VBELN": _likp,
        "LIFEX": _keyed(lambda sales: sales.by_lifex, _likp),
    },
    "LIPS": {"VBELN": _lips, "VGBEL": _lips_of},
    "VBRK": {
        "VBELN": _vbrk,
        "XBLNR": _keyed(lambda sales: sales.by_xblnr, _vbrk),
    },
    "VBRP": {"VBELN": _vbrp},
    "VBFA": {"VBELV": _vbfa, "VBELN": _vbfa_to},
}
