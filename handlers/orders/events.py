"""The order flow's events.

In (topic ``topics.orders``, keyed ``order:<channel>:<order_id>``): ``order.received`` (a new
marketplace order), ``order.changed`` (a later revision of it), ``order.cancelled``. Any
producer may send them — skuflow's own SP-API order poller (``handlers.orders.capture``), a
notification bridge, another channel; the ERP side does not care where they came from.
``revision`` orders an order's revisions (the marketplace's last-update time): a revision at
or before the one already applied is a replay and changes nothing.

In (topic ``topics.returns``, keyed by order): ``return.received``, the warehouse received
goods back.

Out (topic ``topics.released``, keyed by order id): ``order.released`` — every ERP check has
passed, the warehouse may pick it; ``order.held`` — the ERP put a released order on hold,
stop picking it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from handlers.common.events import (
    Event,
    NonEmpty,
    Text,
    Timestamp,
    quantity_problem,
    timestamp_problems,
)

#: An amount in the order's currency (checked finite and not negative by ``problems``).
Money = Decimal
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]


class OrderLine(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One order item. ``unit_price``/``item_tax``/``promotion_discount`` in the order's
    currency (``promotion_discount`` and ``item_tax`` for the whole line, as Amazon reports
    them); ``tax_code``: the marketplace's tax classification, mapped to an ERP tax code."""

    order_item_id: NonEmpty
    sku: NonEmpty
    quantity: Decimal
    unit_price: Money | None = None
    item_tax: Money | None = None
    promotion_discount: Money | None = None
    tax_code: NonEmpty | None = None


class _OrderRevision(Event, frozen=True, kw_only=True):
    channel: NonEmpty
    order_id: NonEmpty
    marketplace_id: NonEmpty
    #: The marketplace's last-update time of this revision: later revisions are greater.
    revision: Timestamp


class OrderReceived(_OrderRevision, frozen=True, kw_only=True, tag="order.received"):
    """A marketplace order to be created in the ERP (once) and released to the warehouse
    once the ERP's checks pass. ``warehouse``: the location that ships it (mapped like stock
    movements' locations); ``status``: the marketplace's fulfilment status."""

    purchased_at: Timestamp
    status: NonEmpty = "UNSHIPPED"
    fulfilled_by: Literal["MERCHANT", "AMAZON"] = "MERCHANT"
    ship_by: Timestamp | None = None
    currency: Currency | None = None
    warehouse: NonEmpty | None = None
    lines: Annotated[list[OrderLine], msgspec.Meta(min_length=1, max_length=1000)]

    def problems(self) -> list[tuple[str, str]]:
        stamps = [("$.occurred_at", self.occurred_at), ("$.revision", self.revision)]
        stamps.append(("$.purchased_at", self.purchased_at))
        if self.ship_by is not None:
            stamps.append(("$.ship_by", self.ship_by))
        found = timestamp_problems(*stamps)
        seen: set[str] = set()
        for index, line in enumerate(self.lines):
            problem = quantity_problem(line.quantity, allow_negative=False)
            if problem is None and line.quantity != line.quantity.to_integral_value():
                problem = "must be a whole number of units"
            if problem:
                found.append((f"$.lines[{index}].quantity", problem))
            for name in ("unit_price", "item_tax", "promotion_discount"):
                amount = getattr(line, name)
                if amount is not None and (not amount.is_finite() or amount < 0):
                    found.append((f"$.lines[{index}].{name}", "must be a finite amount >= 0"))
            if line.order_item_id in seen:
                found.append((f"$.lines[{index}].order_item_id", "order item ids must be unique"))
            seen.add(line.order_item_id)
        if any(line.unit_price is not None for line in self.lines) and self.currency is None:
            found.append(("$.currency", "required when lines carry prices"))
        return found


class OrderChanged(OrderReceived, frozen=True, kw_only=True, tag="order.changed"):
    """A later revision of an order (status, lines, prices). Before the ERP order exists it
    replaces the order to create; after, a change of lines is an exception (the ERP order is
    not rewritten behind the warehouse's back), a change of status only is recorded."""


class OrderCancelled(_OrderRevision, frozen=True, kw_only=True, tag="order.cancelled"):
    """The marketplace cancelled the order: the ERP order is cancelled if nothing shipped,
    otherwise an ``order_cancel_after_ship`` exception names what shipped."""

    reason: Text | None = None

    def problems(self) -> list[tuple[str, str]]:
        return timestamp_problems(
            ("$.occurred_at", self.occurred_at), ("$.revision", self.revision)
        )


class ReturnLine(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    sku: NonEmpty
    quantity: Decimal
    condition: Literal["sellable", "damaged"] = "sellable"
    order_item_id: NonEmpty | None = None
    batch_number: NonEmpty | None = None
    serial_numbers: Annotated[list[NonEmpty], msgspec.Meta(max_length=10_000)] = []


class ReturnReceived(Event, frozen=True, kw_only=True, tag="return.received"):
    """Goods came back to the warehouse for a marketplace order."""

    channel: NonEmpty
    order_id: NonEmpty
    warehouse: NonEmpty
    return_ref: NonEmpty  # the warehouse's reference of the return (RMA, receipt number)
    lines: Annotated[list[ReturnLine], msgspec.Meta(min_length=1, max_length=1000)]

    def problems(self) -> list[tuple[str, str]]:
        found = timestamp_problems(("$.occurred_at", self.occurred_at))
        for index, line in enumerate(self.lines):
            problem = quantity_problem(line.quantity, allow_negative=False)
            if problem is None and line.quantity != line.quantity.to_integral_value():
                problem = "must be a whole number of units"
            if problem:
                found.append((f"$.lines[{index}].quantity", problem))
        return found


# --- published by skuflow to the warehouse (topics.released) ---


class ReleasedLine(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    order_item_id: NonEmpty
    sku: NonEmpty
    quantity: Decimal


class OrderReleased(Event, frozen=True, kw_only=True, tag="order.released"):
    """Every ERP check passed: the warehouse may pick this order. ``erp_order``: the ERP's
    document number; ``ship_by``: the marketplace deadline, if any."""

    channel: NonEmpty
    order_id: NonEmpty
    marketplace_id: NonEmpty
    erp_order: NonEmpty
    warehouse: NonEmpty | None = None
    ship_by: Timestamp | None = None
    lines: list[ReleasedLine]


class OrderHeld(Event, frozen=True, kw_only=True, tag="order.held"):
    """The ERP put an order on hold after it was released: stop picking it. ``holds``: why,
    as the ERP says it (e.g. ``credit block``, ``not approved``)."""

    channel: NonEmpty
    order_id: NonEmpty
    erp_order: NonEmpty
    holds: list[Text]
