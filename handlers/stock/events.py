"""The stock flow's events: ``stock.adjusted`` (a non-sales movement in a warehouse) and
``stock.transferred`` (stock moved between two locations)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec

from handlers.common.events import Event, NonEmpty, Text, quantity_problem, timestamp_problems


class StockAdjusted(Event, frozen=True, kw_only=True, tag="stock.adjusted"):
    """A non-sales stock movement in the warehouse (signed, non-zero quantity)."""

    sku: NonEmpty
    warehouse: NonEmpty
    quantity: Decimal
    reason: Text
    batch_number: NonEmpty | None = None
    serial_numbers: Annotated[list[NonEmpty], msgspec.Meta(max_length=10_000)] = []

    def problems(self) -> list[tuple[str, str]]:
        # (the year test inline: this runs for every stock event, and almost every year passes)
        found = (
            []
            if 1 < self.occurred_at.year < 9999
            else timestamp_problems(("$.occurred_at", self.occurred_at))
        )
        problem = quantity_problem(self.quantity, allow_negative=True)
        if problem:
            found.append(("$.quantity", problem))
        if self.serial_numbers and len(set(self.serial_numbers)) != len(self.serial_numbers):
            found.append(("$.serial_numbers", "serial numbers must be unique"))
        return found


class StockTransferred(Event, frozen=True, kw_only=True, tag="stock.transferred"):
    """Stock moved from one location to another (a positive quantity): posted as one transfer
    (B1 ``StockTransfers``, ECC 311/301), never as an unrelated issue plus receipt."""

    sku: NonEmpty
    from_warehouse: NonEmpty
    to_warehouse: NonEmpty
    quantity: Decimal
    reason: Text = "transfer"
    batch_number: NonEmpty | None = None
    serial_numbers: Annotated[list[NonEmpty], msgspec.Meta(max_length=10_000)] = []

    def problems(self) -> list[tuple[str, str]]:
        found = timestamp_problems(("$.occurred_at", self.occurred_at))
        problem = quantity_problem(self.quantity, allow_negative=False)
        if problem:
            found.append(("$.quantity", problem))
        if self.from_warehouse == self.to_warehouse:
            found.append(("$.to_warehouse", "must differ from from_warehouse"))
        if self.serial_numbers and len(set(self.serial_numbers)) != len(self.serial_numbers):
            found.append(("$.serial_numbers", "serial numbers must be unique"))
        return found
