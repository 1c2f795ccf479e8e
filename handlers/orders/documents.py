"""ERP documents based on sales orders: deliveries, invoices, returns, credit notes.

Staged by the handlers (one row per package shipped, per return received), posted here in
windows (``orders.window_seconds``, woken early by a staged row), off the urgent path, by one
replica at a time, at most ``orders.max_concurrent_writes`` ERP calls at once:

- a **delivery** is based on the ERP order's lines (matched by the marketplace's order item
  id): exactly what shipped, package by package. It waits while the ERP order is still being
  created; an order the ERP does not have (nor the ledger) is a ``delivery_order_unknown``
  exception, a line the order does not have ``delivery_line_unknown``; the ERP's own refusals
  (beyond the open quantity, a closed order, stock) are ``erp_rejected`` with its text.
- an **invoice** follows each delivery when ``orders.invoice_on_dispatch``.
- a **return** is based on the delivery that shipped its goods (by order item id, else by
  item), restocked into the location its condition names (``orders.return_locations``); no
  matching delivery → ``return_unmatched``, naming what was searched — never a free-standing
  document. A **credit note** follows when ``orders.credit_note_on_return``.

Never twice: a row is marked ``posting`` before its call; a row found ``posting`` (a crash, a
lost answer) is looked up by its key first. Keys are ``SKF`` + kind letter + row id.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio
import asyncpg

from config.settings import OrdersSettings
from handlers.common.mappings import Mappings
from handlers.orders.ledger import Cycles, leading, next_attempt, record_exception, ref_of
from handlers.ports.erp import (
    Delivery,
    DeliveryLine,
    ErpDuplicateEntry,
    ErpError,
    ErpRejected,
    PostedDocument,
    PostedReturn,
    SalesDeliveries,
    SalesDocumentKind,
    SalesOrderRef,
    SalesOrders,
    SalesReturn,
    SalesReturnLine,
)
from worker.backoff import Backoff
from worker.exceptions import ExceptionStore

log = logging.getLogger("skuflow.orders")

_LETTER = {"delivery": "D", "invoice": "I", "return": "R", "credit_note": "C"}
#: A staged document whose order is not in the ERP yet looks again this much later.
WAIT_SECONDS = 5.0


def document_key(kind: str, row_id: int) -> str:
    return f"SKF{_LETTER[kind]}{row_id}"


class Refusal(Exception):
    """A document that cannot be posted, as an exception record of ``kind``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class Wait(Exception):
    """Not yet: what it is based on is not in the ERP yet."""


