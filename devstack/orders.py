"""Sample orders for ``skuflow dev``: Amazon orders, their packages and returns (pure, seeded).

:class:`SampleOrders` plans each order once (:class:`PlannedOrder`): marketplace (UK 40%,
DE, FR, IT 20% each), one to three lines of SKUs sold by the unit (never batch- or serial-managed,
never sold by weight: a dispatch names neither lots nor serials), its latest ship date (~2% due
within 2 h, ~0.5% already late, ~1% shipped naming an order item the order lacks — the dispatch
flow's paths), whether it leaves in two packages (~30% of those with two units or more), whether
Amazon cancels it before it ships (~2%) and whether the buyer sends a unit back (the first order
and every 8th after it, one return in three damaged, so a short run shows a return too). It
writes the order as the SP-API simulator's :class:`~devstack.sims.spapi.orders.OrderSpec`, and
the contract events the warehouse sends:
``dispatch.confirmed`` per package and ``return.received`` (plus, now and then, a return no
order matches).
"""

from __future__ import annotations

import bisect
import itertools
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

import msgspec

from devstack.sims.spapi.orders import ItemSpec, OrderSpec, Window
from devstack.traffic import CARRIERS, ORDER_PREFIXES, SHIPPER_ZONE, Scenario, ship_by_for
from handlers.dispatch.events import DispatchConfirmed, DispatchLine
from handlers.orders.events import ReturnLine, ReturnReceived

__all__ = [
    "MARKETPLACES",
    "SHIPPING_LOCATION",
    "Condition",
    "PlannedLine",
    "PlannedOrder",
    "SampleOrders",
]

#: The marketplaces of the sample orders: id, currency, share (percent).
MARKETPLACES: dict[str, tuple[str, int]] = {
    "A1F83G8C2ARO7P": ("GBP", 40),  # Amazon.co.uk
    "A1PA6795UKMFR9": ("EUR", 20),  # Amazon.de
    "A13V1IB3VIYZZH": ("EUR", 20),  # Amazon.fr
    "APJ6JRA9NG5V4": ("EUR", 20),  # Amazon.it
}
SHIPPING_LOCATION = "LOC-01"  # the location that ships every sample order
_PRICES = tuple(Decimal(p) for p in ("4.99", "7.49", "9.99", "12.99", "19.99", "24.99", "34.99"))
_SCENARIOS: tuple[Scenario, ...] = ("on_time", "at_risk", "missed", "unknown_item")
_SCENARIO_WEIGHTS = (96.5, 2.0, 0.5, 1.0)  # percent of orders
TWO_PACKAGES, CANCELLED = 0.3, 0.02
RETURN_EVERY, DAMAGED_EVERY = 8, 3  # orders that come back; of those, damaged ones
UNMATCHED_EVERY = 15  # returns sent: one of them names an order no one knows

Condition = Literal["sellable", "damaged"]


@dataclass(frozen=True, slots=True)
class PlannedLine:
    order_item_id: str
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """An order and what will become of it (decided when it is made)."""

    order_id: str
    marketplace_id: str
    currency: str
    lines: tuple[PlannedLine, ...]
    latest_ship_date: datetime
    scenario: Scenario
    packages: int  # 1, or 2: the units leave in two packages
    cancel: bool  # Amazon cancels it before it ships
    returned: Condition | None  # the buyer sends one unit back

    @property
    def amount(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal(0))

    def spec(self, lag: float) -> OrderSpec:
        """The order as created at the SP-API simulator; ``lag``: seconds its lastUpdatedTime
        lies in the past (``skuflow dev``: searchOrders' settle, so the poller sees it now)."""
        window = Window(
            earliest_date_time=self.latest_ship_date - timedelta(days=1),
            latest_date_time=self.latest_ship_date,
        )
        items = [
            ItemSpec(
                seller_sku=line.sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
                order_item_id=line.order_item_id,
            )
            for line in self.lines
        ]
        return OrderSpec(
            items=items,
            marketplace_id=self.marketplace_id,
            order_id=self.order_id,
            currency_code=self.currency,
            ship_by_window=window,
            lag=lag,
        )

    def package(self, number: int) -> list[tuple[str, str, int]]:
        """(order item id, SKU, units) of package ``number`` (1 or 2) of :attr:`packages`."""
        units = [(line.order_item_id, line.sku, line.quantity) for line in self.lines]
        if self.packages == 1:
            return units
        if len(units) > 1:  # the first line in one package, the rest in the other
            return units[:1] if number == 1 else units[1:]
        item_id, sku, quantity = units[0]
        first = quantity // 2
        return [(item_id, sku, first if number == 1 else quantity - first)]


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choices(string.digits, k=count))


