"""The dispatch flow's event: ``dispatch.confirmed``, an order left the warehouse."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec

from handlers.common.events import Event, NonEmpty, Timestamp, quantity_problem, timestamp_problems


class DispatchLine(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    order_item_id: NonEmpty
    sku: NonEmpty
    quantity: Decimal
    #: What exactly left (the ERP delivery of a batch- or serial-managed item needs it).
    batch_number: NonEmpty | None = None
    serial_numbers: Annotated[list[NonEmpty], msgspec.Meta(max_length=10_000)] = []


class DispatchConfirmed(Event, frozen=True, kw_only=True, tag="dispatch.confirmed"):
    """A marketplace order left the warehouse; ``ship_by`` is the deadline."""

    channel: NonEmpty
    order_id: NonEmpty
    marketplace_id: NonEmpty
    ship_by: Timestamp
    ship_date: Timestamp
    carrier_code: NonEmpty
    carrier_name: NonEmpty | None = None
    shipping_method: NonEmpty | None = None
    tracking_number: NonEmpty
    package_reference_id: NonEmpty
    warehouse: NonEmpty
    lines: Annotated[list[DispatchLine], msgspec.Meta(min_length=1, max_length=1000)]

    def problems(self) -> list[tuple[str, str]]:
        found = timestamp_problems(
            ("$.occurred_at", self.occurred_at),
            ("$.ship_by", self.ship_by),
            ("$.ship_date", self.ship_date),
        )
        for index, line in enumerate(self.lines):
            problem = quantity_problem(line.quantity, allow_negative=False)
            if problem is None and line.quantity != line.quantity.to_integral_value():
                problem = "must be a whole number of units"
            if problem:
                found.append((f"$.lines[{index}].quantity", problem))
        return found
