"""SAP ECC fills the sales capabilities of the ERP port: sales orders as ORDERS05 IDocs followed
to their application, their state read from the SD tables, and the documents that follow them
through the customer's wrapper function modules over SOAP-RFC.

**Sales orders** (``sales orders`` capability). :meth:`EccSales.create_sales_order` sends one
``ORDERS05`` IDoc (:mod:`handlers.connectors.ecc.orders`), recorded first in
``skuflow_ecc_idocs`` under the key ``order:<reference>`` (no materials: an order never holds a
stock posting back). ECC posts it asynchronously, so the IDoc is followed in ``EDIDC`` by its
``ARCKEY`` for up to ``order_wait_seconds``: 53 → the order exists, read back from ``VBAK`` by
the customer PO number ``BSTNK`` (the marketplace order id; at most 20 characters [DOC: data
element BSTNK]) and ``VBKD`` for each item's line id (``BSTKD_E``); 51 → ``EDIDS``' message:
a duplicate purchase order (``duplicate_po_messages``, V4 115 [UNCONF]) is
:class:`~handlers.ports.erp.ErpDuplicateEntry` (the caller finds the order by its reference),
a lock (``lock_messages``, or "is locked by") :class:`~handlers.ports.erp.ErpLocked`, any other
:class:`~handlers.ports.erp.ErpRejected` with SAP's class and number (VG204 sales area, an
unknown customer or material); 56/60 a configuration error; still in process when the wait
ends → :class:`~handlers.ports.erp.ErpUnavailable` ``ambiguous`` (the caller looks the order up
by its reference later). A call finding an IDoc of the same reference still in flight follows
it instead of sending another; one whose answer was lost is looked up in EDIDC after
``lookup_grace_seconds`` and sent anew only if ECC never stored it.

:meth:`EccSales.sales_order_states` reads many orders in few calls (``VBAK``, ``VBUK``,
``VBAP``, and ``VBFA`` for partly delivered ones; ``OPTIONS`` an OR of VBELNs, ``chunk`` at a
time): every item with a reason for rejection (VBAP-ABGRU) → ``cancelled``; VBUK-GBSTK ``C`` →
``closed``; else ``open`` with its holds — VBAK-LIFSK → ``delivery block <code>``, VBUK-CMGST
``B``/``C`` → ``credit block``, VBUK-UVALL/UVVLK ``A``/``B`` → ``incomplete`` [UNCONF: the
status values, research A6] — and per item (POSNR) the open quantity (KWMENG less what
deliveries took, VBFA-RFMNG of category J). A billing block (FAKSK) is no hold: picking goes
on. :meth:`EccSales.cancel_sales_order` sets the reason for rejection
``rejection_reason`` on every item (the wrapper refuses once anything was delivered).

**Deliveries, invoices, returns, credit notes** (``sales deliveries`` capability) through the
wrappers ``functions`` (their interface: :mod:`devstack.sims.ecc.sales_rfc`, the README): the
idempotency key is the wrapper's ``EXT_REF``, kept in LIKP-LIFEX (deliveries), VBRK-XBLNR
(invoices, credit memos, 16 characters) and VBAK-BSTNK of the returns order; a document is
found by it (:meth:`EccSales.find_sales_document`), and the wrapper refuses a second document
with a key already used (``ZSKUFLOW 001`` → :class:`~handlers.ports.erp.ErpDuplicateEntry`). An
answer lost after the call is ambiguous (the wrapper may have committed). A RETURN row of type
E/A is an :class:`~handlers.ports.erp.ErpRejected` naming the line its ``ROW`` gives (or a lock,
as above). A return is the returns order (its VBELN is the document; with reference to the
delivery and, for invoiced goods, to the invoice); its goods come back with
``return_movement_type`` (651 blocked returns stock [UNCONF], 653 unrestricted). It never credits
by itself (a :class:`~handlers.ports.erp.PostedDocument`, not ``credited``): the credit memo
follows from the returns order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

import anyio
import msgspec

from config.settings import EccSettings, default_sales_functions
from handlers.connectors.ecc.client import (
    EccAuthError,
    EccClient,
    EccError,
    EccRejected,
    EccUnavailable,
)
from handlers.connectors.ecc.idoc import (
    ControlRecord,
    IdocError,
    material_number,
    quantity_text,
    sap_date,
    split_warehouse,
)
from handlers.connectors.ecc.orders import SalesArea, orders_xml
from handlers.connectors.ecc.reads import StatusMessage, TableReader, line_named
from handlers.connectors.ecc.rfc import FunctionAnswer, Row, any_of
from handlers.connectors.ecc.tracker import FAILED, IN_PROCESS, POSTED, IdocTracker
from handlers.ports.erp import (
    Delivery,
    DeliveryLine,
    ErpAuthFailed,
    ErpDuplicateEntry,
    ErpError,
    ErpLocked,
    ErpRejected,
    ErpUnavailable,
    OrderStatus,
    PostedDocument,
    SalesDocumentKind,
    SalesOrder,
    SalesOrderRef,
    SalesOrderState,
    SalesReturn,
    SalesReturnLine,
)

log = logging.getLogger("skuflow.ecc")

ORDER_KEY = "order:"
#: VBAK-BSTNK (CHAR 20) holds the reference an order is found by [DOC: data element BSTNK].
REFERENCE_MAX = 20
#: Where each document's key goes: LIKP-LIFEX 35, VBRK-XBLNR 16, VBAK-BSTNK 20.
KEY_MAX: dict[SalesDocumentKind, int] = {"delivery": 35, "invoice": 16, "return": 20}
KEY_MAX["credit_note"] = 16
#: The wrapper's own "this reference is taken" message (its interface).
DUPLICATE_REFERENCE = "ZSKUFLOW 001"
#: What each kind is found by: (table, key field, SD document category).
FOUND_BY: dict[SalesDocumentKind, tuple[str, str, str]] = {
    "delivery": ("LIKP", "LIFEX", "J"),
    "invoice": ("VBRK", "XBLNR", "M"),
    "return": ("VBAK", "BSTNK", "H"),
    "credit_note": ("VBRK", "XBLNR", "O"),
}
INCOMPLETE = frozenset({"A", "B"})
CREDIT_BLOCKED = frozenset({"B", "C"})


class SalesOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The sales connector's behaviour (from ``[ecc]`` settings, :func:`sales_options`)."""

    area: SalesArea = SalesArea(
        sales_org="1000", distribution_channel="10", division="00", order_type="OR"
    )
    functions: dict[str, str] = msgspec.field(default_factory=default_sales_functions)
    rejection_reason: str = "10"
    return_movement_type: str = "651"
    discount_condition: str = "RB00"
    order_wait_seconds: float = 30.0
    lock_messages: frozenset[str] = frozenset({"V1 042"})
    duplicate_po_messages: frozenset[str] = frozenset({"V4 115"})
    #: Orders read per call by :meth:`EccSales.sales_order_states`.
    chunk: int = 50


