"""The ERP port: what the flows need from a system of record, whatever the ERP.

Split by capability, so an ERP implements what it supports and the wiring says what is
missing (``handlers.domain``): :class:`MasterDataSource` (items, warehouses) and
:class:`StockDocuments` (summarised goods receipts and issues), :class:`SalesOrders` (created once
by their marketplace reference, watched for holds; :class:`BatchSalesOrders` where the ERP
creates many in one round trip) and :class:`SalesDeliveries` (deliveries, invoices, returns,
credit notes based on each other); journals join with the settlement flow.
SAP Business One (Service Layer) fills them in ``handlers.connectors.b1``; SAP ECC (IDocs/BAPIs)
fills the same protocols. Errors are translated into these types at the connector edge, so no
flow ever sees HTTP, OData or IDoc status codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

import msgspec

from worker.errors import SkuflowError

#: entry: goods receipt (net increase); exit: goods issue (net decrease); transfer: stock moved
#: between two warehouses (each line names its destination).
DocumentKind = Literal["entry", "exit", "transfer"]


class ItemMaster(msgspec.Struct, frozen=True, kw_only=True):
    """An item as the ERP knows it. ``plants``: for an ERP whose items are maintained per plant
    (SAP ECC's MARC), the plant-level views by plant; ``None`` when the item is the same in
    every warehouse (SAP B1). ``unit``: the base unit of measure, when the ERP needs it."""

    item_code: str
    valid: bool
    frozen: bool
    inventory_item: bool
    manages_batches: bool
    manages_serials: bool
    unit: str = ""
    plants: dict[str, ItemMaster] | None = None

    def at(self, plant: str | None) -> ItemMaster | None:
        """The item as seen in ``plant`` (None: not maintained there); itself when the ERP
        has no plants or the warehouse names none."""
        if plant is None or self.plants is None:
            return self
        return self.plants.get(plant)


class WarehouseMaster(msgspec.Struct, frozen=True, kw_only=True):
    """A warehouse. ``plant``: the plant it belongs to, for an ERP with plants (ECC: a storage
    location of a plant, code ``<plant>/<storage location>``)."""

    code: str
    name: str = ""
    plant: str | None = None


class DocumentLine(msgspec.Struct, frozen=True, kw_only=True):
    item_code: str
    warehouse_code: str
    quantity: Decimal  # positive: the document's direction says in or out
    batch_number: str | None = None
    serial_numbers: tuple[str, ...] = ()
    sources: tuple[str, ...]  # event ids of the staged movements behind this line
    to_warehouse_code: str | None = None  # a transfer line's destination


class StockDocument(msgspec.Struct, frozen=True, kw_only=True):
    """One goods receipt (entry) or goods issue (exit) carrying its posting's idempotency key."""

    kind: DocumentKind
    key: str
    lines: tuple[DocumentLine, ...]
    remarks: str
    #: The reason class of every line (:class:`ReasonClasses`); "" for an ERP without.
    reason_class: str = ""


class PostedDocument(msgspec.Struct, frozen=True, kw_only=True):
    doc_entry: int
    doc_num: int


class ErpError(SkuflowError):
    """A failed ERP call."""


class ErpLocked(ErpError):
    """A record lock or concurrent modification: retry later."""


class ErpUnavailable(ErpError):
    """5xx, timeout, connection: retry later. ``ambiguous``: the write may have been applied."""

    def __init__(self, message: str, *, ambiguous: bool) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


class ErpAuthFailed(ErpUnavailable):
    """The ERP refused our credentials: a configuration error, not an outage to wait out."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ambiguous=False)


class ErpDuplicateEntry(ErpError):
    """The ERP refused the write because a row it would insert already exists (B1 -2035).

    Nothing was written by this call, and it names no line: either the document itself exists
    (an earlier attempt reached the ERP — find it by its key) or the write collided with a
    concurrent one (on a numbering or log row) and may be retried.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"ERP refused, entry already exists ({code}): {message}")
        self.code = code
        self.message = message


