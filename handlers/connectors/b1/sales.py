"""SAP Business One sales documents over Service Layer: orders created once by their marketplace
reference and watched for holds, and the deliveries, invoices, returns and credit notes based
on each other.

**Orders** carry the marketplace order id in ``NumAtCard`` (ORDR.NumAtCard, 100 characters:
the customer's reference) and are found by it; each line carries its marketplace order item id
in ``FreeText`` (RDR1.FreeTxt, 100; copied by B1 into the documents based on it), and
:class:`~handlers.ports.erp.SalesOrderRef` ``lines`` maps it to B1's ``LineNum`` (lines are
posted in the order given, numbered from 0). A line's ``discount`` (the line's total promotion
discount) is sent as ``DiscountPercent`` of ``UnitPrice`` times ``Quantity``, to six decimals.

**Approval procedures**: Service Layer creates a draft instead of the order and answers -2028
(the ``Orders`` POST's documented behaviour [DOC-SLREF]); the draft is then found in ``Drafts``
by ``NumAtCard`` (``DocObjectCode eq 'oOrders'``) and returned with ``draft=True``. Once
someone approves it and it is added as an order (a new ``DocEntry``),
:meth:`B1Sales.find_sales_order` and :meth:`B1Sales.sales_order_states` find the order by
``NumAtCard`` and return its ``ref``.

**Many orders at once** (:meth:`B1Sales.create_sales_orders`): independent sub requests of
``$batch`` round trips, ``batch_max`` (100 [UNCONF: Service Layer's limit is not documented])
at most each — never one change set, so one bad order fails alone. Each is answered and
translated as :meth:`B1Sales.create_sales_order` answers it (a -2028 looked up as its draft).
B1 stops a batch at its first failed sub request and executes none after it (manual p.86), so
the orders after a failure go again in the next round trip: a batch of n with k failures takes
at most k + 1 round trips, never more than n single calls. A batch whose answer is lost fails
every order still in it, ambiguously (each is then found by its reference).

**Holds** (:meth:`B1Sales.sales_order_states`, for open orders; a few reads for many orders —
``$filter`` with ``or`` of ``DocEntry`` / ``NumAtCard``, 20 at a time, ``$select``, every
``odata.nextLink`` followed): a draft → ``not approved (draft awaiting approval)`` (``...
(draft approved, not yet added as an order)`` / ``... (draft rejected)``); ``Confirmed`` tNO
(the order's "Approved" checkbox) → ``not approved``; a customer ``Frozen``, or on credit hold
(``credit_hold_field``: a user-defined business partner field such as ``U_CreditHold`` holding
``Y``; B1 has no standard one, so it is read only when configured) → ``credit block``.
``Cancelled`` → status ``cancelled``, ``DocumentStatus`` ``bost_Close`` → ``closed``.

**Documents based on others** — ``DeliveryNotes`` (lines ``BaseType`` 17 on the order's lines),
``Invoices`` (15, every open quantity of a delivery), ``Returns`` (15, on delivery lines),
``CreditNotes`` (16, every open quantity of a return) — carry their idempotency key in
``JournalMemo`` (50 characters; :meth:`B1Sales.find_sales_document` finds them by it) and in
``Comments`` (``skuflow <kind> <key>``); quantities go as JSON numbers from ``Decimal``, never
floats. Their ``CardCode`` is the base document's (read once per base, then remembered).

Errors are :class:`~handlers.connectors.b1.errors.B1Error` s as every client call raises them;
:class:`~handlers.connectors.b1.port.B1Erp` translates them for the ERP port.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import msgspec

from handlers.connectors.b1.batch import BatchAnswer, BatchRequest
from handlers.connectors.b1.client import (
    B1Client,
    BatchQuantity,
    batches_and_serials,
    odata_filter,
    odata_string,
    tagged_comments,
)
from handlers.connectors.b1.errors import B1Error, B1Rejected, B1Unavailable
from handlers.ports.erp import (
    Delivery,
    OrderStatus,
    PostedDocument,
    PostedReturn,
    SalesDocumentKind,
    SalesOrder,
    SalesOrderRef,
    SalesOrderState,
    SalesReturn,
)

log = logging.getLogger("skuflow.b1")

KEY_FIELD = "JournalMemo"  # where a sales document's idempotency key goes (OINV.JrnlMemo, 50)
KEY_MAX = 50
REFERENCE_MAX = 100  # ORDR.NumAtCard
LINE_ID_MAX = 100  # RDR1.FreeTxt
CHUNK = 20  # keys per read: Service Layer's page size
BATCH_MAX = 100  # orders per $batch [UNCONF: Service Layer's limit is not documented]
ENTITIES: dict[SalesDocumentKind, str] = {
    "delivery": "DeliveryNotes", "invoice": "Invoices", "return": "Returns",
    "credit_note": "CreditNotes",
}  # fmt: skip
DRAFT_CREATED = -2028  # the Orders POST's answer when an approval procedure made a draft
ORDER_SELECT = "DocEntry,DocNum,NumAtCard,CardCode,DocumentStatus,Cancelled,Confirmed,DocumentLines"
DRAFT_SELECT = f"{ORDER_SELECT},AuthorizationStatus"
HOLD_NOT_APPROVED = "not approved"
HOLD_CREDIT = "credit block"
DRAFT_HOLDS = {
    "dasPending": "not approved (draft awaiting approval)",
    "dasApproved": "not approved (draft approved, not yet added as an order)",
    "dasRejected": "not approved (draft rejected)",
}
PERCENT = Decimal("0.000001")
CARDS_REMEMBERED = 10_000
YesNo = Literal["tYES", "tNO"]


class _Line(msgspec.Struct, rename="pascal"):
    line_num: int
    item_code: str = ""
    quantity: Decimal = Decimal(0)
    remaining_open_quantity: Decimal = Decimal(0)
    line_status: str = "bost_Open"
    free_text: str | None = None
    base_line: int | None = None  # the base document's line this one copies

    @property
    def open(self) -> Decimal:
        return self.remaining_open_quantity if self.line_status == "bost_Open" else Decimal(0)


class _Order(msgspec.Struct, rename="pascal"):
    doc_entry: int
    doc_num: int
    num_at_card: str | None = None
    card_code: str = ""
    document_status: str = "bost_Open"
    cancelled: YesNo = "tNO"
    confirmed: YesNo = "tYES"
    authorization_status: str = "dasWithout"
    document_lines: list[_Line] = []


class _Base(msgspec.Struct, rename="pascal"):
    """A document another is based on: its customer and lines."""

    card_code: str
    document_lines: list[_Line] = []


_ENCODE = msgspec.json.Encoder(decimal_format="number").encode


class B1Sales:
    """Sales orders and the documents based on them, over a :class:`B1Client`."""

    def __init__(
        self,
        client: B1Client,
        *,
        credit_hold_field: str | None = None,
        chunk: int = CHUNK,
        batch_max: int = BATCH_MAX,
    ) -> None:
        if credit_hold_field is not None and not credit_hold_field.startswith("U_"):
            raise ValueError("credit_hold_field must be a user-defined field (U_...)")
        if chunk < 1 or batch_max < 1:
            raise ValueError("chunk and batch_max must be >= 1")
        self._client = client
        self._credit_hold_field = credit_hold_field
        self._chunk = chunk
        self.batch_max = batch_max
        self._cards: OrderedDict[tuple[str, int], str] = OrderedDict()  # base -> its CardCode

    # --- orders ---

    async def create_sales_order(self, order: SalesOrder) -> SalesOrderRef:
        """The order created, or the draft an approval procedure made of it (``draft``)."""
        codes = [line.item_code for line in order.lines]
        try:
            raw = await self._client.write(
                "POST", "/Orders", _order_body(order), operation="Orders", codes=codes
            )
        except B1Rejected as exc:
            return await self._drafted(order, exc)
        return self._created(order, raw)

    async def create_sales_orders(
        self, orders: Sequence[SalesOrder]
    ) -> list[SalesOrderRef | B1Error]:
        """Each order's outcome as :meth:`create_sales_order` has it — its reference, or the
        error that call would raise — in few ``$batch`` round trips (see the module
        docstring). A body that cannot be written raises ``ValueError`` before anything is
        sent, as for one order."""
        requests = [
            BatchRequest(method="POST", path="/Orders", body=_order_body(order),
                         operation="Orders", codes=tuple(line.item_code for line in order.lines))
            for order in orders
        ]  # fmt: skip
        outcomes: dict[int, SalesOrderRef | B1Error] = {}
        waiting = list(range(len(orders)))
        while waiting:
            sent = waiting[: self.batch_max]
            try:
                answers = await self._client.batch([requests[i] for i in sent])
            except B1Error as exc:
                outcomes |= dict.fromkeys(sent, exc)
                answers = []
            for index, answer in zip(sent, answers, strict=False):
                outcomes[index] = await self._outcome(orders[index], requests[index], answer)
            waiting = [i for i in waiting if i not in outcomes]  # not executed: again
        return [outcomes[index] for index in range(len(orders))]

    async def _outcome(
        self, order: SalesOrder, request: BatchRequest, answer: BatchAnswer
    ) -> SalesOrderRef | B1Error:
        try:
            if 200 <= answer.status < 300:
                return self._created(order, answer.body)
            return await self._drafted(order, self._client.sub_request_error(request, answer))
        except B1Error as exc:
            return exc

    def _created(self, order: SalesOrder, raw: bytes) -> SalesOrderRef:
        """The reference of ``order`` from B1's 201 answer (the order with its lines)."""
        try:
            created = msgspec.json.decode(raw, type=_Order)
        except msgspec.MsgspecError:
            reason = "malformed answer to an order"
            raise B1Unavailable(reason, ambiguous=True, operation="Orders") from None
        self._remember("Orders", created.doc_entry, created.card_code or order.customer_code)
        numbers = [line.line_num for line in created.document_lines]
        known = dict(zip((line.line_id for line in order.lines), numbers, strict=False))
        return _ref(order.reference, created, known if len(known) == len(order.lines) else None)

    async def _drafted(self, order: SalesOrder, exc: B1Error) -> SalesOrderRef:
        """The draft an approval procedure made of ``order``, when B1 answered its POST with
        -2028; otherwise (or -2028 and no draft: a record it names does not exist) ``exc``."""
        if not isinstance(exc, B1Rejected) or exc.code != DRAFT_CREATED:
            raise exc
        draft = await self._draft(order.reference)
        if draft is None:
            raise exc
        log.info("B1 made order %s a draft awaiting approval", order.reference)
        return draft

    async def find_sales_order(self, reference: str) -> SalesOrderRef | None:
        """The order whose ``NumAtCard`` is ``reference``, else its draft, else None."""
        orders = await self._orders("Orders", [f"NumAtCard eq {odata_string(reference)}"])
        if orders:
            return _ref(reference, _first(orders, reference))
        return await self._draft(reference)

    async def sales_order_states(self, refs: Sequence[SalesOrderRef]) -> dict[str, SalesOrderState]:
        orders: dict[str, _Order] = {}
        for chunk in _chunks([r for r in refs if not r.draft], self._chunk):
            wanted = {ref.doc_entry: ref for ref in chunk}
            where = [f"DocEntry eq {entry}" for entry in wanted]
            for row in await self._orders("Orders", where):
                if row.doc_entry in wanted:
                    orders[wanted[row.doc_entry].reference] = row
        drafts = [ref for ref in refs if ref.draft]
        orders |= await self._orders_by_reference([ref.reference for ref in drafts])
        pending: dict[str, _Order] = {}
        for chunk in _chunks([r for r in drafts if r.reference not in orders], self._chunk):
            wanted = {ref.doc_entry: ref for ref in chunk}
            for row in await self._orders(
                "Drafts", [f"DocEntry eq {e}" for e in wanted], draft=True
            ):
                if row.doc_entry in wanted:
                    pending[wanted[row.doc_entry].reference] = row
        added = [ref for ref, row in pending.items() if row.authorization_status == "dasGenerated"]
        orders |= await self._orders_by_reference(added)  # added as orders while we read
        open_cards = {row.card_code for row in orders.values() if _status(row) == "open"}
        blocked = await self._blocked(open_cards)
        states: dict[str, SalesOrderState] = {}
        for ref in refs:
            if ref.reference in orders:
                row = orders[ref.reference]
                states[ref.reference] = _order_state(ref, row, row.card_code in blocked)
            elif ref.reference in pending:
                states[ref.reference] = _draft_state(ref, pending[ref.reference])
        return states

    async def cancel_sales_order(self, ref: SalesOrderRef) -> None:
        """Cancel the order (``Orders(n)/Cancel``; one already cancelled is done). A draft not
        yet added as an order is removed (``DELETE Drafts(n)``)."""
        entry = ref.doc_entry
        if ref.draft:
            found = await self._orders_by_reference([ref.reference])
            if ref.reference not in found:
                try:
                    await self._client.write("DELETE", f"/Drafts({entry})", operation="Drafts")
                except B1Rejected as exc:
                    if exc.code != DRAFT_CREATED:  # -2028 here: no such draft (any more)
                        raise
                return
            entry = found[ref.reference].doc_entry
        try:
            await self._client.write("POST", f"/Orders({entry})/Cancel", operation="Orders")
        except B1Rejected:
            path = f"/Orders({entry})?$select=DocEntry,DocNum,Cancelled"
            order = await self._client.read(path, _Order, operation="Orders", missing_ok=True)
            if order is not None and order.cancelled == "tYES":
                return  # an earlier attempt did cancel it
            raise

    async def _orders(self, entity: str, where: list[str], draft: bool = False) -> list[_Order]:
        """``entity`` rows matching any of ``where`` (each an ``eq`` clause)."""
        if not where:
            return []
        expression = " or ".join(where)
        if draft:
            expression = f"DocObjectCode eq 'oOrders' and ({expression})"
        select = DRAFT_SELECT if draft else ORDER_SELECT
        path = f"/{entity}?$filter={odata_filter(expression)}&$select={select}"
        return await self._client.read_all(path, _Order, operation=entity)

    async def _orders_by_reference(self, references: Sequence[str]) -> dict[str, _Order]:
        found: dict[str, _Order] = {}
        for chunk in _chunks(list(dict.fromkeys(references)), self._chunk):
            rows = await self._orders("Orders", [f"NumAtCard eq {odata_string(r)}" for r in chunk])
            for reference in chunk:
                matching = [row for row in rows if row.num_at_card == reference]
                if matching:
                    found[reference] = _first(matching, reference)
        return found

    async def _draft(self, reference: str) -> SalesOrderRef | None:
        """The draft of the order ``reference``, or the order it was added as meanwhile."""
        where = [f"NumAtCard eq {odata_string(reference)}"]
        drafts = await self._orders("Drafts", where, draft=True)
        waiting = [row for row in drafts if row.authorization_status != "dasGenerated"]
        if waiting:
            return _ref(reference, min(waiting, key=lambda row: row.doc_entry), draft=True)
        if drafts:  # added as an order between our reads
            orders = await self._orders("Orders", where)
            if orders:
                return _ref(reference, _first(orders, reference))
        return None

    async def _blocked(self, cards: set[str]) -> set[str]:
        """The customers of ``cards`` that block their orders: frozen, or on credit hold."""
        field = self._credit_hold_field
        blocked: set[str] = set()
        select = "CardCode,Frozen" + (f",{field}" if field else "")
        for chunk in _chunks(sorted(cards), self._chunk):
            expression = " or ".join(f"CardCode eq {odata_string(card)}" for card in chunk)
            path = f"/BusinessPartners?$filter={odata_filter(expression)}&$select={select}"
            rows = await self._client.read_all(path, dict[str, Any], operation="BusinessPartners")
            for row in rows:
                held = field is not None and str(row.get(field) or "").upper() in ("Y", "TYES")
                if row.get("Frozen") == "tYES" or held:
                    blocked.add(str(row.get("CardCode")))
        return blocked

    # --- documents based on others ---

    async def create_delivery(self, delivery: Delivery) -> PostedDocument:
        order = delivery.order
        if order.draft:
            raise ValueError(f"order {order.reference} is a draft: nothing can be delivered yet")
        lines = [
            _based_line(17, order.doc_entry, line.order_line, line.quantity)
            | {"WarehouseCode": line.warehouse_code}
            | _stock(line.item_code, line.quantity, line.batch_number, line.serial_numbers)
            for line in delivery.lines
        ]
        card = await self._card("Orders", order.doc_entry)
        body = _document("delivery", delivery.key, card, lines, delivery.delivery_date,
                         delivery.remarks)  # fmt: skip
        codes = [line.item_code for line in delivery.lines]
        return await self._create("DeliveryNotes", body, codes)

    async def create_invoice(self, key: str, delivery: PostedDocument) -> PostedDocument:
        """An invoice of every quantity of ``delivery`` still open (not invoiced or returned
        yet); a delivery with none open is sent whole, for B1 to say why it refuses."""
        base = await self._base("DeliveryNotes", delivery.doc_entry)
        lines, codes = _open_lines(15, delivery.doc_entry, base)
        body = _document("invoice", key, base.card_code, lines)
        return await self._create("Invoices", body, codes)

    async def create_return(self, sales_return: SalesReturn) -> PostedDocument:
        """A ``Returns`` document based on the delivery; for invoiced goods (the invoice closed
        the delivery, and a closed delivery is no base) a ``CreditNotes`` document based on
        the invoice's lines for those delivery lines — it restocks and credits at once."""
        if sales_return.invoice is not None:
            return await self._credit_invoiced(sales_return, sales_return.invoice)
        entry = sales_return.delivery.doc_entry
        lines = [
            _based_line(15, entry, line.delivery_line, line.quantity)
            | {"WarehouseCode": line.warehouse_code}
            | _stock(line.item_code, line.quantity, line.batch_number, line.serial_numbers)
            for line in sales_return.lines
        ]
        card = await self._card("DeliveryNotes", entry)
        body = _document("return", sales_return.key, card, lines, sales_return.return_date,
                         sales_return.remarks)  # fmt: skip
        codes = [line.item_code for line in sales_return.lines]
        posted = await self._create("Returns", body, codes)
        return PostedReturn(doc_entry=posted.doc_entry, doc_num=posted.doc_num)

    async def _credit_invoiced(
        self, sales_return: SalesReturn, invoice: PostedDocument
    ) -> PostedReturn:
        base = await self._base("Invoices", invoice.doc_entry)
        by_delivery_line = {
            line.base_line: line.line_num
            for line in base.document_lines
            if line.base_line is not None
        }
        lines = []
        for line in sales_return.lines:
            number = by_delivery_line.get(line.delivery_line)
            if number is None:
                raise ValueError(
                    f"invoice {invoice.doc_num} has no line for delivery line {line.delivery_line}"
                )
            lines.append(
                _based_line(13, invoice.doc_entry, number, line.quantity)
                | {"WarehouseCode": line.warehouse_code}
                | _stock(line.item_code, line.quantity, line.batch_number, line.serial_numbers)
            )
        body = _document("return", sales_return.key, base.card_code, lines,
                         sales_return.return_date, sales_return.remarks)  # fmt: skip
        codes = [line.item_code for line in sales_return.lines]
        posted = await self._create("CreditNotes", body, codes)
        return PostedReturn(doc_entry=posted.doc_entry, doc_num=posted.doc_num, credited=True)

    async def create_credit_note(self, key: str, sales_return: PostedDocument) -> PostedDocument:
        """A credit note of every quantity of ``sales_return`` not yet credited."""
        base = await self._base("Returns", sales_return.doc_entry)
        lines, codes = _open_lines(16, sales_return.doc_entry, base)
        body = _document("credit_note", key, base.card_code, lines)
        return await self._create("CreditNotes", body, codes)

    async def find_sales_document(self, kind: SalesDocumentKind, key: str) -> PostedDocument | None:
        found = await self._client.find_by_key(ENTITIES[kind], KEY_FIELD, key)
        if kind == "return":  # posted as a Returns document, or (invoiced) as a credit note
            if found is not None:
                return PostedReturn(doc_entry=found.doc_entry, doc_num=found.doc_num)
            found = await self._client.find_by_key("CreditNotes", KEY_FIELD, key)
            if found is not None:
                return PostedReturn(doc_entry=found.doc_entry, doc_num=found.doc_num,
                                    credited=True)  # fmt: skip
        return None if found is None else PostedDocument(doc_entry=found.doc_entry,
                                                          doc_num=found.doc_num)  # fmt: skip

    async def delivery_lines(self, delivery: PostedDocument) -> dict[int, tuple[str, Decimal]]:
        base = await self._base("DeliveryNotes", delivery.doc_entry)
        return {line.line_num: (line.item_code, line.quantity) for line in base.document_lines}

    async def _create(self, entity: str, body: bytes, codes: list[str]) -> PostedDocument:
        posted = await self._client.create(entity, body, codes=codes)
        return PostedDocument(doc_entry=posted.doc_entry, doc_num=posted.doc_num)

    async def _base(self, entity: str, entry: int) -> _Base:
        path = f"/{entity}({entry})?$select=CardCode,DocumentLines"
        base = await self._client.read(path, _Base, operation=entity)
        assert base is not None  # not missing_ok: a 404 raised
        self._remember(entity, entry, base.card_code)
        return base

    async def _card(self, entity: str, entry: int) -> str:
        """The customer of a base document (B1 wants the ``CardCode`` of a document based on
        it); it never changes, so it is read once."""
        card = self._cards.get((entity, entry))
        if card is None:
            path = f"/{entity}({entry})?$select=CardCode"
            base = await self._client.read(path, _Base, operation=entity)
            assert base is not None  # not missing_ok: a 404 raised
            card = base.card_code
            self._remember(entity, entry, card)
        return card

    def _remember(self, entity: str, entry: int, card: str) -> None:
        self._cards[entity, entry] = card
        self._cards.move_to_end((entity, entry))
        while len(self._cards) > CARDS_REMEMBERED:
            self._cards.popitem(last=False)


