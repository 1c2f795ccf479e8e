"""The documents that follow a sales order in the ECC simulator, as the customer's wrapper function
modules make them (:mod:`devstack.sims.ecc.sales_rfc`): outbound deliveries with their goods
issue, invoices, returns (returns order, returns delivery, goods receipt) and credit memos, and
the rejection of an order. Each is all or nothing: the first error is raised as
:class:`~devstack.sims.ecc.model.Rejected` (``row``: the 1-based ``ITEMS`` row it names) and
nothing changes.

- **Delivery** (``BAPI_OUTB_DELIVERY_CREATE_SLS`` [DOC: stechno.net — ``SALES_ORDER_ITEMS``
  with ``REF_DOC``/``REF_ITEM``/``DLV_QTY``, export ``DELIVERY``] then ``WS_DELIVERY_UPDATE``
  posting the goods issue [UNCONF: the wrapper's calls]): refused while the order has a
  delivery block (LIFSK) or a credit block (CMGST B/C), is incomplete, completed or rejected;
  per item: an item that does not exist or is rejected, more than its open quantity
  (``overdelivery_percent`` tolerance, LIPS-UEBTO [DOC-3P: LIPS field list]), another material
  or plant than the order item's, a batch missing, the wrong count of serial numbers, and
  stock: the goods issue (movement type 601 [DOC: research A3 movement types]) takes
  unrestricted stock from the stock book the goods movements use — M7 021 on a deficit.
  ``LIKP-LIFEX`` (35, "External Identification of Delivery Note" [DOC: sapdatasheet LIFEX])
  carries the caller's reference; a second delivery with the same reference is refused
  (``ZSKUFLOW 001``, the wrapper's own check).
- **Invoice** (``BAPI_BILLINGDOC_CREATEMULTIPLE`` with the delivery as reference, REF_DOC_CA
  J [DOC: stechno.net; the BAPI commits itself]): billing type F2, every item of the
  delivery not yet billed; refused before the goods issue, when all is billed or the order
  has a billing block (FAKSK). ``VBRK-XBLNR`` (16 [DOC-3P: summit-bi VBRK]) carries the
  reference.
- **Return** (``BAPI_CUSTOMERRETURN_CREATE`` — order type RE, with reference to the delivery
  and, for goods already invoiced, to the invoice as well (VBFA M → H) [DOC-3P: research A6, a
  return references the billing document] — then a returns delivery (LR,
  VBTYP T) and its goods receipt, 651 into blocked returns stock or 653 into unrestricted
  stock [UNCONF: research A6]); at most delivered - already returned per delivery item, only
  batches and serial numbers that delivery issued. ``VBKD-BSTKD`` of the returns order carries
  the reference (``VBAK-BSTNK`` its first 20 characters).
- **Credit memo** (the billing BAPI with the returns order, billing type RE, VBTYP O) once its
  returns delivery is received; every item not yet credited.
- **Rejection** (``BAPI_SALESORDER_CHANGE`` setting ``REASON_REJ`` on every item [UNCONF
  recollection]): refused once any item was delivered [UNCONF: ECC rejects the open rest of a
  partly delivered item; skuflow only cancels orders not shipped]; an order already rejected
  stays as it is.

Every message number below is [UNCONF] (SAP's classes: V1 sales, VL shipping, VF billing);
``ZSKUFLOW`` messages are the wrapper interface's own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from devstack.sims.ecc import model
from devstack.sims.ecc.model import Message, Rejected
from devstack.sims.ecc.sales import (
    CREDIT_MEMO,
    DELIVERY,
    GOODS_MOVEMENT,
    INVOICE,
    ITEM_STEP,
    ORDER,
    RETURNS,
    RETURNS_DELIVERY,
    Billing,
    BillingItem,
    Delivery,
    DeliveryItem,
    OrderItem,
    SalesBook,
    SalesOrder,
)

DUPLICATE_REF = Message("ZSKUFLOW", "001", "Document &1 already carries reference &2")
REF_TOO_LONG = Message("ZSKUFLOW", "002", "Reference &1 is longer than &2 characters")
NOT_FOUND = Message("V1", "302", "SD document &1 is not in the database or has been archived")
DELIVERY_BLOCK = Message("VL", "461", "Sales document &1 is blocked for delivery (block &2)")
CREDIT_BLOCK = Message("V1", "154", "Order receipt/delivery not possible, credit customer blocked")
INCOMPLETE = Message("VL", "462", "Sales document &1 is incomplete and cannot be delivered")
COMPLETED = Message("VL", "463", "Sales document &1 is completely processed")
REJECTED = Message("VL", "464", "Item &2 of sales document &1 has a reason for rejection")
NO_ITEM = Message("VL", "465", "Item &2 does not exist in document &1")
NO_ITEMS = Message("VL", "466", "No items were transferred")
OVER_OPEN = Message("VL", "359", "Quantity &1 of item &2 exceeds the open quantity &3")
BAD_QUANTITY = Message("VL", "467", "Enter a quantity greater than zero for item &1")
OTHER_MATERIAL = Message("VL", "468", "Item &1 is material &2, not &3")
OTHER_PLANT = Message("VL", "469", "Item &1 is delivered from plant &2, not &3")
NOT_ISSUED = Message("VF", "021", "Goods issue for delivery &1 has not been posted")
ALL_BILLED = Message("VF", "017", "Document &1 is completely billed")
BILLING_BLOCK = Message("VF", "019", "Sales document &1 is blocked for billing (block &2)")
NOT_RETURNABLE = Message("V1", "801", "Quantity &1 of item &2 exceeds the returnable &3")
NOT_DELIVERED = Message("IO", "240", "Serial number &1 was not delivered with item &2")
OTHER_BATCH = Message("V1", "802", "Batch &1 was not delivered with item &2")
NOT_RECEIVED = Message("VF", "022", "The returns delivery of &1 has not been received")
DELIVERED = Message("V1", "803", "Item &2 of sales document &1 was delivered: not rejected")
OTHER_INVOICE = Message("V1", "804", "Billing document &1 does not bill delivery &2")
LIFEX_MAX, XBLNR_MAX, BSTKD_MAX = 35, 16, 35


@dataclass(frozen=True)
class ItemRequest:
    """One ``ITEMS`` row of a wrapper call: ``ref_item`` the order item (deliveries) or the
    delivery item (returns) it refers to."""

    row: int
    ref_item: int
    quantity: Decimal
    material: str = ""
    plant: str = ""
    sloc: str = ""
    batch: str = ""
    move_type: str = ""
    serials: tuple[str, ...] = ()


def deliver(
    sales: SalesBook, vbeln: str, ext_ref: str, items: Sequence[ItemRequest], day: str
) -> Delivery:
    """An outbound delivery of ``items`` of order ``vbeln`` with its goods issue."""
    _reference(ext_ref, LIFEX_MAX)
    for existing in sales.by_lifex.get(ext_ref, ()):
        if sales.deliveries[existing].vbtyp == DELIVERY:
            raise Rejected(DUPLICATE_REF, existing, ext_ref)
    order = _document(sales, vbeln, ORDER)
    _deliverable(sales, order)
    if not items:
        raise Rejected(NO_ITEMS)
    taken: defaultdict[int, Decimal] = defaultdict(Decimal)
    lines: list[model.DocumentLine] = []
    for request in items:
        try:
            item = _order_item(sales, order, request, taken)
            lines.append(
                _line(
                    sales,
                    request,
                    item.matnr,
                    item.werks,
                    request.sloc or item.lgort,
                    "601",
                    "H",
                    len(lines) + 1,
                    request.batch or item.charg,
                )
            )
        except Rejected as error:
            error.row = request.row
            raise
    _check_stock(sales, lines, items)
    refs = [request.ref_item for request in items]
    return _post(sales, (DELIVERY, "LF"), order, ext_ref, day, lines, refs)


def bill(sales: SalesBook, vbeln: str, ext_ref: str, day: str) -> Billing:
    """An invoice (F2) of every item of delivery ``vbeln`` not billed yet."""
    _reference(ext_ref, XBLNR_MAX)
    _unique_billing(sales, ext_ref, INVOICE)
    delivery = _delivery(sales, vbeln, DELIVERY)
    if not delivery.mblnr:
        raise Rejected(NOT_ISSUED, delivery.vbeln)
    order = sales.orders[delivery.items[0].vgbel]
    if order.faksk:
        raise Rejected(BILLING_BLOCK, order.vbeln, order.faksk)
    billed = {flow.posnv for flow in sales.following(delivery.vbeln, INVOICE)}
    due = [item for item in delivery.items if item.posnr not in billed]
    if not due:
        raise Rejected(ALL_BILLED, delivery.vbeln)
    items = [
        BillingItem(index * ITEM_STEP, item.matnr, item.lfimg, item.meins,
                    sales.item_value(item.vgbel, item.vgpos, item.lfimg), delivery.vbeln,
                    item.posnr, item.vgbel, item.vgpos)
        for index, item in enumerate(due, 1)
    ]  # fmt: skip
    billing = _add_billing(sales, (INVOICE, "F2"), order, ext_ref, day, items, DELIVERY)
    for item in billing.items:
        sales.link(
            (item.aubel, item.aupos, ORDER),
            (billing.vbeln, item.posnr, INVOICE),
            item.fkimg,
            item.meins,
        )
    return billing


def create_return(
    sales: SalesBook,
    vbeln: str,
    ext_ref: str,
    items: Sequence[ItemRequest],
    reason: str,
    day: str,
    invoice: str = "",
) -> tuple[SalesOrder, Delivery]:
    """A returns order (RE) for ``items`` of delivery ``vbeln`` — with reference to its
    ``invoice`` too when the goods were invoiced — its returns delivery and the goods receipt
    (each item's movement type, 651 by default)."""
    _reference(ext_ref, BSTKD_MAX)
    duplicates = sales.orders_by_reference(ext_ref, RETURNS)
    if duplicates:
        raise Rejected(DUPLICATE_REF, duplicates[0].vbeln, ext_ref)
    delivery = _delivery(sales, vbeln, DELIVERY)
    if not delivery.mblnr:
        raise Rejected(NOT_ISSUED, delivery.vbeln)
    billed = _billed_items(sales, invoice, delivery) if invoice else {}
    if not items:
        raise Rejected(NO_ITEMS)
    original = sales.orders[delivery.items[0].vgbel]
    returned, taken = _returned(sales, delivery), defaultdict[int, Decimal](Decimal)
    return_items: list[OrderItem] = []
    lines: list[model.DocumentLine] = []
    for request in items:
        try:
            item = _returnable(sales, delivery, request, returned, taken)
            place = (request.plant or item.werks, request.sloc or item.lgort)
            lines.append(
                _line(
                    sales,
                    request,
                    item.matnr,
                    *place,
                    request.move_type or "651",
                    "S",
                    len(lines) + 1,
                    request.batch or item.charg,
                )
            )
        except Rejected as error:
            error.row = request.row
            raise
        line = lines[-1]
        return_items.append(
            OrderItem(
                posnr=len(return_items) * ITEM_STEP + ITEM_STEP,
                matnr=item.matnr,
                kwmeng=request.quantity,
                meins=item.meins,
                werks=line.werks,
                lgort=line.lgort,
                netpr=None,
                netwr=sales.item_value(item.vgbel, item.vgpos, request.quantity),
                vgbel=delivery.vbeln,
                vgpos=item.posnr,
                charg=line.charg,
                serials=line.serials,
                move_type=line.bwart,
            )
        )
    _check_stock(sales, lines, items)
    returns = SalesOrder(
        vbeln=sales.number(RETURNS),
        vbtyp=RETURNS,
        auart="RE",
        kunnr=original.kunnr,
        area=original.area,
        bstkd=ext_ref,
        waerk=original.waerk,
        audat=day,
        vdatu=day,
        ernam="",
        items=return_items,
        augru=reason,
    )
    sales.add_order(returns)
    refs = [item.posnr for item in return_items]
    receipt = _post(sales, (RETURNS_DELIVERY, "LR"), returns, ext_ref, day, lines, refs)
    for back in return_items:
        sales.link(
            (delivery.vbeln, back.vgpos, DELIVERY),
            (returns.vbeln, back.posnr, RETURNS),
            back.kwmeng,
            back.meins,
        )
    for back in return_items:
        if back.vgpos in billed:
            before = (*billed[back.vgpos], INVOICE)
            sales.link(before, (returns.vbeln, back.posnr, RETURNS), back.kwmeng, back.meins)
    return returns, receipt


def _billed_items(sales: SalesBook, vbeln: str, delivery: Delivery) -> dict[int, tuple[str, int]]:
    """Delivery item → (invoice, invoice item) of an invoice that bills ``delivery``."""
    billing = sales.billings.get(vbeln.zfill(10))
    if billing is None or billing.vbtyp != INVOICE:
        raise Rejected(NOT_FOUND, vbeln)
    billed = {i.vgpos: (billing.vbeln, i.posnr) for i in billing.items if i.vgbel == delivery.vbeln}
    if not billed:
        raise Rejected(OTHER_INVOICE, billing.vbeln, delivery.vbeln)
    return billed


def credit(sales: SalesBook, vbeln: str, ext_ref: str, day: str) -> Billing:
    """A credit memo (RE) of every item of returns order ``vbeln`` not credited yet."""
    _reference(ext_ref, XBLNR_MAX)
    _unique_billing(sales, ext_ref, CREDIT_MEMO)
    returns = _document(sales, vbeln, RETURNS)
    received = [sales.deliveries[f.vbeln] for f in sales.following(returns.vbeln, RETURNS_DELIVERY)]
    if not received or not all(delivery.mblnr for delivery in received):
        raise Rejected(NOT_RECEIVED, returns.vbeln)
    credited = {flow.posnv for flow in sales.following(returns.vbeln, CREDIT_MEMO)}
    due = [item for item in returns.items if item.posnr not in credited and not item.rejected]
    if not due:
        raise Rejected(ALL_BILLED, returns.vbeln)
    items = [
        BillingItem(index * ITEM_STEP, item.matnr, item.kwmeng, item.meins, item.netwr,
                    returns.vbeln, item.posnr, returns.vbeln, item.posnr)
        for index, item in enumerate(due, 1)
    ]  # fmt: skip
    return _add_billing(sales, (CREDIT_MEMO, "RE"), returns, ext_ref, day, items, RETURNS)


def reject(sales: SalesBook, vbeln: str, reason: str) -> bool:
    """A reason for rejection on every item of order ``vbeln``; False if it already had one."""
    order = _document(sales, vbeln, ORDER)
    if all(item.rejected for item in order.items):
        return False
    for item in order.items:
        if sales.delivered(order, item) > 0:
            raise Rejected(DELIVERED, order.vbeln, f"{item.posnr:06d}")
    for item in order.items:
        item.abgru = item.abgru or reason
    return True


# --- checks ---


def _reference(ext_ref: str, most: int) -> None:
    if len(ext_ref) > most:
        raise Rejected(REF_TOO_LONG, ext_ref, str(most))


def _document(sales: SalesBook, vbeln: str, category: str) -> SalesOrder:
    found = sales.orders.get(vbeln.zfill(10))
    if found is None or found.vbtyp != category:
        raise Rejected(NOT_FOUND, vbeln)
    return found


def _delivery(sales: SalesBook, vbeln: str, category: str) -> Delivery:
    found = sales.deliveries.get(vbeln.zfill(10))
    if found is None or found.vbtyp != category:
        raise Rejected(NOT_FOUND, vbeln)
    return found


def _deliverable(sales: SalesBook, order: SalesOrder) -> None:
    status = sales.header_status(order)
    if status["ABSTK"] == "C":
        raise Rejected(REJECTED, order.vbeln, "*")
    if status["GBSTK"] == "C":
        raise Rejected(COMPLETED, order.vbeln)
    if order.lifsk:
        raise Rejected(DELIVERY_BLOCK, order.vbeln, order.lifsk)
    if order.cmgst in ("B", "C"):
        raise Rejected(CREDIT_BLOCK, order.vbeln)
    if order.incomplete:
        raise Rejected(INCOMPLETE, order.vbeln)


def _order_item(
    sales: SalesBook, order: SalesOrder, request: ItemRequest, taken: defaultdict[int, Decimal]
) -> OrderItem:
    item = order.item(request.ref_item)
    if item is None:
        raise Rejected(NO_ITEM, order.vbeln, f"{request.ref_item:06d}")
    if item.rejected:
        raise Rejected(REJECTED, order.vbeln, f"{item.posnr:06d}")
    _same(request, item.posnr, item.matnr, item.werks)
    taken[item.posnr] += request.quantity
    open_quantity = item.kwmeng - sales.delivered(order, item)
    limit = open_quantity * (1 + sales.rules.overdelivery_percent / 100)
    if taken[item.posnr] > limit:
        raise Rejected(
            OVER_OPEN, _number(taken[item.posnr]), f"{item.posnr:06d}", _number(open_quantity)
        )
    return item


def _returned(sales: SalesBook, delivery: Delivery) -> defaultdict[int, Decimal]:
    """What returns orders already took back, per delivery item."""
    returned: defaultdict[int, Decimal] = defaultdict(Decimal)
    for flow in sales.following(delivery.vbeln, RETURNS):
        item = sales.orders[flow.vbeln].item(flow.posnn)
        if item is not None and not item.rejected:
            returned[flow.posnv] += flow.rfmng
    return returned


def _returnable(
    sales: SalesBook,
    delivery: Delivery,
    request: ItemRequest,
    returned: defaultdict[int, Decimal],
    taken: defaultdict[int, Decimal],
) -> DeliveryItem:
    item = next((i for i in delivery.items if i.posnr == request.ref_item), None)
    if item is None:
        raise Rejected(NO_ITEM, delivery.vbeln, f"{request.ref_item:06d}")
    _same(request, item.posnr, item.matnr, "")
    taken[item.posnr] += request.quantity
    left = item.lfimg - returned[item.posnr]
    if taken[item.posnr] > left:
        raise Rejected(
            NOT_RETURNABLE, _number(taken[item.posnr]), f"{item.posnr:06d}", _number(left)
        )
    move_type = request.move_type or "651"
    if move_type not in sales.rules.return_movement_types:
        raise Rejected(model.NO_MVT, move_type)
    if request.batch and request.batch.upper() != item.charg:
        raise Rejected(OTHER_BATCH, request.batch, f"{item.posnr:06d}")
    already = {
        serial
        for order in sales.orders.values()
        if order.vbtyp == RETURNS
        for i in order.items
        if i.vgbel == delivery.vbeln and i.vgpos == item.posnr
        for serial in i.serials
    }
    for serial in request.serials:
        if serial not in item.serials or serial in already:
            raise Rejected(NOT_DELIVERED, serial, f"{item.posnr:06d}")
    return item


def _same(request: ItemRequest, posnr: int, matnr: str, werks: str) -> None:
    if request.quantity <= 0:
        raise Rejected(BAD_QUANTITY, f"{posnr:06d}")
    if request.material and request.material != matnr:
        raise Rejected(
            OTHER_MATERIAL, f"{posnr:06d}", matnr.lstrip("0"), request.material.lstrip("0")
        )
    if werks and request.plant and request.plant != werks:
        raise Rejected(OTHER_PLANT, f"{posnr:06d}", werks, request.plant)


def _line(
    sales: SalesBook,
    request: ItemRequest,
    matnr: str,
    werks: str,
    lgort: str,
    bwart: str,
    shkzg: str,
    zeile: int,
    charg: str,
) -> model.DocumentLine:
    """The goods movement line of one item, checked against the plant's material data."""
    if (werks, lgort) not in sales.master.storage_locations:
        raise Rejected(model.NO_SLOC, werks, lgort)
    plant = sales.master.plants.get((matnr, werks))
    if plant is None:
        raise Rejected(model.NOT_IN_PLANT, matnr, werks)
    charg = charg.upper() if plant.batches else ""
    if plant.batches and not charg:
        raise Rejected(model.NO_BATCH, matnr.lstrip("0"))
    serials = request.serials if plant.serial_profile else ()
    if plant.serial_profile and (
        len(serials) != request.quantity or len(set(serials)) != len(serials)
    ):
        raise Rejected(model.SERIALS, _number(request.quantity), matnr.lstrip("0"))
    meins = sales.master.materials[matnr].meins
    return model.DocumentLine(
        zeile, bwart, matnr, werks, lgort, charg, shkzg, request.quantity, meins, serials=serials
    )


def _check_stock(
    sales: SalesBook, lines: list[model.DocumentLine], items: Sequence[ItemRequest]
) -> None:
    """The stock book's checks, naming the first row the stock cannot take."""
    for index, request in enumerate(items):
        try:
            model.check_stock(lines[: index + 1], sales.stock)
        except Rejected as error:
            error.row = request.row
            raise


def _post(
    sales: SalesBook,
    kind: tuple[str, str],
    order: SalesOrder,
    ext_ref: str,
    day: str,
    lines: list[model.DocumentLine],
    refs: list[int],
) -> Delivery:
    """Save a delivery of ``kind`` (VBTYP, LFART) of ``order``'s items ``refs`` and post its
    goods movement ``lines`` (MKPF-XBLNR: the delivery number)."""
    category, lfart = kind
    items = [
        DeliveryItem(index * ITEM_STEP, line.matnr, line.werks, line.lgort, line.charg,
                     line.menge, line.meins, order.vbeln, ref, line.serials)
        for index, (line, ref) in enumerate(zip(lines, refs, strict=True), 1)
    ]  # fmt: skip
    delivery = Delivery(
        vbeln=sales.number(category), vbtyp=category, lfart=lfart, kunnr=order.kunnr,
        vkorg=order.area[0], lifex=ext_ref, lfdat=day, items=items,
    )  # fmt: skip
    delivery.mblnr, delivery.mjahr = sales.post_goods_movement(
        lines, delivery.vbeln, f"skuflow {delivery.lifex}"[:25]
    )
    sales.deliveries[delivery.vbeln] = delivery
    if delivery.lifex:
        sales.by_lifex.setdefault(delivery.lifex, []).append(delivery.vbeln)
    for item in delivery.items:
        here = (delivery.vbeln, item.posnr, category)
        sales.link((order.vbeln, item.vgpos, order.vbtyp), here, item.lfimg, item.meins)
        sales.link(here, (delivery.mblnr, item.posnr, GOODS_MOVEMENT), item.lfimg, item.meins)
    return delivery


def _unique_billing(sales: SalesBook, ext_ref: str, category: str) -> None:
    for existing in sales.by_xblnr.get(ext_ref, ()):
        if sales.billings[existing].vbtyp == category:
            raise Rejected(DUPLICATE_REF, existing, ext_ref)


def _add_billing(
    sales: SalesBook,
    kind: tuple[str, str],
    source: SalesOrder,
    ext_ref: str,
    day: str,
    items: list[BillingItem],
    based_on: str,
) -> Billing:
    """Save a billing document of ``kind`` (VBTYP, FKART) for ``source``'s customer, linked
    to the documents its items bill (of category ``based_on``)."""
    category, fkart = kind
    billing = Billing(
        vbeln=sales.number(category), vbtyp=category, fkart=fkart, kunag=source.kunnr,
        area=source.area, xblnr=ext_ref, waerk=source.waerk, fkdat=day, items=items,
    )  # fmt: skip
    sales.billings[billing.vbeln] = billing
    if billing.xblnr:
        sales.by_xblnr.setdefault(billing.xblnr, []).append(billing.vbeln)
    for item in billing.items:
        before = (item.vgbel, item.vgpos, based_on)
        sales.link(before, (billing.vbeln, item.posnr, billing.vbtyp), item.fkimg, item.meins)
    return billing


def _number(quantity: Decimal) -> str:
    return f"{quantity.normalize():f}"