class ErpRejected(ErpError):
    """A business rejection; ``line`` is the 0-based document line it names, if it names one."""

    def __init__(self, code: str, message: str, *, line: int | None = None) -> None:
        super().__init__(f"ERP rejected ({code}): {message}")
        self.code = code
        self.message = message
        self.line = line


@runtime_checkable
class MasterDataSource(Protocol):
    """Item and warehouse master data (validation of every movement, cached by the caller)."""

    async def get_item(self, item_code: str) -> ItemMaster | None: ...

    async def get_warehouse(self, code: str) -> WarehouseMaster | None: ...


@runtime_checkable
class StockDocuments(Protocol):
    """Summarised goods receipts / issues, each carrying an idempotency key it can be found by."""

    async def post_document(self, document: StockDocument) -> PostedDocument: ...

    async def find_document(self, kind: DocumentKind, key: str) -> PostedDocument | None: ...


@runtime_checkable
class ReasonClasses(Protocol):
    """An ERP that books stock movements differently by their reason (SAP ECC: a movement
    type per reason) names the class of a reason; movements of different classes go in
    different documents and are never netted against each other."""

    def reason_class(self, reason: str) -> str: ...


# --- sales documents (the order-to-cash flow) ---


class SalesLine(msgspec.Struct, frozen=True, kw_only=True):
    """One sales-order line. ``line_id``: the marketplace's order item id (the line's identity
    on our side); ``unit_price`` net of tax, before ``discount``, in the order's currency."""

    line_id: str
    item_code: str
    quantity: Decimal
    warehouse_code: str
    unit_price: Decimal | None = None
    discount: Decimal = Decimal(0)  # the line's total promotion discount
    tax_code: str | None = None


class SalesOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A sales order to create. ``reference``: the marketplace order id, held in a queryable
    field of the ERP order (B1 ``NumAtCard``, ECC the customer's PO number) — the order is
    found by it, so it is created once."""

    reference: str
    customer_code: str
    order_date: date
    due_date: date
    lines: tuple[SalesLine, ...]
    currency: str | None = None
    remarks: str = ""


class SalesOrderRef(msgspec.Struct, frozen=True, kw_only=True):
    """Where an order lives in the ERP. ``draft``: created but waiting for an approval (B1
    approval procedures: a draft, not yet an order). ``lines``: the ERP line number of each
    ``line_id``."""

    reference: str
    doc_entry: int
    doc_num: int
    lines: dict[str, int]
    draft: bool = False


OrderStatus = Literal["open", "closed", "cancelled"]


class SalesOrderState(msgspec.Struct, frozen=True, kw_only=True):
    """An ERP order as its watcher sees it. ``holds``: every reason the ERP gives for not
    picking it now (``not approved``, ``credit block``, ``delivery block``, ...); empty means
    pickable. ``open_quantities``: per ERP line number, what is left to deliver. ``ref``:
    the order's current place (a draft approved becomes an order with a new number)."""

    ref: SalesOrderRef
    status: OrderStatus
    holds: tuple[str, ...]
    open_quantities: dict[int, Decimal]


class DeliveryLine(msgspec.Struct, frozen=True, kw_only=True):
    """A delivered quantity of one ERP order line (``order_line``: its ERP line number)."""

    order_line: int
    item_code: str
    quantity: Decimal
    warehouse_code: str
    batch_number: str | None = None
    serial_numbers: tuple[str, ...] = ()


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery based on a sales order (B1 ``DeliveryNotes`` with ``BaseType`` 17; ECC an
    outbound delivery and its goods issue). ``key``: its idempotency key, found by it."""

    key: str
    order: SalesOrderRef
    lines: tuple[DeliveryLine, ...]
    delivery_date: date
    remarks: str = ""


class SalesReturnLine(msgspec.Struct, frozen=True, kw_only=True):
    """Goods back for one delivered line (``delivery_line``: its ERP line number), restocked
    into ``warehouse_code`` (sellable or damaged stock, by condition)."""

    delivery_line: int
    item_code: str
    quantity: Decimal
    warehouse_code: str
    batch_number: str | None = None
    serial_numbers: tuple[str, ...] = ()


class SalesReturn(msgspec.Struct, frozen=True, kw_only=True):
    """A return based on a delivery (B1 ``Returns`` with ``BaseType`` 15). ``invoice``: the
    delivery's invoice, when the goods were invoiced — the ERP takes them back against it
    (B1: a credit note based on the invoice, since the invoice closed the delivery: it
    restocks and credits in one document, answered as a :class:`PostedReturn` with
    ``credited``)."""

    key: str
    delivery: PostedDocument
    lines: tuple[SalesReturnLine, ...]
    return_date: date
    remarks: str = ""
    invoice: PostedDocument | None = None


class PostedReturn(PostedDocument, frozen=True, kw_only=True):
    """A posted return; ``credited``: the document also credited the goods (no credit note
    is to follow)."""

    credited: bool = False


SalesDocumentKind = Literal["delivery", "invoice", "return", "credit_note"]


@runtime_checkable
class SalesOrders(Protocol):
    """Sales orders: created once (found by their reference), watched for holds, cancelled."""

    async def create_sales_order(self, order: SalesOrder) -> SalesOrderRef: ...

    async def find_sales_order(self, reference: str) -> SalesOrderRef | None: ...

    async def sales_order_states(self, refs: Sequence[SalesOrderRef]) -> dict[str, SalesOrderState]:
        """The state of each order, by reference (one or few ERP reads for all of them); an
        order the ERP no longer has is missing from the answer."""
        ...

    async def cancel_sales_order(self, ref: SalesOrderRef) -> None: ...


@runtime_checkable
class BatchSalesOrders(Protocol):
    """An ERP that creates many sales orders in one round trip (B1: ``$batch``), next to
    :class:`SalesOrders`. Each order is created as ``create_sales_order`` creates it and fails
    alone: its outcome is its reference or the error that call would raise, in the order
    given (an :class:`ErpUnavailable` with ``ambiguous`` for each order of a round trip whose
    answer was lost: find it by its reference). At most ``max_batch_orders`` a call."""

    max_batch_orders: int

    async def create_sales_orders(
        self, orders: Sequence[SalesOrder]
    ) -> list[SalesOrderRef | ErpError]: ...


@runtime_checkable
class SalesDeliveries(Protocol):
    """Deliveries based on sales orders, invoices based on deliveries, returns and credit
    notes based on those; each document found by its idempotency key."""

    async def create_delivery(self, delivery: Delivery) -> PostedDocument: ...

    async def create_invoice(self, key: str, delivery: PostedDocument) -> PostedDocument:
        """An invoice of everything ``delivery`` delivered."""
        ...

    async def create_return(self, sales_return: SalesReturn) -> PostedDocument: ...

    async def create_credit_note(self, key: str, sales_return: PostedDocument) -> PostedDocument:
        """A credit note of everything ``sales_return`` took back."""
        ...

    async def find_sales_document(
        self, kind: SalesDocumentKind, key: str
    ) -> PostedDocument | None: ...

    async def delivery_lines(self, delivery: PostedDocument) -> dict[int, tuple[str, Decimal]]:
        """A delivery's lines: ERP line number → (item code, quantity) (returns match by it)."""
        ...


class StockErp(MasterDataSource, StockDocuments, Protocol):
    """What the stock flow needs: master data to validate against and stock documents."""


#: The capabilities an ERP connector may implement, by the name the wiring reports.
CAPABILITIES: dict[str, type[object]] = {
    "master data": MasterDataSource,
    "stock documents": StockDocuments,
    "sales orders": SalesOrders,
    "batched sales orders": BatchSalesOrders,
    "sales deliveries": SalesDeliveries,
}


def capabilities(erp: object) -> list[str]:
    """The names of the capabilities ``erp`` implements (for the start-up log)."""
    return [name for name, protocol in CAPABILITIES.items() if isinstance(erp, protocol)]


def missing_capabilities(erp: object, needed: tuple[str, ...]) -> list[str]:
    """Which of the ``needed`` capabilities ``erp`` does not implement."""
    have = capabilities(erp)
    return [name for name in needed if name not in have]