# --- bodies ---


def _order_body(order: SalesOrder) -> bytes:
    if not 0 < len(order.reference) <= REFERENCE_MAX:
        raise ValueError(f"reference must be 1 to {REFERENCE_MAX} characters (NumAtCard)")
    if not order.lines:
        raise ValueError(f"order {order.reference} has no lines")
    lines = []
    for line in order.lines:
        if not 0 < len(line.line_id) <= LINE_ID_MAX:
            raise ValueError(f"line id must be 1 to {LINE_ID_MAX} characters: {line.line_id!r}")
        if not line.quantity > 0:
            raise ValueError(f"line {line.line_id}: quantity must be > 0")
        entry: dict[str, object] = {
            "ItemCode": line.item_code,
            "Quantity": line.quantity,
            "WarehouseCode": line.warehouse_code,
            "FreeText": line.line_id,
        }
        if line.unit_price is not None:
            entry["UnitPrice"] = line.unit_price
        if line.discount:
            entry["DiscountPercent"] = _discount_percent(line.discount, line.unit_price,
                                                         line.quantity, line.line_id)  # fmt: skip
        if line.tax_code:
            entry["TaxCode"] = line.tax_code
        lines.append(entry)
    header: dict[str, object] = {
        "CardCode": order.customer_code,
        "NumAtCard": order.reference,
        "DocDate": order.order_date.isoformat(),
        "DocDueDate": order.due_date.isoformat(),
        "Comments": tagged_comments(f"skuflow order {order.reference}", order.remarks),
    }
    if order.currency:
        header["DocCurrency"] = order.currency
    return _ENCODE({**header, "DocumentLines": lines})


