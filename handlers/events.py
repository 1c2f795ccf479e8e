"""The contract's events as frozen msgspec Structs, tagged by ``type``.

Each event family is one Struct with ``tag=<type>``; :data:`EVENT_TYPES` lists them and the
decoder is built once from their union. Adding a family = a Struct here + a handler module;
the engine does not change. Quantities are decimals, never floats.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]

#: Quantities beyond this magnitude are data errors, not stock movements.
MAX_QUANTITY = Decimal(10) ** 9
#: More decimal places than this is not a quantity any ERP stores.
MAX_QUANTITY_PLACES = 6


# gc=False: events are immutable trees of scalars and lists of scalars and can never form a
# reference cycle, so the cyclic collector need not track the thousands buffered at once.
class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Fields every event carries."""

    event_id: NonEmpty
    occurred_at: Timestamp
    source: NonEmpty
    source_ref: NonEmpty

    def problems(self) -> list[tuple[str, str]]:
        """Semantic violations the schema cannot express, as (path, message)."""
        return timestamp_problems(("$.occurred_at", self.occurred_at))


def timestamp_problems(*stamps: tuple[str, datetime]) -> list[tuple[str, str]]:
    """Timestamps that cannot be converted to UTC (e.g. ``0001-01-01T00:00:00+05:00``): every
    consumer of an event (deadlines, SP-API, the ERP) does that conversion, and it would raise.
    """
    found = []
    for path, moment in stamps:
        if 1 < moment.year < 9999:  # hot path: no conversion needed
            continue
        try:
            moment.astimezone(UTC)
        except (OverflowError, ValueError):
            found.append((path, "out of range once converted to UTC"))
    return found


def nul_paths(value: Any, path: str = "$") -> list[str]:
    """Paths of the strings in an event that contain U+0000 (PostgreSQL text cannot store it)."""
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in nul_paths(item, f"{path}[{index}]")]
    if isinstance(value, msgspec.Struct):
        return [
            p
            for field in value.__struct_fields__
            for p in nul_paths(getattr(value, field), f"{path}.{field}")
        ]
    return []


def quantity_problem(value: Decimal, *, allow_negative: bool) -> str | None:
    """Why ``value`` is not a plausible quantity, or None (hot path: one tuple, few compares)."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # 'n', 'N' or 'F': NaN or infinity
        return "must be a finite number"
    if not value:
        return "must be non-zero"
    if sign and not allow_negative:
        return "must be positive"
    if -exponent > MAX_QUANTITY_PLACES:
        # Trailing zeros are fine. Counted on the digits: normalize() would round to the
        # context's 28 digits and underflow tiny exponents to 0, passing e.g. 1E-999999999999.
        zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if -(exponent + zeros) > MAX_QUANTITY_PLACES:
            return f"at most {MAX_QUANTITY_PLACES} decimal places"
    if value >= MAX_QUANTITY or value <= -MAX_QUANTITY:
        return f"magnitude must be below {MAX_QUANTITY}"
    return None


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


class DispatchLine(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    order_item_id: NonEmpty
    sku: NonEmpty
    quantity: Decimal


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


#: Every event family this build knows, in one tagged union.
EVENT_TYPES: tuple[type[Event], ...] = (StockAdjusted, DispatchConfirmed)


def event_type_name(cls: type[Any]) -> str:
    tag: Any = cls.__struct_config__.tag
    return str(tag)
