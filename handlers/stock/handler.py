"""``stock.adjusted``: validate against mappings and ERP master data, then stage durably.

Nothing is staged that the ERP would reject for a reason known up front — that is how ghost
stock is prevented: an unmapped SKU or location, an unknown, inactive, frozen or non-inventory
item, a missing batch or serial for a managed item, an unknown warehouse. Each becomes an
exception record with a precise kind and reason (``skuflow exceptions retry`` re-validates
once the master data is fixed). A valid movement is staged in ``skuflow_stock_lines`` (unique
on ``event_id``, so a redelivery changes nothing — unless the ERP had rejected it, in which
case the retried movement is staged again) through the group-commit writer
(:mod:`worker.groupcommit`: the rows of many events in one transaction, each handler resumed
after the COMMIT) and only then is the handler ``Done``: the offset
may commit, and the window flusher posts it in a summarised ERP document. One exception record
can stand for a whole refused document (B1 -2035 past its retries, see
:mod:`handlers.stock.posting`): retrying it stages every movement that points at it again.
"""

from __future__ import annotations

import asyncpg

from handlers.common.mappings import Mappings as StockMappings
from handlers.common.masterdata import MasterData
from handlers.ports.erp import ErpAuthFailed, ErpError, ItemMaster
from handlers.stock.events import StockAdjusted, StockTransferred
from worker.exceptions import retry_of
from worker.groupcommit import CopyInsert, GroupCommitWriter, RowRefused
from worker.messages import Message
from worker.outcomes import DONE, Outcome, Reject, Retry
from worker.tracing import traceparent

_COLUMNS = (
    "event_id", "sku", "location", "item_code", "warehouse_code", "quantity", "batch_number",
    "serial_numbers", "reason", "source", "source_ref", "occurred_at", "topic", "partition",
    "offset", "key", "payload", "traceparent", "to_warehouse_code",
)  # fmt: skip
_ON_CONFLICT = """ON CONFLICT (event_id) DO UPDATE SET
    -- a movement the ERP rejected comes back (``exceptions retry``): stage it again
    item_code = EXCLUDED.item_code, warehouse_code = EXCLUDED.warehouse_code,
    to_warehouse_code = EXCLUDED.to_warehouse_code,
    quantity = EXCLUDED.quantity, batch_number = EXCLUDED.batch_number,
    serial_numbers = EXCLUDED.serial_numbers, state = 'staged',
    posting_id = NULL, line_no = NULL, staged_at = now(),
    traceparent = EXCLUDED.traceparent, exception_id = NULL
  WHERE skuflow_stock_lines.state = 'rejected'"""
#: Staging through the group-commit writer (COPY + one INSERT ... SELECT per batch).
STAGE = CopyInsert("stage stock line", "skuflow_stock_lines", _COLUMNS, _ON_CONFLICT)
#: The same, one row (a retried exception record, in a transaction of its own).
_STAGE_ONE = (
    "INSERT INTO skuflow_stock_lines ("
    + ", ".join(f'"{c}"' for c in _COLUMNS)
    + ") VALUES ("
    + ", ".join(f"${n}" for n in range(1, len(_COLUMNS) + 1))
    + ") "
    + _ON_CONFLICT
)


