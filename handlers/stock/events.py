"""The stock flow's event: ``stock.adjusted``, a non-sales movement in a warehouse."""

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
