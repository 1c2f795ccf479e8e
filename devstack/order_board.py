"""What becomes of each sample order, and when: the warehouse's and the marketplace's timeline.

:class:`OrderBoard` is pure (the caller passes the time): it keeps the open orders of the
order traffic and a heap of due steps. The warehouse picks an order only once skuflow has
released it (``order.released``) and ships it a pick time later — only if it is still released
then, it is not one Amazon will cancel and its customer is not *frozen* (the back office is
about to put it on credit hold: nothing of that customer may be on its way to the ERP when the
hold lands). Two-package orders send the rest a little later; some orders come back; the
approval customer's orders are approved after a while; an order Amazon cancels is cancelled
a few seconds after it was made. Every order is forgotten at the latest ``forget_after``
seconds after it was made, and at most ``max_open`` are open at a time: the board never grows
without bound, whatever the worker does.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from devstack.orders import PlannedOrder

__all__ = ["Action", "OrderBoard", "Tracked"]

Action = Literal["ship", "ship_rest", "return", "cancel", "approve", "forget"]
Status = Literal["new", "released", "held", "shipping", "shipped", "cancelled"]


@dataclass(slots=True)
class Tracked:
    order: PlannedOrder
    customer: str
    status: Status = "new"
    approvals: int = 0  # approval attempts so far
    made: float = 0.0


class OrderBoard:
    def __init__(
        self,
        *,
        seed: int = 0,
        pick: tuple[float, float] = (1.0, 4.0),
        second_package: tuple[float, float] = (1.0, 3.0),
        return_after: tuple[float, float] = (3.0, 8.0),
        cancel_after: tuple[float, float] = (2.0, 6.0),
        approve_after: tuple[float, float] = (5.0, 10.0),
        approve_retry: float = 2.0,
        approve_tries: int = 15,
        forget_after: float = 600.0,
        max_open: int = 2000,
    ) -> None:
        self._rng = random.Random(seed)
        self._pick, self._second, self._return = pick, second_package, return_after
        self._cancel, self._approve = cancel_after, approve_after
        self._approve_retry, self._approve_tries = approve_retry, approve_tries
        self._forget_after, self.max_open = forget_after, max_open
        self.orders: dict[str, Tracked] = {}
        self.frozen: set[str] = set()  # customers about to be put on credit hold
        self._due: list[tuple[float, int, Action, str]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.orders)

    def add(self, order: PlannedOrder, customer: str, now: float, *, approval: bool) -> bool:
        """Track a new order (False: ``max_open`` are open already, it is not made)."""
        if len(self.orders) >= self.max_open or order.order_id in self.orders:
            return False
        self.orders[order.order_id] = Tracked(order, customer, made=now)
        self._at(now + self._forget_after, "forget", order.order_id)
        if order.cancel:
            self._at(now + self._rng.uniform(*self._cancel), "cancel", order.order_id)
        if approval:
            self._at(now + self._rng.uniform(*self._approve), "approve", order.order_id)
        return True

    def released(self, order_id: str, now: float) -> None:
        """skuflow released the order to the warehouse: picked, shipped a pick time later."""
        tracked = self.orders.get(order_id)
        if tracked is None or tracked.status not in ("new", "held"):
            return
        tracked.status = "released"
        self._pick_later(tracked, now)

    def held(self, order_id: str) -> None:
        """skuflow told the warehouse to stop picking it."""
        tracked = self.orders.get(order_id)
        if tracked is not None and tracked.status in ("new", "released"):
            tracked.status = "held"

    def freeze(self, customer: str) -> None:
        self.frozen.add(customer)

    def unfreeze(self, customer: str, now: float) -> None:
        """The customer's hold is lifted: its orders still released are picked again."""
        self.frozen.discard(customer)
        for tracked in self.orders.values():
            if tracked.customer == customer and tracked.status == "released":
                self._pick_later(tracked, now)

    def open_orders(self, customer: str) -> list[str]:
        """The customer's orders that have not left (nor been cancelled)."""
        return [
            order_id
            for order_id, t in self.orders.items()
            if t.customer == customer and t.status in ("new", "released", "held")
        ]

    def approve_later(self, order_id: str, now: float) -> bool:
        """The ERP has nothing to approve yet: try again (False: given up)."""
        tracked = self.orders.get(order_id)
        if tracked is None or tracked.approvals >= self._approve_tries:
            return False
        self._at(now + self._approve_retry, "approve", order_id)
        return True

    def due(self, now: float) -> Iterator[tuple[Action, Tracked]]:
        """The steps due by ``now`` that still apply, in time order (each taken once)."""
        while self._due and self._due[0][0] <= now:
            _at, _seq, action, order_id = heapq.heappop(self._due)
            tracked = self.orders.get(order_id)
            if tracked is not None and self._take(action, tracked, now):
                yield action, tracked

    def _take(self, action: Action, tracked: Tracked, now: float) -> bool:
        """Whether ``action`` still applies to ``tracked``; moves it on if so."""
        order = tracked.order
        if action == "forget":
            del self.orders[order.order_id]
            return False
        if action == "ship":
            if tracked.status != "released" or order.cancel or tracked.customer in self.frozen:
                return False
            tracked.status = "shipping"
            if order.packages == 2:
                self._at(now + self._rng.uniform(*self._second), "ship_rest", order.order_id)
            else:
                self._shipped(tracked, now)
            return True
        if action == "ship_rest":
            self._shipped(tracked, now)
            return True
        if action == "return":
            del self.orders[order.order_id]
            return True
        if action == "cancel":
            if tracked.status in ("shipping", "shipped"):
                return False
            del self.orders[order.order_id]
            return True
        # approve: while it has not left
        if tracked.status not in ("new", "released", "held"):
            return False
        tracked.approvals += 1
        return True

    def _shipped(self, tracked: Tracked, now: float) -> None:
        tracked.status = "shipped"
        if tracked.order.returned is not None:
            self._at(now + self._rng.uniform(*self._return), "return", tracked.order.order_id)
        else:
            del self.orders[tracked.order.order_id]

    def _pick_later(self, tracked: Tracked, now: float) -> None:
        self._at(now + self._rng.uniform(*self._pick), "ship", tracked.order.order_id)

    def _at(self, when: float, action: Action, order_id: str) -> None:
        heapq.heappush(self._due, (when, next(self._seq), action, order_id))
