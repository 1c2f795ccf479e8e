"""The ERP port: what the stock flow needs from a system of record, whatever the ERP.

SAP Business One (Service Layer) fills it today; SAP ECC (IDocs/BAPIs) fills the same port
later. Errors are translated into these types at the connector edge, so the stock logic never
sees HTTP or OData.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from handlers.netting import DocumentLine
from worker.errors import SkuflowError

DocumentKind = Literal["entry", "exit"]


class ItemMaster(msgspec.Struct, frozen=True, kw_only=True):
    item_code: str
    valid: bool
    frozen: bool
    inventory_item: bool
    manages_batches: bool
    manages_serials: bool


class WarehouseMaster(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name: str = ""


class StockDocument(msgspec.Struct, frozen=True, kw_only=True):
    """One goods receipt (entry) or goods issue (exit) carrying its posting's idempotency key."""

    kind: DocumentKind
    key: str
    lines: tuple[DocumentLine, ...]
    remarks: str


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


class ErpPort(Protocol):
    async def get_item(self, item_code: str) -> ItemMaster | None: ...

    async def get_warehouse(self, code: str) -> WarehouseMaster | None: ...

    async def post_document(self, document: StockDocument) -> PostedDocument: ...

    async def find_document(self, kind: DocumentKind, key: str) -> PostedDocument | None: ...