def _discount_percent(
    discount: Decimal, unit_price: Decimal | None, quantity: Decimal, line_id: str
) -> Decimal:
    """A line's total ``discount`` as B1's ``DiscountPercent`` of its gross amount."""
    gross = (unit_price or Decimal(0)) * quantity
    if not 0 <= discount <= gross or gross == 0:
        raise ValueError(f"line {line_id}: a discount needs a unit price and cannot exceed it")
    return (discount / gross * 100).quantize(PERCENT).normalize()


def _document(
    kind: SalesDocumentKind,
    key: str,
    card: str,
    lines: list[dict[str, object]],
    doc_date: date | None = None,
    remarks: str = "",
) -> bytes:
    if not (0 < len(key) <= KEY_MAX and key.isprintable()):
        raise ValueError(f"key must be 1 to {KEY_MAX} printable characters ({KEY_FIELD})")
    header: dict[str, object] = {
        "CardCode": card,
        KEY_FIELD: key,
        "Comments": tagged_comments(f"skuflow {kind.replace('_', ' ')} {key}", remarks),
    }
    if doc_date is not None:
        header["DocDate"] = doc_date.isoformat()
    return _ENCODE({**header, "DocumentLines": lines})


def _based_line(base_type: int, entry: int, line: int, quantity: Decimal) -> dict[str, object]:
    return {"BaseType": base_type, "BaseEntry": entry, "BaseLine": line, "Quantity": quantity}


