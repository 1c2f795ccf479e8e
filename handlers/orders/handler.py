"""The order flow's handlers: order revisions into the ledger, deliveries and returns staged.

``order.received`` / ``order.changed`` / ``order.cancelled`` (:class:`OrderHandler`) decide
on the order's ledger row under its row lock (one transaction per event; the order's lane
keeps its events in offset order, and the background :class:`~handlers.orders.work.OrderWork`
takes the same lock before it sends anything to the ERP):

- a revision at or before the one applied is a replay: nothing changes;
- before the ERP order is sent, a new revision replaces the order to create;
- after, a revision that changes the lines is an ``order_changed_in_erp`` exception (the ERP
  order is not rewritten behind the warehouse's back); a status-only revision is recorded;
- a cancellation before the ERP order exists ends the order; after, the ERP order is
  cancelled (and the warehouse told ``order.held`` if it had been released); after a
  delivery, an ``order_cancel_after_ship`` exception names what shipped.

``dispatch.confirmed`` (:class:`DeliveryStager`, beside the dispatch flow's confirmShipment
handler, after it) and ``return.received`` (:class:`ReturnHandler`) stage one ERP document
each through the group-commit writer; the background poster posts them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg
import msgspec

from handlers.common.events import Event
from handlers.common.mappings import Mappings
from handlers.common.masterdata import MasterData
from handlers.orders.events import OrderCancelled, OrderReceived, ReturnReceived
from handlers.orders.mapping import OrderMapper
from handlers.ports.erp import ErpAuthFailed, ErpError
from worker.exceptions import retry_of
from worker.groupcommit import CopyInsert, Executemany, GroupCommitWriter, RowRefused
from worker.messages import Message
from worker.outcomes import DONE, Outcome, Reject, Retry
from worker.tracing import traceparent

log = logging.getLogger("skuflow.orders")

#: The order's ledger states in which the ERP order does not exist yet.
NOT_SENT = ("received", "failed")
#: ... in which it exists (or may: ``creating``) and nothing is delivered.
IN_ERP = ("creating", "in_erp", "released", "held")

_DOCUMENT_COLUMNS = (
    "channel", "order_id", "kind", "source_ref", "lines", "location", "topic", "partition",
    "offset", "key", "payload", "event_id", "traceparent",
)  # fmt: skip
#: A redelivered event stages nothing: its document is staged (or was refused) already.
STAGE_DOCUMENT = CopyInsert(
    "stage order document",
    "skuflow_order_documents",
    _DOCUMENT_COLUMNS,
    "ON CONFLICT (channel, order_id, kind, source_ref) DO NOTHING",
)
#: A document the ERP refused comes back when an operator retries its exception record
#: (``exceptions retry``: the ``skuflow.retry-of`` header): staged again. Rare, so row by row
#: (not through :class:`CopyInsert`, whose temporary table is the table's, shared with
#: :data:`STAGE_DOCUMENT` in a batch).
RESTAGE_DOCUMENT = Executemany(
    "stage order document again",
    f"""INSERT INTO skuflow_order_documents ({", ".join(f'"{c}"' for c in _DOCUMENT_COLUMNS)})
        VALUES ({", ".join(f"${n}" for n in range(1, len(_DOCUMENT_COLUMNS) + 1))})
        ON CONFLICT (channel, order_id, kind, source_ref) DO UPDATE SET
          state = 'staged', lines = EXCLUDED.lines, location = EXCLUDED.location, attempts = 0,
          next_attempt_at = now(), last_error = NULL, exception_id = NULL,
          topic = EXCLUDED.topic, partition = EXCLUDED.partition, "offset" = EXCLUDED."offset",
          key = EXCLUDED.key, payload = EXCLUDED.payload, event_id = EXCLUDED.event_id,
          traceparent = EXCLUDED.traceparent
        WHERE skuflow_order_documents.state = 'failed'""",
)


def _released_lines(event: OrderReceived) -> str:
    return json.dumps(
        [
            {"order_item_id": line.order_item_id, "sku": line.sku, "quantity": str(line.quantity)}
            for line in event.lines
        ]
    )


def _line_signature(lines: Any) -> list[tuple[str, str, str]]:
    return sorted((str(x["order_item_id"]), str(x["sku"]), str(x["quantity"])) for x in lines)


class OrderHandler:
    """``order.received`` / ``order.changed`` / ``order.cancelled`` → ``skuflow_orders``."""

    def __init__(self, pool: asyncpg.Pool, mapper: OrderMapper, on_change: Any = None) -> None:
        self._pool = pool
        self._mapper = mapper
        self._on_change = on_change  # wakes the order work (a new order to create)

    async def __call__(self, event: OrderReceived | OrderCancelled, message: Message) -> Outcome:
        if isinstance(event, OrderCancelled) or event.status == "CANCELLED":
            outcome = await self._cancel(event, message)
        else:
            try:
                verdict = await self._mapper.sales_order(event)
            except ErpAuthFailed as exc:
                return Retry(f"ERP master data unavailable: {exc}")
            except ErpError as exc:
                return Retry(f"ERP master data unavailable: {exc}", dependency=True)
            if isinstance(verdict, Reject):
                return verdict
            outcome = await self._revise(event, message, msgspec.json.encode(verdict).decode())
        if outcome is DONE and self._on_change is not None:
            self._on_change()
        return outcome

    async def _revise(self, event: OrderReceived, message: Message, sales_order: str) -> Outcome:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT state, revision, lines, erp_ref FROM skuflow_orders "
                "WHERE channel = $1 AND order_id = $2 FOR UPDATE",
                event.channel,
                event.order_id,
            )
            if row is None:
                await conn.execute(
                    """INSERT INTO skuflow_orders (channel, order_id, marketplace_id, revision,
                         state, marketplace_status, fulfilled_by, location, ship_by, sales_order,
                         lines, topic, partition, "offset", key, payload, event_id, traceparent)
                       VALUES ($1, $2, $3, $4, 'received', $5, $6, $7, $8, $9::jsonb, $10::jsonb,
                               $11, $12, $13, $14, $15, $16, $17)""",
                    *self._order_fields(event, sales_order),
                    *_message_fields(message, event),
                )
                return DONE
            # (a failed order's own revision again: an operator retried its exception record)
            again = (
                event.revision == row["revision"]
                and row["state"] == "failed"
                and retry_of(message) is not None
            )
            if event.revision <= row["revision"] and not again:
                log.info("order revision already applied", extra={"order_id": event.order_id,
                         "revision": event.revision.isoformat()})  # fmt: skip
                return DONE
            if row["state"] in NOT_SENT:
                await conn.execute(
                    """UPDATE skuflow_orders SET marketplace_id = $3, revision = $4,
                         state = 'received', marketplace_status = $5, fulfilled_by = $6,
                         location = $7, ship_by = $8, sales_order = $9::jsonb, lines = $10::jsonb,
                         topic = $11, partition = $12, "offset" = $13, key = $14, payload = $15,
                         event_id = $16, traceparent = $17, attempts = 0, last_error = NULL,
                         exception_id = NULL, next_attempt_at = now(), updated_at = now()
                       WHERE channel = $1 AND order_id = $2""",
                    *self._order_fields(event, sales_order),
                    *_message_fields(message, event),
                )
                return DONE
            if row["state"] == "cancelled":
                return Reject(
                    "order_changed_in_erp",
                    f"order {event.order_id} was cancelled; revision {event.revision.isoformat()} "
                    "is not applied",
                )
            before = _line_signature(json.loads(row["lines"]))
            after = _line_signature(json.loads(_released_lines(event)))
            if before != after:
                return Reject(
                    "order_changed_in_erp",
                    f"order {event.order_id} is already ERP order "
                    f"{_doc_num(row['erp_ref'])} (state {row['state']}): its lines changed "
                    f"from {before} to {after}; the ERP order is not rewritten — change it "
                    "in the ERP, then resolve this record",
                )
            await conn.execute(
                """UPDATE skuflow_orders SET revision = $3, marketplace_status = $4,
                     ship_by = $5, updated_at = now() WHERE channel = $1 AND order_id = $2""",
                event.channel,
                event.order_id,
                event.revision,
                event.status,
                event.ship_by,
            )
            return DONE

    async def _cancel(self, event: OrderReceived | OrderCancelled, message: Message) -> Outcome:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT state, revision, erp_ref FROM skuflow_orders "
                "WHERE channel = $1 AND order_id = $2 FOR UPDATE",
                event.channel,
                event.order_id,
            )
            if row is None:
                # Cancelled before we saw it: remembered, so a late older revision stays out.
                await conn.execute(
                    """INSERT INTO skuflow_orders (channel, order_id, marketplace_id, revision,
                         state, marketplace_status, fulfilled_by, sales_order, lines, topic,
                         partition, "offset", key, payload, event_id, traceparent)
                       VALUES ($1, $2, $3, $4, 'cancelled', 'CANCELLED', 'MERCHANT',
                               'null'::jsonb, '[]'::jsonb, $5, $6, $7, $8, $9, $10, $11)""",
                    event.channel,
                    event.order_id,
                    event.marketplace_id,
                    event.revision,
                    *_message_fields(message, event),
                )
                return DONE
            if event.revision <= row["revision"] or row["state"] in ("cancelled", "cancelling"):
                return DONE
            shipped = await conn.fetch(
                "SELECT source_ref, lines FROM skuflow_order_documents "
                "WHERE channel = $1 AND order_id = $2 AND kind = 'delivery' ORDER BY id",
                event.channel,
                event.order_id,
            )
            if shipped or row["state"] == "closed":
                if retry_of(message) is None and await conn.fetchval(
                    "SELECT 1 FROM skuflow_exceptions WHERE event_id = $1 AND kind = $2",
                    event.event_id,
                    "order_cancel_after_ship",
                ):
                    return DONE  # a redelivery: its record is there (one record per problem)
                packages = ", ".join(r["source_ref"] for r in shipped) or "(closed in the ERP)"
                return Reject(
                    "order_cancel_after_ship",
                    f"order {event.order_id} was cancelled by {event.source} after it shipped "
                    f"(packages {packages}; ERP order {_doc_num(row['erp_ref'])}): the goods "
                    "are on their way — arrange a return or a refund",
                )
            state = "cancelled" if row["state"] in NOT_SENT else "cancelling"
            await conn.execute(
                """UPDATE skuflow_orders SET state = $3, revision = $4,
                     marketplace_status = 'CANCELLED', next_attempt_at = now(), attempts = 0,
                     updated_at = now() WHERE channel = $1 AND order_id = $2""",
                event.channel,
                event.order_id,
                state,
                event.revision,
            )
            return DONE

    def _order_fields(self, event: OrderReceived, sales_order: str) -> tuple[Any, ...]:
        return (
            event.channel,
            event.order_id,
            event.marketplace_id,
            event.revision,
            event.status,
            event.fulfilled_by,
            self._mapper.location(event),
            event.ship_by,
            sales_order,
            _released_lines(event),
        )


def _message_fields(message: Message, event: Event) -> tuple[Any, ...]:
    return (
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        event.event_id,
        traceparent(),
    )


def _doc_num(raw: str | None) -> str:
    if raw is None:
        return "(being created)"
    return str(json.loads(raw).get("doc_num", "?"))


class DocumentStager:
    """Stages one ERP document row per event through the group-commit writer."""

    def __init__(self, writer: GroupCommitWriter, on_staged: Any = None) -> None:
        self._writer = writer
        self._on_staged = on_staged

    async def stage(
        self,
        *,
        channel: str,
        order_id: str,
        kind: str,
        source_ref: str,
        lines: list[dict[str, Any]],
        location: str | None,
        event: Event,
        message: Message,
    ) -> Outcome:
        try:
            await self._writer.write(
                STAGE_DOCUMENT if retry_of(message) is None else RESTAGE_DOCUMENT,
                (
                    channel, order_id, kind, source_ref, json.dumps(lines), location,
                    *_message_fields(message, event),
                ),
            )  # fmt: skip
        except RowRefused as exc:
            return Reject("invalid_event", f"the {kind} could not be staged: {exc}")
        if self._on_staged is not None:
            self._on_staged()
        return DONE


class DeliveryStager:
    """``dispatch.confirmed`` → a delivery to post in the ERP (one per package), run after the
    dispatch flow's own handler (its confirmShipment path is untouched)."""

    def __init__(self, stager: DocumentStager) -> None:
        self._stager = stager

    async def __call__(self, event: Any, message: Message) -> Outcome:
        lines = [
            {
                "order_item_id": line.order_item_id,
                "sku": line.sku,
                "quantity": str(line.quantity),
                "batch_number": getattr(line, "batch_number", None),
                "serial_numbers": list(getattr(line, "serial_numbers", ())),
            }
            for line in event.lines
        ]
        return await self._stager.stage(
            channel=event.channel,
            order_id=event.order_id,
            kind="delivery",
            source_ref=event.package_reference_id,
            lines=lines,
            location=event.warehouse,
            event=event,
            message=message,
        )


