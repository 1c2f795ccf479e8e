"""SAP Business One fills the ERP port: types and errors translated at this edge.

The posting key goes into ``JournalMemo`` (50 characters; ``Reference2`` holds only 11, too
short for a bisected slice's key such as ``SKF1234567.12``) and into ``Comments``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from handlers.connectors.b1.client import B1Client, BatchQuantity, StockLine
from handlers.connectors.b1.client import StockDocument as B1Document
from handlers.connectors.b1.errors import (
    B1AuthError,
    B1DuplicateEntry,
    B1Locked,
    B1Rejected,
    B1Unavailable,
)
from handlers.ports.erp import (
    DocumentKind,
    ErpAuthFailed,
    ErpDuplicateEntry,
    ErpLocked,
    ErpRejected,
    ErpUnavailable,
    ItemMaster,
    PostedDocument,
    StockDocument,
    WarehouseMaster,
)

KEY_FIELD = "JournalMemo"

T = TypeVar("T")


class B1Erp:
    """The ERP port over a :class:`B1Client` (built with ``key_field=KEY_FIELD``)."""

    def __init__(self, client: B1Client) -> None:
        self._client = client

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

    @staticmethod
    async def _translate(call: Awaitable[T]) -> T:
        try:
            return await call
        except B1Locked as exc:
            raise ErpLocked(str(exc)) from exc
        except B1DuplicateEntry as exc:
            raise ErpDuplicateEntry(str(exc.code), exc.message) from exc
        except B1Unavailable as exc:
            raise ErpUnavailable(str(exc), ambiguous=exc.ambiguous) from exc
        except B1Rejected as exc:
            raise ErpRejected(str(exc.code), exc.message, line=exc.line) from exc
        except B1AuthError as exc:
            raise ErpAuthFailed(f"ERP login failed: {exc}") from exc