def _stock(
    item_code: str, quantity: Decimal, batch: str | None, serials: Sequence[str]
) -> dict[str, object]:
    if serials and len(set(serials)) != quantity:
        raise ValueError(f"{item_code}: one distinct serial number per unit")
    batches = (BatchQuantity(batch, quantity),) if batch else ()
    return batches_and_serials(batches, serials)


def _open_lines(
    base_type: int, entry: int, base: _Base
) -> tuple[list[dict[str, object]], list[str]]:
    """Lines taking every open quantity of ``base``; all of them whole if none is open."""
    lines = [line for line in base.document_lines if line.open > 0]
    chosen = [(line, line.open) for line in lines] or [
        (line, line.quantity) for line in base.document_lines
    ]
    body = [_based_line(base_type, entry, line.line_num, quantity) for line, quantity in chosen]
    return body, [line.item_code for line, _ in chosen]


# --- answers ---


def _first(orders: list[_Order], reference: str) -> _Order:
    if len(orders) > 1:
        log.error("B1 holds %d orders with NumAtCard %s", len(orders), reference)
    return min(orders, key=lambda order: order.doc_entry)


def _ref(
    reference: str, order: _Order, known: dict[str, int] | None = None, *, draft: bool = False
) -> SalesOrderRef:
    """Where ``order`` lives; its lines by ``known`` (line id → LineNum) when those lines are
    all there, else by each line's ``FreeText``."""
    numbers = {line.line_num for line in order.document_lines}
    if known is None or not set(known.values()) <= numbers:
        known = {line.free_text: line.line_num for line in order.document_lines if line.free_text}
    return SalesOrderRef(
        reference=reference, doc_entry=order.doc_entry, doc_num=order.doc_num, lines=known,
        draft=draft,
    )  # fmt: skip


