"""What every event of the contract shares: the base Struct, field types and checks.

Each event family is one frozen msgspec Struct with ``tag=<type>``, defined in its flow's
package (``handlers.stock.events``, ``handlers.dispatch.events``, ...) on the :class:`Event`
base; the router's decoder is built once from the union of the registered families
(``handlers.flows``). Quantities are decimals, never floats.
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


def event_type_name(cls: type[Any]) -> str:
    tag: Any = cls.__struct_config__.tag
    return str(tag)