def sales_options(settings: EccSettings) -> SalesOptions:
    """The options of ``[ecc]``'s sales settings."""
    return SalesOptions(
        area=SalesArea(
            sales_org=settings.sales_org, distribution_channel=settings.distribution_channel,
            division=settings.division, order_type=settings.order_type,
        ),
        functions=dict(settings.sales_functions), rejection_reason=settings.rejection_reason,
        return_movement_type=settings.return_movement_type,
        discount_condition=settings.discount_condition,
        order_wait_seconds=settings.sales_order_wait_seconds,
        lock_messages=frozenset(settings.sales_lock_messages),
        duplicate_po_messages=frozenset(settings.duplicate_po_messages),
    )  # fmt: skip


class EccSales:
    """Sales orders and the documents that follow them (see the module)."""

    def __init__(
        self,
        client: EccClient,
        control: ControlRecord,
        reader: TableReader,
        tracker: IdocTracker,
        options: SalesOptions,
        *,
        poll: tuple[float, float] = (0.5, 10.0),
        lookup_grace_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self._client, self._control = client, control
        self._reader, self._tracker, self._options = reader, tracker, options
        self._poll, self._grace = poll, lookup_grace_seconds
        self._clock, self._sleep, self._today = clock, sleep, today

    # --- sales orders -----------------------------------------------------------------------

    async def create_sales_order(self, order: SalesOrder) -> SalesOrderRef:
        if not 0 < len(order.reference) <= REFERENCE_MAX:
            raise ErpRejected(
                "ECC", f"reference {order.reference!r}: 1 to {REFERENCE_MAX} characters (BSTNK)"
            )
        if not order.lines:
            raise ErpRejected("ECC", "a sales order needs at least one line")
        key = ORDER_KEY + order.reference
        plant = _plant(order.lines[0].warehouse_code, 0)
        docnum, state = await self._claim(key, plant)
        if state == "sending":  # an earlier send whose answer was lost
            docnum, state = await self._look_up(docnum, key, plant)
        if state == "posted":
            found = await self.find_sales_order(order.reference)
            if found is None:
                raise ErpUnavailable(
                    f"order {order.reference}: posted, not readable yet", ambiguous=True
                )
            return found
        if state == "new":
            await self._send(docnum, key, order)
        return await self._follow(docnum, key, order)

    async def find_sales_order(self, reference: str) -> SalesOrderRef | None:
        """The order whose customer PO number is ``reference`` (the first one, should ECC only
        warn on duplicates)."""
        if not 0 < len(reference) <= REFERENCE_MAX:
            return None
        heads = await self._reader.read(
            "VBAK", ["VBELN", "VBTYP", "BSTNK"], [("BSTNK", reference), ("VBTYP", "C")]
        )
        if not heads:
            return None
        return await self._ref(min(row["VBELN"] for row in heads), reference, None)

    async def sales_order_states(self, refs: Sequence[SalesOrderRef]) -> dict[str, SalesOrderState]:
        """The state of each order by reference, ``chunk`` orders per read (see the module)."""
        states: dict[str, SalesOrderState] = {}
        chunk = max(1, self._options.chunk)
        for start in range(0, len(refs), chunk):
            states.update(await self._states(refs[start : start + chunk]))
        return states

    async def cancel_sales_order(self, ref: SalesOrderRef) -> None:
        """A reason for rejection on every item (refused once anything was delivered)."""
        await self._call(
            "reject",
            {"SALES_ORDER": _vbeln(ref.doc_entry), "REASON": self._options.rejection_reason},
        )
        log.info(
            "ECC sales order rejected", extra={"order": ref.doc_num, "reference": ref.reference}
        )

    # --- documents that follow ----------------------------------------------------------------

    async def create_delivery(self, delivery: Delivery) -> PostedDocument:
        _key_fits("delivery", delivery.key)
        head = {"SALES_ORDER": _vbeln(delivery.order.doc_entry), "EXT_REF": delivery.key,
                "DELIVERY_DATE": sap_date(delivery.delivery_date)}  # fmt: skip
        refs = [line.order_line for line in delivery.lines]
        answer = await self._call_items("delivery", head, delivery.lines, refs, "DLV_QTY", {})
        return _document(answer, "DELIVERY")

    async def create_invoice(self, key: str, delivery: PostedDocument) -> PostedDocument:
        """An invoice of everything ``delivery`` delivered and is not billed yet."""
        _key_fits("invoice", key)
        answer = await self._call(
            "invoice", {"DELIVERY": _vbeln(delivery.doc_entry), "EXT_REF": key,
                        "BILLING_DATE": sap_date(self._today())},
        )  # fmt: skip
        return _document(answer, "BILLING_DOC")

    async def create_return(self, sales_return: SalesReturn) -> PostedDocument:
        _key_fits("return", sales_return.key)
        head = {"DELIVERY": _vbeln(sales_return.delivery.doc_entry), "EXT_REF": sales_return.key,
                "RETURN_DATE": sap_date(sales_return.return_date)}  # fmt: skip
        if sales_return.invoice is not None:  # invoiced goods: the return references the invoice
            head["INVOICE"] = _vbeln(sales_return.invoice.doc_entry)
        refs = [line.delivery_line for line in sales_return.lines]
        move = {"MOVE_TYPE": self._options.return_movement_type}
        answer = await self._call_items("return", head, sales_return.lines, refs, "QUANTITY", move)
        return _document(answer, "RETURN_ORDER")

    async def create_credit_note(self, key: str, sales_return: PostedDocument) -> PostedDocument:
        """A credit memo of everything the returns order took back and is not credited yet."""
        _key_fits("credit_note", key)
        answer = await self._call(
            "credit_note", {"RETURN_ORDER": _vbeln(sales_return.doc_entry), "EXT_REF": key,
                            "BILLING_DATE": sap_date(self._today())},
        )  # fmt: skip
        return _document(answer, "BILLING_DOC")

    async def find_sales_document(self, kind: SalesDocumentKind, key: str) -> PostedDocument | None:
        """The document of ``kind`` carrying ``key`` (LIKP-LIFEX, VBRK-XBLNR, VBAK-BSTNK)."""
        if not 0 < len(key) <= KEY_MAX[kind]:
            return None
        table, field, category = FOUND_BY[kind]
        rows = await self._reader.read(
            table, ["VBELN", "VBTYP", field], [(field, key), ("VBTYP", category)]
        )
        if not rows:
            return None
        number = int(min(row["VBELN"] for row in rows))
        return PostedDocument(doc_entry=number, doc_num=number)

    async def delivery_lines(self, delivery: PostedDocument) -> dict[int, tuple[str, Decimal]]:
        """A delivery's items (LIPS): POSNR → (item code, delivered quantity)."""
        rows = await self._reader.read(
            "LIPS", ["VBELN", "POSNR", "MATNR", "LFIMG"], [("VBELN", _vbeln(delivery.doc_entry))]
        )
        return {
            int(row["POSNR"]): (_item_code(row["MATNR"]), _decimal(row["LFIMG"])) for row in rows
        }

    # --- the ORDERS IDoc's life ---------------------------------------------------------------

    async def _claim(self, key: str, plant: str) -> tuple[int, str]:
        """The IDoc of ``key`` still in flight or posted, (docnum, its state); else a new one
        recorded, (docnum, ``"new"``)."""
        pool = self._tracker.pool
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('skuflow-ecc:' || $1))", key)
            row = await conn.fetchrow(
                """SELECT docnum, state FROM skuflow_ecc_idocs
                   WHERE key = $1 AND state IN ('sending', 'stored', 'posted')
                   ORDER BY docnum DESC LIMIT 1""",
                key,
            )
            if row is not None:
                return int(row["docnum"]), str(row["state"])
            docnum = await conn.fetchval(
                "INSERT INTO skuflow_ecc_idocs (key, plant, materials) VALUES ($1, $2, '{}') "
                "RETURNING docnum",
                key,
                plant,
            )
        return int(docnum), "new"

    async def _look_up(self, docnum: int, key: str, plant: str) -> tuple[int, str]:
        """An IDoc whose answer was lost: followed if ECC stored it, else sent anew (only once
        ``lookup_grace_seconds`` have passed, so a request still in ECC is not taken for lost)."""
        row = await self._tracker.fetch(docnum)
        age = (datetime.now(UTC) - row["sent_at"]).total_seconds() if row else self._grace
        if age < self._grace:
            raise ErpUnavailable(
                f"ORDERS IDoc {docnum} of {key}: its answer was lost {age:.0f}s ago; looked up "
                f"after {self._grace:g}s", ambiguous=True,
            )  # fmt: skip
        if await self._reader.control_record(docnum, key) is None:
            await self._tracker.update(docnum, state="lost", message="ECC never stored it")
            return await self._claim(key, plant)
        await self._tracker.update(docnum, state="stored")
        return docnum, "stored"

    async def _send(self, docnum: int, key: str, order: SalesOrder) -> None:
        options = self._options

        async def payload() -> bytes:
            try:
                return orders_xml(
                    self._control, docnum, order, area=options.area,
                    discount_condition=options.discount_condition, created=datetime.now(UTC),
                    arckey=f"{key}#{docnum}",
                )  # fmt: skip
            except IdocError as exc:
                raise ErpRejected("IDOC", str(exc)) from None

        await self._tracker.send(self._client, docnum, payload)
        log.info(
            "ORDERS IDoc stored by ECC", extra={"docnum": docnum, "reference": order.reference}
        )

    async def _follow(self, docnum: int, key: str, order: SalesOrder) -> SalesOrderRef:
        deadline = self._clock() + self._options.order_wait_seconds
        delay = self._poll[0]
        while True:
            ref = await self._outcome(docnum, key, order)
            if ref is not None:
                return ref
            if self._clock() >= deadline:
                raise ErpUnavailable(
                    f"ORDERS IDoc {docnum} of {order.reference} still in process after "
                    f"{self._options.order_wait_seconds:g}s", ambiguous=True,
                )  # fmt: skip
            await self._sleep(delay)
            delay = min(delay * 2, self._poll[1])

    async def _outcome(self, docnum: int, key: str, order: SalesOrder) -> SalesOrderRef | None:
        """The order once ECC posted the IDoc; None while in process; else the error."""
        control = await self._reader.control_record(docnum, key)
        if control is None:
            return None  # stored moments ago: not readable yet
        receiver, status = control["DOCNUM"], control["STATUS"]
        if status in IN_PROCESS or not status:
            await self._tracker.update(docnum, receiver_docnum=receiver, status=status)
            return None
        if status == POSTED:
            heads = await self._reader.read(
                "VBAK", ["VBELN", "VBTYP", "BSTNK"], [("BSTNK", order.reference), ("VBTYP", "C")]
            )
            if not heads:
                return None  # the status is there before the order is readable
            vbeln = min(row["VBELN"] for row in heads)  # as find_sales_order answers
            await self._tracker.update(
                docnum, state="posted", receiver_docnum=receiver, status=status,
                mat_doc=vbeln, message=f"sales order {vbeln.lstrip('0')}",
            )  # fmt: skip
            return await self._ref(vbeln, order.reference, order)
        message = await self._reader.last_status(receiver)
        text = message.text or f"IDoc status {status}"
        await self._tracker.update(
            docnum, state="failed", receiver_docnum=receiver, status=status, message=text
        )
        if status != FAILED:
            raise ErpAuthFailed(
                f"ORDERS IDoc {receiver} ended in status {status}: {message.code} {text}"
            )
        materials = [_matnr(line.item_code, index) for index, line in enumerate(order.lines)]
        raise self._refusal(message, f"ORDERS IDoc {receiver}", materials)

    async def _ref(self, vbeln: str, reference: str, order: SalesOrder | None) -> SalesOrderRef:
        """Where the order lives: its items by line id (VBKD-BSTKD_E); for an order just sent
        whose items carry none, by position (lines are posted in the order given)."""
        rows = await self._reader.read("VBKD", ["VBELN", "POSNR", "BSTKD_E"], [("VBELN", vbeln)])
        lines = {row["BSTKD_E"]: int(row["POSNR"]) for row in rows if row["BSTKD_E"]}
        if not lines and order is not None:
            items = await self._reader.read("VBAP", ["VBELN", "POSNR"], [("VBELN", vbeln)])
            numbers = sorted(int(row["POSNR"]) for row in items)
            lines = dict(zip((line.line_id for line in order.lines), numbers, strict=False))
        number = int(vbeln)
        return SalesOrderRef(reference=reference, doc_entry=number, doc_num=number, lines=lines)

    # --- states -------------------------------------------------------------------------------

    async def _states(self, refs: Sequence[SalesOrderRef]) -> dict[str, SalesOrderState]:
        numbers = [_vbeln(ref.doc_entry) for ref in refs]
        clause = any_of("VBELN", numbers)
        heads = {r["VBELN"]: r for r in await self._reader.read("VBAK", ["VBELN", "LIFSK"], clause)}
        status = {
            r["VBELN"]: r
            for r in await self._reader.read(
                "VBUK", ["VBELN", "GBSTK", "LFSTK", "ABSTK", "CMGST", "UVALL", "UVVLK"], clause
            )
        }
        items: dict[str, list[dict[str, str]]] = {}
        for row in await self._reader.read("VBAP", ["VBELN", "POSNR", "KWMENG", "ABGRU"], clause):
            items.setdefault(row["VBELN"], []).append(row)
        partly = [n for n in numbers if status.get(n, {}).get("LFSTK") == "B"]
        delivered: dict[tuple[str, int], Decimal] = {}
        if partly:
            flows = await self._reader.read(
                "VBFA", ["VBELV", "POSNV", "VBTYP_N", "RFMNG"], any_of("VBELV", partly)
            )
            for flow in flows:
                if flow["VBTYP_N"] == "J":
                    place = (flow["VBELV"], int(flow["POSNV"]))
                    delivered[place] = delivered.get(place, Decimal(0)) + _decimal(flow["RFMNG"])
        states = {}
        for ref, vbeln in zip(refs, numbers, strict=True):
            if vbeln not in heads:
                continue  # no longer in ECC
            states[ref.reference] = _state(
                ref, heads[vbeln], status.get(vbeln, {}), items.get(vbeln, []), delivered
            )
        return states

    # --- the wrappers -------------------------------------------------------------------------

    async def _call_items(
        self,
        kind: str,
        parameters: dict[str, str],
        lines: Sequence[DeliveryLine | SalesReturnLine],
        refs: Sequence[int],
        quantity: str,
        extra: dict[str, str],
    ) -> FunctionAnswer:
        """A wrapper taking ``ITEMS`` (one per line, in order: its ``ROW`` names the line) and
        ``SERIAL_NUMBERS``; ``refs``: the item each line refers to."""
        items, serials = [], []
        for index, (line, ref) in enumerate(zip(lines, refs, strict=True)):
            plant, sloc = _place(line.warehouse_code, index)
            items.append({
                "REF_ITEM": f"{ref:06d}", quantity: quantity_text(line.quantity),
                "MATERIAL": _matnr(line.item_code, index), "PLANT": plant, "STGE_LOC": sloc,
                "BATCH": (line.batch_number or "").upper(), **extra,
            })  # fmt: skip
            serials += [{"ROW": f"{index + 1:06d}", "SERIALNO": s} for s in line.serial_numbers]
        return await self._call(
            kind, parameters, {"ITEMS": items, "SERIAL_NUMBERS": serials},
            materials=[item["MATERIAL"] for item in items],
        )  # fmt: skip

    async def _call(
        self,
        kind: str,
        parameters: dict[str, str],
        tables: dict[str, Sequence[Row]] | None = None,
        *,
        materials: Sequence[str] = (),
    ) -> FunctionAnswer:
        """Call the wrapper of ``kind``; its RETURN errors raised as the port's errors."""
        function = self._options.functions[kind]
        try:
            answer = await self._client.call_function(function, parameters, tables)
        except EccAuthError as exc:
            raise ErpAuthFailed(f"{exc} (the wrapper {function}: README, ECC sales)") from None
        except EccUnavailable as exc:
            raise ErpUnavailable(str(exc), ambiguous=exc.ambiguous) from None
        except EccRejected as exc:
            raise ErpRejected("RFC", str(exc)) from None
        except EccError as exc:
            raise ErpError(str(exc)) from None
        errors = [row for row in answer.tables.get("RETURN", []) if row.get("TYPE") in ("E", "A")]
        if not errors:
            return answer
        first = errors[0]
        message = StatusMessage(
            first.get("ID", ""), first.get("NUMBER", ""),
            (first.get("MESSAGE_V1", ""), first.get("MESSAGE_V2", ""),
             first.get("MESSAGE_V3", ""), first.get("MESSAGE_V4", "")),
            first.get("MESSAGE", ""),
        )  # fmt: skip
        row = int(first.get("ROW") or 0) if (first.get("ROW") or "0").isdigit() else 0
        raise self._refusal(message, function, materials, line=row - 1 if row > 0 else None)

    def _refusal(
        self,
        message: StatusMessage,
        where: str,
        materials: Sequence[str],
        *,
        line: int | None = None,
    ) -> ErpError:
        """A RETURN row or IDoc status message as the port's error."""
        text = message.text or message.code
        options = self._options
        if message.is_one_of(options.lock_messages) or "is locked by" in text:
            return ErpLocked(f"{where}: {message.code} {text}")
        if message.is_one_of(options.duplicate_po_messages) or message.code == DUPLICATE_REFERENCE:
            return ErpDuplicateEntry(message.code, text)
        if line is None and materials:
            line = line_named(materials, message)
        return ErpRejected(message.code, text, line=line)