class DocumentPoster:
    def __init__(
        self,
        pool: asyncpg.Pool,
        erp: Any,
        settings: OrdersSettings,
        mappings: Mappings,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        assert isinstance(erp, SalesDeliveries)
        assert isinstance(erp, SalesOrders)
        self._pool = pool
        self._erp: Any = erp
        self._settings = settings
        self._mappings = mappings
        self._backoff = backoff or Backoff(1.0, settings.retry_max_seconds, 2.0)
        self._writes = anyio.CapacityLimiter(settings.max_concurrent_writes)
        self._exceptions = ExceptionStore(pool)
        self._cycles = Cycles("order documents", settings.window_seconds, self._backoff)
        self.posted = 0

    def wake(self) -> None:
        self._cycles.wake()

    async def run(self) -> None:
        await self._cycles.run(self.cycle)

    async def cycle(self) -> int:
        """Post what is due, kind by kind (deliveries before the invoices based on them)."""
        posted = 0
        async with leading(self._pool, "documents") as turn:
            if turn is None:
                return 0
            for kind in ("delivery", "invoice", "return", "credit_note"):
                rows = await self._pool.fetch(
                    """SELECT id FROM skuflow_order_documents
                       WHERE kind = $1 AND state IN ('staged', 'posting')
                         AND next_attempt_at <= now() ORDER BY id LIMIT 500""",
                    kind,
                )
                results: list[bool] = []
                async with anyio.create_task_group() as tg:
                    for row in rows:
                        tg.start_soon(self._post_one, row["id"], results)
                posted += sum(results)
        return posted

    async def _post_one(self, row_id: int, results: list[bool]) -> None:
        async with self._writes:
            results.append(await self._post(row_id))

    async def _post(self, row_id: int) -> bool:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM skuflow_order_documents WHERE id = $1", row_id)
            if row is None or row["state"] not in ("staged", "posting"):
                return False
            kind: SalesDocumentKind = row["kind"]
            key = document_key(kind, row_id)
            try:
                posted = None
                if row["state"] == "posting":
                    posted = await self._erp.find_sales_document(kind, key)
                if posted is None:
                    request = await self._request(conn, row, key)
                    based_on = (
                        await self._delivery_row(conn, row, request.delivery)
                        if isinstance(request, SalesReturn)
                        else row["based_on"]
                    )
                    await conn.execute(
                        "UPDATE skuflow_order_documents SET state = 'posting', based_on = $2 "
                        "WHERE id = $1",
                        row_id,
                        based_on,
                    )
                    row = await conn.fetchrow(
                        "SELECT * FROM skuflow_order_documents WHERE id = $1", row_id
                    )
                    posted = await self._send(kind, key, request)
            except Wait as exc:
                await conn.execute(
                    """UPDATE skuflow_order_documents SET last_error = $2,
                         next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1""",
                    row_id,
                    str(exc),
                    WAIT_SECONDS,
                )
                return False
            except Refusal as exc:
                await self._refuse(conn, row, exc.kind, exc.reason)
                return False
            except ErpRejected as exc:
                reason = f"the ERP refused {kind} {key} of order {row['order_id']}: {exc.message} "
                await self._refuse(conn, row, "erp_rejected", reason + f"(ERP code {exc.code})")
                return False
            except ErpError as exc:
                attempts = row["attempts"] + 1
                await conn.execute(
                    """UPDATE skuflow_order_documents SET attempts = $2, last_error = $3,
                         next_attempt_at = $4 WHERE id = $1""",
                    row_id, attempts, str(exc), next_attempt(self._backoff, attempts),
                )  # fmt: skip
                log.warning("ERP document waits", extra={
                    "kind": kind, "key": key, "error": str(exc), "attempts": attempts})  # fmt: skip
                return False
            await self._posted(conn, row, posted)
            return True

    async def _send(self, kind: SalesDocumentKind, key: str, request: Any) -> PostedDocument:
        try:
            if kind == "delivery":
                return await self._erp.create_delivery(request)  # type: ignore[no-any-return]
            if kind == "invoice":
                return await self._erp.create_invoice(key, request)  # type: ignore[no-any-return]
            if kind == "return":
                return await self._erp.create_return(request)  # type: ignore[no-any-return]
            return await self._erp.create_credit_note(key, request)  # type: ignore[no-any-return]
        except ErpDuplicateEntry:
            found: PostedDocument | None = await self._erp.find_sales_document(kind, key)
            if found is None:
                raise
            return found

    async def _follow(
        self, conn: asyncpg.Connection, row: asyncpg.Record, posted: PostedDocument
    ) -> str | None:
        """The document that follows this one: the invoice of a delivery (when the ERP
        invoices on dispatch); the credit note of a return of invoiced goods, unless the
        return itself credited them (B1's credit note based on the invoice)."""
        if row["kind"] == "delivery":
            return "invoice" if self._settings.invoice_on_dispatch else None
        if row["kind"] != "return" or not self._settings.credit_note_on_return:
            return None
        if isinstance(posted, PostedReturn) and posted.credited:
            return None
        invoiced = await conn.fetchval(
            "SELECT 1 FROM skuflow_order_documents WHERE kind = 'invoice' AND based_on = $1 "
            "AND state = 'posted'",
            row["based_on"],
        )
        return "credit_note" if invoiced else None

    async def _posted(
        self, conn: asyncpg.Connection, row: asyncpg.Record, posted: PostedDocument
    ) -> None:
        follow = await self._follow(conn, row, posted)
        async with conn.transaction():
            await conn.execute(
                """UPDATE skuflow_order_documents SET state = 'posted', doc_entry = $2,
                     doc_num = $3, posted_at = now(), last_error = NULL WHERE id = $1""",
                row["id"],
                posted.doc_entry,
                posted.doc_num,
            )
            if follow is not None:
                await conn.execute(
                    """INSERT INTO skuflow_order_documents (channel, order_id, kind, source_ref,
                         based_on, lines, location, topic, partition, "offset", key, payload,
                         event_id, traceparent)
                       SELECT channel, order_id, $2, id::text, id, '[]'::jsonb, location, topic,
                              partition, "offset", key, payload, event_id, traceparent
                       FROM skuflow_order_documents WHERE id = $1
                       ON CONFLICT (channel, order_id, kind, source_ref) DO NOTHING""",
                    row["id"],
                    follow,
                )
                self.wake()
        self.posted += 1
        log.info("ERP document posted", extra={"kind": row["kind"],
                 "order_id": row["order_id"], "doc_num": posted.doc_num})  # fmt: skip

    async def _refuse(
        self, conn: asyncpg.Connection, row: asyncpg.Record, kind: str, reason: str
    ) -> None:
        async with conn.transaction():
            exception_id = await record_exception(self._exceptions, conn, row, kind, reason)
            await conn.execute(
                """UPDATE skuflow_order_documents SET state = 'failed', exception_id = $2,
                     last_error = $3 WHERE id = $1""",
                row["id"],
                exception_id,
                reason,
            )
        log.warning("ERP document refused", extra={"kind": kind, "reason": reason})

    # --- what to send ---

    async def _request(self, conn: asyncpg.Connection, row: asyncpg.Record, key: str) -> Any:
        kind = row["kind"]
        if kind in ("invoice", "credit_note"):
            base = await conn.fetchrow(
                "SELECT doc_entry, doc_num, state FROM skuflow_order_documents WHERE id = $1",
                row["based_on"],
            )
            if base is None or base["state"] != "posted":
                raise Wait("the document it is based on is not posted")
            return PostedDocument(doc_entry=base["doc_entry"], doc_num=base["doc_num"])
        if kind == "delivery":
            return await self._delivery(conn, row, key)
        return await self._return(conn, row, key)

    async def _order_ref(self, conn: asyncpg.Connection, row: asyncpg.Record) -> SalesOrderRef:
        order = await conn.fetchrow(
            "SELECT state, erp_ref FROM skuflow_orders WHERE channel = $1 AND order_id = $2",
            row["channel"],
            row["order_id"],
        )
        ref = ref_of(order["erp_ref"]) if order is not None else None
        if ref is not None and not ref.draft:
            return ref
        if order is not None and order["state"] in ("received", "creating"):
            raise Wait(f"order {row['order_id']} is being created in the ERP")
        found: SalesOrderRef | None = await self._erp.find_sales_order(row["order_id"])
        if found is None or found.draft:
            where = "not in the ERP" if found is None else "a draft awaiting approval in the ERP"
            raise Refusal(
                "delivery_order_unknown",
                f"package {row['source_ref']} shipped for order {row['order_id']}, which is "
                f"{where} (searched by reference {row['order_id']!r})",
            )
        return found

    def _item_code(self, sku: str) -> str:
        code = self._mappings.item_code(sku)
        if code is None:
            raise Refusal("order_unmapped", f"SKU {sku!r} is not in the SKU map")
        return code

    def _warehouse(self, location: str | None) -> str:
        code = self._mappings.warehouse_code(location or self._settings.default_warehouse)
        if code is None:
            raise Refusal("order_unmapped", f"location {location!r} has no ERP warehouse")
        return code

    async def _delivery(self, conn: asyncpg.Connection, row: asyncpg.Record, key: str) -> Delivery:
        ref = await self._order_ref(conn, row)
        warehouse = self._warehouse(row["location"])
        lines = []
        for line in json.loads(row["lines"]):
            number = ref.lines.get(line["order_item_id"])
            if number is None:
                raise Refusal(
                    "delivery_line_unknown",
                    f"package {row['source_ref']} of order {row['order_id']} ships order item "
                    f"{line['order_item_id']} ({line['sku']}), which ERP order {ref.doc_num} "
                    "does not have",
                )
            lines.append(
                DeliveryLine(
                    order_line=number,
                    item_code=self._item_code(line["sku"]),
                    quantity=Decimal(line["quantity"]),
                    warehouse_code=warehouse,
                    batch_number=line.get("batch_number"),
                    serial_numbers=tuple(line.get("serial_numbers") or ()),
                )
            )
        return Delivery(
            key=key,
            order=ref,
            lines=tuple(lines),
            delivery_date=datetime.now(UTC).date(),
            remarks=f"skuflow delivery {key}: order {row['order_id']} package {row['source_ref']}",
        )

    async def _return(self, conn: asyncpg.Connection, row: asyncpg.Record, key: str) -> SalesReturn:
        deliveries = await conn.fetch(
            """SELECT id, state, doc_entry, doc_num, lines FROM skuflow_order_documents
               WHERE channel = $1 AND order_id = $2 AND kind = 'delivery' ORDER BY id""",
            row["channel"],
            row["order_id"],
        )
        wanted = json.loads(row["lines"])
        if any(d["state"] in ("staged", "posting") for d in deliveries):
            raise Wait(f"a delivery of order {row['order_id']} is not posted yet")
        posted = [d for d in deliveries if d["state"] == "posted"]
        for delivery in posted:
            document = PostedDocument(doc_entry=delivery["doc_entry"], doc_num=delivery["doc_num"])
            matched = await self._match(document, json.loads(delivery["lines"]), wanted)
            if matched is not None:
                invoice = await conn.fetchrow(
                    "SELECT state, doc_entry, doc_num FROM skuflow_order_documents "
                    "WHERE kind = 'invoice' AND based_on = $1",
                    delivery["id"],
                )
                if invoice is not None and invoice["state"] != "posted":
                    if invoice["state"] != "failed":
                        raise Wait(f"the invoice of delivery {delivery['doc_num']} is not posted")
                    invoice = None
                return SalesReturn(
                    invoice=(
                        None
                        if invoice is None
                        else PostedDocument(
                            doc_entry=invoice["doc_entry"], doc_num=invoice["doc_num"]
                        )
                    ),
                    key=key,
                    delivery=document,
                    lines=tuple(
                        SalesReturnLine(
                            delivery_line=number,
                            item_code=self._item_code(line["sku"]),
                            quantity=Decimal(line["quantity"]),
                            warehouse_code=self._return_warehouse(row, line["condition"]),
                            batch_number=line.get("batch_number"),
                            serial_numbers=tuple(line.get("serial_numbers") or ()),
                        )
                        for line, number in matched
                    ),
                    return_date=datetime.now(UTC).date(),
                    remarks=f"skuflow return {key}: order {row['order_id']} "
                    f"return {row['source_ref']}",
                )
        searched = ", ".join(f"delivery {d['doc_num']}" for d in posted) or "no delivery posted"
        items = ", ".join(f"{line['sku']} x {line['quantity']}" for line in wanted)
        raise Refusal(
            "return_unmatched",
            f"return {row['source_ref']} of order {row['order_id']} ({items}) matches no "
            f"delivery of that order: searched {searched} in the ledger by order item id and "
            "item, for the returned quantity",
        )

    async def _match(
        self, delivery: PostedDocument, shipped: list[dict[str, Any]], wanted: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], int]] | None:
        """Each returned line's delivery line number, or None if this delivery cannot take
        the whole return (by order item id where the return names it, else by item)."""
        erp_lines: dict[int, tuple[str, Decimal]] = await self._erp.delivery_lines(delivery)
        by_item: dict[str, list[int]] = {}
        for number, (item_code, _) in sorted(erp_lines.items()):
            by_item.setdefault(item_code, []).append(number)
        position = {line["order_item_id"]: index for index, line in enumerate(shipped)}
        numbers = sorted(erp_lines)
        matched = []
        for line in wanted:
            item_code = self._item_code(line["sku"])
            found: int | None = None
            index = position.get(line.get("order_item_id"))
            if index is not None and index < len(numbers):
                found = numbers[index]
            elif by_item.get(item_code):
                found = by_item[item_code][0]
            if found is None or erp_lines[found][0] != item_code:
                return None
            if erp_lines[found][1] < Decimal(line["quantity"]):
                return None
            matched.append((line, found))
        return matched

    async def _delivery_row(
        self, conn: asyncpg.Connection, row: asyncpg.Record, delivery: PostedDocument
    ) -> int | None:
        """The ledger row of the delivery a return is based on."""
        found = await conn.fetchval(
            "SELECT id FROM skuflow_order_documents WHERE channel = $1 AND order_id = $2 "
            "AND kind = 'delivery' AND doc_entry = $3",
            row["channel"],
            row["order_id"],
            delivery.doc_entry,
        )
        return None if found is None else int(found)

    def _return_warehouse(self, row: asyncpg.Record, condition: str) -> str:
        location = self._settings.return_locations.get(condition) or row["location"]
        return self._warehouse(location)