class SampleOrders:
    """Orders over ``skus`` (the plain ones of the catalogue, most popular first) and the
    warehouse's events for them; deterministic per ``seed``."""

    def __init__(self, skus: Sequence[str], *, seed: int = 0, run: str = "r0") -> None:
        if not skus:
            raise ValueError("the sample orders need at least one SKU")
        self.skus = tuple(skus)
        self._rng = random.Random(seed)
        self._run, self._seq = run, itertools.count(1)
        self._made = self._returns = self._sent = 0
        self._cumulative = list(itertools.accumulate((r + 1) ** -0.8 for r in range(len(skus))))
        self._markets = list(MARKETPLACES)
        self._market_weights = [share for _currency, share in MARKETPLACES.values()]

    def _sku(self) -> str:
        point = self._rng.random() * self._cumulative[-1]
        return self.skus[min(bisect.bisect(self._cumulative, point), len(self.skus) - 1)]

    def price(self, sku: str) -> Decimal:
        """The SKU's unit price (the same every time)."""
        return _PRICES[sum(sku.encode()) % len(_PRICES)]

    def next_order(self, now: datetime) -> PlannedOrder:
        rng = self._rng
        marketplace = rng.choices(self._markets, self._market_weights)[0]
        skus: list[str] = []
        for _ in range(rng.choices((1, 2, 3), (70, 22, 8))[0]):
            sku = self._sku()
            if sku not in skus:
                skus.append(sku)
        lines = tuple(
            PlannedLine(_digits(rng, 14), sku, rng.choice((1, 1, 1, 2, 3)), self.price(sku))
            for sku in skus
        )
        scenario = rng.choices(_SCENARIOS, _SCENARIO_WEIGHTS)[0]
        units = sum(line.quantity for line in lines)
        cancel = rng.random() < CANCELLED
        returned: Condition | None = None
        self._made += 1
        if self._made % RETURN_EVERY == 1 and scenario != "unknown_item" and not cancel:
            self._returns += 1
            returned = "damaged" if self._returns % DAMAGED_EVERY == 0 else "sellable"
        return PlannedOrder(
            order_id=f"{rng.choice(ORDER_PREFIXES)}-{_digits(rng, 7)}-{_digits(rng, 7)}",
            marketplace_id=marketplace,
            currency=MARKETPLACES[marketplace][0],
            lines=lines,
            latest_ship_date=ship_by_for(rng, scenario, now),
            scenario=scenario,
            packages=2 if units > 1 and rng.random() < TWO_PACKAGES else 1,
            cancel=cancel,
            returned=returned,
        )

    def dispatch(self, order: PlannedOrder, number: int, now: datetime) -> bytes:
        """``dispatch.confirmed`` of package ``number``, as the 3PL reports it (local time)."""
        rng, n = self._rng, next(self._seq)
        carrier, method = rng.choice(CARRIERS)
        tracking = (
            f"{rng.choice(('RM', 'TT', 'JD'))}{_digits(rng, 9)}GB"
            if carrier == "Royal Mail"
            else _digits(rng, 14)
        )
        lines = [
            DispatchLine(order_item_id=item_id, sku=sku, quantity=Decimal(units))
            for item_id, sku, units in order.package(number)
        ]
        if order.scenario == "unknown_item" and number == 1:  # an item the order lacks
            lines[0] = msgspec.structs.replace(lines[0], order_item_id=_digits(rng, 14))
        shipped = now.astimezone(SHIPPER_ZONE).replace(microsecond=0)
        event = DispatchConfirmed(
            event_id=f"dsp-{self._run}-o{n:07d}",
            occurred_at=shipped,
            source="seko",
            source_ref=f"SEKO-DSP-O{n}",
            channel="amazon",
            order_id=order.order_id,
            marketplace_id=order.marketplace_id,
            ship_by=order.latest_ship_date,
            ship_date=shipped,
            carrier_code=carrier,
            shipping_method=method,
            tracking_number=tracking,
            package_reference_id=str(number),
            warehouse=SHIPPING_LOCATION,
            lines=lines,
        )
        return msgspec.json.encode(event)

    def return_of(self, order: PlannedOrder | None, now: datetime) -> tuple[str, bytes]:
        """(order id, ``return.received``) of one unit of ``order``'s first line in its
        planned condition; without an order, a return for an order id no one knows."""
        rng, n = self._rng, next(self._seq)
        if order is None:
            order_id = f"{rng.choice(ORDER_PREFIXES)}-{_digits(rng, 7)}-{_digits(rng, 7)}"
            line = ReturnLine(sku=self._sku(), quantity=Decimal(1))
        else:
            order_id, first = order.order_id, order.lines[0]
            line = ReturnLine(
                sku=first.sku,
                quantity=Decimal(1),
                condition=order.returned or "sellable",
                order_item_id=first.order_item_id,
            )
        event = ReturnReceived(
            event_id=f"ret-{self._run}-{n:07d}",
            occurred_at=now.replace(microsecond=0),
            source="wms",
            source_ref=f"WMS-RMA-{n}",
            channel="amazon",
            order_id=order_id,
            warehouse=SHIPPING_LOCATION,
            return_ref=f"RMA-{self._run}-{n}",
            lines=[line],
        )
        return order_id, msgspec.json.encode(event)

    def unmatched(self) -> bool:
        """Whether a return that matches no order follows the one just sent."""
        self._sent += 1
        return self._sent % UNMATCHED_EVERY == 0
