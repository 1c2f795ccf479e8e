"""SAP Business One fills the ERP port: types and errors translated at this edge.

Master data, stock documents (:class:`B1Client`), sales orders — one at a time or many per
``$batch`` round trip — and sales deliveries (:class:`~handlers.connectors.b1.sales.B1Sales`:
orders by ``NumAtCard``, drafts of approval procedures, holds, deliveries / invoices / returns /
credit notes based on each other). The
posting key of a stock document goes into ``JournalMemo`` (50 characters; ``Reference2`` holds
only 11, too short for a bisected slice's key such as ``SKF1234567.12``) and into ``Comments``;
so does a sales document's key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from decimal import Decimal
from typing import TypeVar

from handlers.connectors.b1.client import B1Client, BatchQuantity, StockLine
from handlers.connectors.b1.client import StockDocument as B1Document
from handlers.connectors.b1.errors import (
    B1AuthError,
    B1DuplicateEntry,
    B1Error,
    B1Locked,
    B1Rejected,
    B1Unavailable,
)
from handlers.connectors.b1.sales import BATCH_MAX, B1Sales
from handlers.ports.erp import (
    Delivery,
    DocumentKind,
    ErpAuthFailed,
    ErpDuplicateEntry,
    ErpError,
    ErpLocked,
    ErpRejected,
    ErpUnavailable,
    ItemMaster,
    PostedDocument,
    SalesDocumentKind,
    SalesOrder,
    SalesOrderRef,
    SalesOrderState,
    SalesReturn,
    StockDocument,
    WarehouseMaster,
)

KEY_FIELD = "JournalMemo"

T = TypeVar("T")


class B1Erp:
    """The ERP port over a :class:`B1Client` (built with ``key_field=KEY_FIELD``): master data,
    stock documents, sales orders (also batched), sales deliveries. ``credit_hold_field``: the
    user-defined business partner field (e.g. ``U_CreditHold``, ``Y`` = on hold) read as a
    credit block, if the company has one (see :mod:`handlers.connectors.b1.sales`);
    ``max_batch_orders``: orders per ``$batch`` round trip."""

    def __init__(
        self,
        client: B1Client,
        *,
        credit_hold_field: str | None = None,
        max_batch_orders: int = BATCH_MAX,
    ) -> None:
        self._client = client
        self._sales = B1Sales(
            client, credit_hold_field=credit_hold_field, batch_max=max_batch_orders
        )
        self.max_batch_orders = max_batch_orders

    async def get_item(self, item_code: str) -> ItemMaster | None:
        item = await self._translate(self._client.get_item(item_code))
        if item is None:
            return None
        return ItemMaster(
            item_code=item.item_code,
            valid=item.valid,
            frozen=item.frozen,
            inventory_item=item.inventory_item,
            manages_batches=item.manage_batches,
            manages_serials=item.manage_serials,
        )

    async def get_warehouse(self, code: str) -> WarehouseMaster | None:
        warehouse = await self._translate(self._client.get_warehouse(code))
        if warehouse is None or warehouse.inactive:
            return None
        return WarehouseMaster(code=warehouse.warehouse_code, name=warehouse.name)

    async def post_document(self, document: StockDocument) -> PostedDocument:
        lines = tuple(
            StockLine(
                item_code=line.item_code,
                warehouse_code=line.warehouse_code,
                quantity=line.quantity,
                batches=(
                    (BatchQuantity(line.batch_number, line.quantity),) if line.batch_number else ()
                ),
                serial_numbers=line.serial_numbers,
                to_warehouse_code=line.to_warehouse_code,
            )
            for line in document.lines
        )
        posted = await self._translate(
            self._client.post_document(
                document.kind,
                B1Document(key=document.key, lines=lines, remarks=document.remarks),
            )
        )
        return PostedDocument(doc_entry=posted.doc_entry, doc_num=posted.doc_num)

    async def find_document(self, kind: DocumentKind, key: str) -> PostedDocument | None:
        found = await self._translate(self._client.find_document(kind, key))
        if found is None:
            return None
        return PostedDocument(doc_entry=found.doc_entry, doc_num=found.doc_num)

    # --- sales orders ---

    async def create_sales_order(self, order: SalesOrder) -> SalesOrderRef:
        return await self._translate(self._sales.create_sales_order(order))

    async def create_sales_orders(
        self, orders: Sequence[SalesOrder]
    ) -> list[SalesOrderRef | ErpError]:
        """Many orders in few ``$batch`` round trips, each failing alone (see
        :meth:`B1Sales.create_sales_orders`), each error translated as for one order."""
        outcomes = await self._translate(self._sales.create_sales_orders(orders))
        return [o if isinstance(o, SalesOrderRef) else erp_error(o) for o in outcomes]

    async def find_sales_order(self, reference: str) -> SalesOrderRef | None:
        return await self._translate(self._sales.find_sales_order(reference))

    async def sales_order_states(self, refs: Sequence[SalesOrderRef]) -> dict[str, SalesOrderState]:
        """The state of each order, by reference, in a few reads for all of them (see
        :meth:`B1Sales.sales_order_states`)."""
        return await self._translate(self._sales.sales_order_states(refs))

    async def cancel_sales_order(self, ref: SalesOrderRef) -> None:
        await self._translate(self._sales.cancel_sales_order(ref))

    # --- sales deliveries ---

    async def create_delivery(self, delivery: Delivery) -> PostedDocument:
        return await self._translate(self._sales.create_delivery(delivery))

    async def create_invoice(self, key: str, delivery: PostedDocument) -> PostedDocument:
        """An invoice of everything ``delivery`` delivered and is still open."""
        return await self._translate(self._sales.create_invoice(key, delivery))

    async def create_return(self, sales_return: SalesReturn) -> PostedDocument:
        return await self._translate(self._sales.create_return(sales_return))

    async def create_credit_note(self, key: str, sales_return: PostedDocument) -> PostedDocument:
        """A credit note of everything ``sales_return`` took back and is not yet credited."""
        return await self._translate(self._sales.create_credit_note(key, sales_return))

    async def find_sales_document(self, kind: SalesDocumentKind, key: str) -> PostedDocument | None:
        return await self._translate(self._sales.find_sales_document(kind, key))

    async def delivery_lines(self, delivery: PostedDocument) -> dict[int, tuple[str, Decimal]]:
        """A delivery's lines: ERP line number → (item code, quantity)."""
        return await self._translate(self._sales.delivery_lines(delivery))

    @staticmethod
    async def _translate(call: Awaitable[T]) -> T:
        try:
            return await call
        except B1Error as exc:
            raise erp_error(exc) from exc


def erp_error(exc: B1Error) -> ErpError:
    """The ERP port's error for a B1 error (its ``__cause__``)."""
    error: ErpError
    if isinstance(exc, B1Locked):
        error = ErpLocked(str(exc))
    elif isinstance(exc, B1DuplicateEntry):
        error = ErpDuplicateEntry(str(exc.code), exc.message)
    elif isinstance(exc, B1Unavailable):
        error = ErpUnavailable(str(exc), ambiguous=exc.ambiguous)
    elif isinstance(exc, B1Rejected):
        error = ErpRejected(str(exc.code), exc.message, line=exc.line)
    elif isinstance(exc, B1AuthError):
        error = ErpAuthFailed(f"ERP login failed: {exc}")
    else:
        error = ErpError(str(exc))
    error.__cause__ = exc
    return error
