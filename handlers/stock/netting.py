"""Netting staged stock movements of one warehouse window into ERP document lines.

Movements are netted per (item, batch): the window's net increase goes on one goods-receipt
document (``InventoryGenEntries``), the net decrease on one goods-issue document
(``InventoryGenExits``), and a line that nets to zero posts nothing but is *settled*. Serial
numbers are never netted away — a serial that came in and went out again in one window is a
real history — so serial-managed movements keep one line per direction and item, carrying
their serials. Every document line remembers the staged movements (event ids) behind it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

import msgspec

from handlers.ports.erp import DocumentLine


class StagedLine(msgspec.Struct, frozen=True, kw_only=True):
    """One validated, staged stock movement (already mapped to ERP codes)."""

    event_id: str
    item_code: str
    warehouse_code: str
    quantity: Decimal  # signed
    batch_number: str | None = None
    serial_numbers: tuple[str, ...] = ()
    #: The ERP's class of the movement's reason (ECC: which movement types it posts with);
    #: movements of different classes are never netted against each other. "": one class.
    reason_class: str = ""
    #: A transfer's destination (its ``warehouse_code`` is the source; ``quantity`` > 0).
    to_warehouse_code: str | None = None


class Netted(msgspec.Struct, frozen=True, kw_only=True):
    entries: tuple[DocumentLine, ...]  # InventoryGenEntries lines (net increases)
    exits: tuple[DocumentLine, ...]  # InventoryGenExits lines (net decreases)
    settled: tuple[str, ...]  # event ids whose movements netted to zero
    #: Transfer lines: summed per (item, batch, destination), never netted with adjustments.
    transfers: tuple[DocumentLine, ...] = ()


def net(lines: Iterable[StagedLine]) -> Netted:
    """Net one warehouse window; lines keep the order in which their items first appear."""
    plain: dict[tuple[str, str, str | None], list[StagedLine]] = defaultdict(list)
    serial: dict[tuple[str, str, str | None, int], list[StagedLine]] = defaultdict(list)
    moved: dict[tuple[str, str, str | None, str], list[StagedLine]] = defaultdict(list)
    for line in lines:
        if line.to_warehouse_code is not None:
            key4 = (line.item_code, line.warehouse_code, line.batch_number, line.to_warehouse_code)
            moved[key4].append(line)
        elif line.serial_numbers:
            direction = 1 if line.quantity > 0 else -1
            key = (line.item_code, line.warehouse_code, line.batch_number, direction)
            serial[key].append(line)
        else:
            plain[(line.item_code, line.warehouse_code, line.batch_number)].append(line)

    entries: list[DocumentLine] = []
    exits: list[DocumentLine] = []
    settled: list[str] = []
    for (item, warehouse, batch), group in plain.items():
        total = sum((line.quantity for line in group), Decimal(0))
        sources = tuple(line.event_id for line in group)
        if total == 0:
            settled.extend(sources)
            continue
        document_line = DocumentLine(
            item_code=item,
            warehouse_code=warehouse,
            quantity=abs(total),
            batch_number=batch,
            sources=sources,
        )
        (entries if total > 0 else exits).append(document_line)
    for (item, warehouse, batch, direction), group in serial.items():
        document_line = DocumentLine(
            item_code=item,
            warehouse_code=warehouse,
            quantity=sum((abs(line.quantity) for line in group), Decimal(0)),
            batch_number=batch,
            serial_numbers=tuple(s for line in group for s in line.serial_numbers),
            sources=tuple(line.event_id for line in group),
        )
        (entries if direction > 0 else exits).append(document_line)
    transfers = [
        DocumentLine(
            item_code=item,
            warehouse_code=warehouse,
            to_warehouse_code=destination,
            quantity=sum((line.quantity for line in group), Decimal(0)),
            batch_number=batch,
            serial_numbers=tuple(s for line in group for s in line.serial_numbers),
            sources=tuple(line.event_id for line in group),
        )
        for (item, warehouse, batch, destination), group in moved.items()
    ]
    return Netted(
        entries=tuple(entries), exits=tuple(exits), settled=tuple(settled),
        transfers=tuple(transfers),
    )  # fmt: skip


def net_by_class(lines: Iterable[StagedLine]) -> list[tuple[str, Netted]]:
    """Net one warehouse window per reason class (classes in order of first appearance): a
    receipt is never netted against a write-off when the ERP books them differently."""
    classes: dict[str, list[StagedLine]] = defaultdict(list)
    for line in lines:
        classes[line.reason_class].append(line)
    return [(reason_class, net(group)) for reason_class, group in classes.items()]