def _status(order: _Order) -> OrderStatus:
    if order.cancelled == "tYES":
        return "cancelled"
    return "closed" if order.document_status == "bost_Close" else "open"


def _order_state(ref: SalesOrderRef, order: _Order, blocked: bool) -> SalesOrderState:
    status, holds = _status(order), []
    if status == "open" and order.confirmed == "tNO":
        holds.append(HOLD_NOT_APPROVED)
    if status == "open" and blocked:
        holds.append(HOLD_CREDIT)
    lines = order.document_lines
    return SalesOrderState(
        ref=_ref(ref.reference, order, ref.lines),  # an approved draft keeps its LineNums
        status=status,
        holds=tuple(holds),
        open_quantities={
            line.line_num: line.open if status == "open" else Decimal(0) for line in lines
        },
    )


def _draft_state(ref: SalesOrderRef, draft: _Order) -> SalesOrderState:
    status: OrderStatus = "cancelled" if draft.cancelled == "tYES" else "open"
    hold = DRAFT_HOLDS.get(draft.authorization_status, DRAFT_HOLDS["dasPending"])
    return SalesOrderState(
        ref=_ref(ref.reference, draft, ref.lines, draft=True),
        status=status,
        holds=(hold,) if status == "open" else (),
        open_quantities={line.line_num: line.quantity for line in draft.document_lines},
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