def _state(
    ref: SalesOrderRef,
    head: dict[str, str],
    status: dict[str, str],
    items: list[dict[str, str]],
    delivered: dict[tuple[str, int], Decimal],
) -> SalesOrderState:
    vbeln = head["VBELN"]
    lfstk = status.get("LFSTK", "")
    open_quantities = {}
    for item in items:
        posnr = int(item["POSNR"])
        if item["ABGRU"] or lfstk == "C":
            open_quantities[posnr] = Decimal(0)
        else:
            taken = delivered.get((vbeln, posnr), Decimal(0))
            open_quantities[posnr] = max(_decimal(item["KWMENG"]) - taken, Decimal(0))
    state: OrderStatus = "open"
    if items and all(item["ABGRU"] for item in items):
        state = "cancelled"
    elif status.get("GBSTK") == "C":
        state = "closed"
    holds: list[str] = []
    if state == "open":
        if head["LIFSK"]:
            holds.append(f"delivery block {head['LIFSK']}")
        if status.get("CMGST", "") in CREDIT_BLOCKED:
            holds.append("credit block")
        if status.get("UVALL", "") in INCOMPLETE or status.get("UVVLK", "") in INCOMPLETE:
            holds.append("incomplete")
    return SalesOrderState(
        ref=ref, status=state, holds=tuple(holds), open_quantities=open_quantities
    )