class StockHandler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        mappings: StockMappings,
        master: MasterData,
        writer: GroupCommitWriter,
    ) -> None:
        self._pool = pool
        self._mappings = mappings
        self._master = master
        self._writer = writer

    async def __call__(self, event: StockAdjusted | StockTransferred, message: Message) -> Outcome:
        try:
            verdict = await self._validate(event)
        except ErpAuthFailed as exc:  # misconfigured: bounded retries, then an exception record
            return Retry(f"ERP master data unavailable: {exc}")
        except ErpError as exc:  # the ERP is down: wait it out, however long (not an attempt)
            return Retry(f"ERP master data unavailable: {exc}", dependency=True)
        if isinstance(verdict, Reject):
            return verdict
        item_code, warehouse_code, to_warehouse_code = verdict
        row = (
            event.event_id,
            event.sku,
            event.from_warehouse if isinstance(event, StockTransferred) else event.warehouse,
            item_code,
            warehouse_code,
            event.quantity,
            event.batch_number,
            list(event.serial_numbers),
            event.reason,
            event.source,
            event.source_ref,
            event.occurred_at,
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            traceparent(),  # the posting span links back to this event's process span
            to_warehouse_code,  # a transfer's destination (staged in its source's window)
        )
        record = retry_of(message)
        if record is None:
            # Group commit: one transaction for the rows of many events; back once durable.
            try:
                await self._writer.write(STAGE, row)
            except RowRefused as exc:
                return Reject("staging_refused", f"PostgreSQL refused the stock line: {exc.cause}")
            return DONE
        # A retried exception record (rare): the line and the record's other movements in one
        # transaction of its own.
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGE_ONE, *row)
            # The retried record may stand for a whole refused document: stage all of it.
            await conn.execute(
                """UPDATE skuflow_stock_lines SET state = 'staged', posting_id = NULL,
                     line_no = NULL, staged_at = now(), exception_id = NULL
                   WHERE exception_id = $1 AND state = 'rejected'""",
                record,
            )
        return DONE

    async def _validate(
        self, event: StockAdjusted | StockTransferred
    ) -> tuple[str, str, str | None] | Reject:
        """(item code, ERP warehouse, destination ERP warehouse of a transfer) or why not."""
        item_code = self._mappings.item_code(event.sku)
        if item_code is None:
            return Reject("unknown_sku", f"SKU {event.sku!r} is not in the SKU map")
        master = await self._master.item(item_code)  # once, for both ends of a transfer
        if isinstance(event, StockTransferred):
            source = await self._place(event, item_code, master, event.from_warehouse)
            if isinstance(source, Reject):
                return source
            target = await self._place(event, item_code, master, event.to_warehouse)
            if isinstance(target, Reject):
                return target
            if target == source:
                return Reject(
                    "invalid_transfer",
                    f"locations {event.from_warehouse!r} and {event.to_warehouse!r} are both "
                    f"ERP warehouse {source!r}: nothing moves",
                )
            return item_code, source, target
        place = await self._place(event, item_code, master, event.warehouse)
        if isinstance(place, Reject):
            return place
        return item_code, place, None

    async def _place(
        self,
        event: StockAdjusted | StockTransferred,
        item_code: str,
        master: ItemMaster | None,
        location: str,
    ) -> str | Reject:
        """The ERP warehouse of ``location``, if the item can move there (or why not)."""
        warehouse_code = self._mappings.warehouse_code(location)
        if warehouse_code is None:
            return Reject(
                "unmapped_warehouse",
                f"location {location!r} has no ERP warehouse in [mappings.warehouses]",
            )
        warehouse = await self._master.warehouse(warehouse_code)
        if warehouse is None:
            return Reject("unknown_warehouse", f"ERP warehouse {warehouse_code!r} does not exist")
        if master is None:
            return Reject(
                "unknown_sku", f"SKU {event.sku!r} (item {item_code!r}) is not an ERP item"
            )
        item = master.at(warehouse.plant)
        if item is None:
            return Reject(
                "unknown_sku",
                f"SKU {event.sku!r}: material {item_code!r} is not maintained in plant "
                f"{warehouse.plant}",
            )
        if not item.valid or item.frozen:
            state = "frozen" if item.frozen else "inactive"
            return Reject("inactive_item", f"item {item_code!r} is {state} in the ERP")
        if not item.inventory_item:
            return Reject("not_inventory_item", f"item {item_code!r} is not an inventory item")
        if item.manages_batches and not event.batch_number:
            return Reject("missing_batch", f"item {item_code!r} is batch-managed: batch needed")
        if item.manages_serials:
            count = abs(event.quantity)
            if len(event.serial_numbers) != count:
                return Reject(
                    "missing_serials",
                    f"item {item_code!r} is serial-managed: {count} serial number(s) needed, "
                    f"{len(event.serial_numbers)} given",
                )
        return warehouse_code