class ReturnHandler:
    """``return.received`` → a return to post in the ERP, based on the original delivery
    (matched when it is posted: the delivery may still be on its way)."""

    def __init__(self, stager: DocumentStager, mappings: Mappings, master: MasterData) -> None:
        self._stager = stager
        self._mappings = mappings
        self._master = master

    async def __call__(self, event: ReturnReceived, message: Message) -> Outcome:
        problems = []
        for index, line in enumerate(event.lines):
            if self._mappings.item_code(line.sku) is None:
                problems.append(f"line {index}: SKU {line.sku!r} is not in the SKU map")
        if self._mappings.warehouse_code(event.warehouse) is None:
            problems.append(f"location {event.warehouse!r} has no ERP warehouse")
        if problems:
            return Reject("order_unmapped", f"return {event.return_ref}: " + "; ".join(problems))
        lines = [
            {
                "sku": line.sku,
                "quantity": str(line.quantity),
                "condition": line.condition,
                "order_item_id": line.order_item_id,
                "batch_number": line.batch_number,
                "serial_numbers": list(line.serial_numbers),
            }
            for line in event.lines
        ]
        return await self._stager.stage(
            channel=event.channel,
            order_id=event.order_id,
            kind="return",
            source_ref=event.return_ref,
            lines=lines,
            location=event.warehouse,
            event=event,
            message=message,
        )