def _document(answer: FunctionAnswer, export: str) -> PostedDocument:
    value = answer.exports.get(export, "")
    if not value.isdigit():
        raise ErpError(f"the wrapper answered no {export} and no error: {answer.exports}")
    return PostedDocument(doc_entry=int(value), doc_num=int(value))


def _key_fits(kind: SalesDocumentKind, key: str) -> None:
    if not 0 < len(key) <= KEY_MAX[kind]:
        raise ErpRejected("ECC", f"{kind} key {key!r}: 1 to {KEY_MAX[kind]} characters")


def _vbeln(number: int) -> str:
    return f"{number:010d}"


def _plant(code: str, line: int) -> str:
    return _place(code, line)[0]


def _place(code: str, line: int) -> tuple[str, str]:
    try:
        return split_warehouse(code)
    except ValueError as exc:
        raise ErpRejected("ECC", str(exc), line=line) from None


def _matnr(item_code: str, line: int) -> str:
    try:
        field, matnr = material_number(item_code)
    except IdocError as exc:
        raise ErpRejected("IDOC", str(exc), line=line) from None
    if field != "MATERIAL":
        raise ErpRejected("IDOC", f"material {item_code!r} is longer than 18", line=line)
    return matnr


def _item_code(matnr: str) -> str:
    """An ERP item code as ECC shows a material: numeric ones without leading zeros."""
    return (matnr.lstrip("0") or "0") if matnr.isdigit() else matnr


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text.strip() or "0")
    except InvalidOperation:
        raise ErpError(f"not a quantity: {text!r}") from None


__all__ = ["EccSales", "SalesOptions", "sales_options"]
