"""The event families of this build and their ordering keys.

Stock movements are ordered per SKU; dispatch confirmations per marketplace order. Keys are
namespaced so a SKU and an order id that happen to be equal never share a lane.
"""

from __future__ import annotations

from collections.abc import Mapping

from handlers.events import DispatchConfirmed, StockAdjusted
from handlers.router import Family
from worker.messages import Handler


def stock_key(event: StockAdjusted) -> str:
    return f"sku:{event.sku}"


def dispatch_key(event: DispatchConfirmed) -> str:
    return f"order:{event.channel}:{event.order_id}"


def default_families(handlers: Mapping[str, Handler] | None = None) -> list[Family]:
    """The contract's families; ``handlers`` maps an event type to its handler, if any."""
    handlers = handlers or {}
    return [
        Family(
            event=StockAdjusted,
            ordering_key=stock_key,
            handler=handlers.get("stock.adjusted"),
            sku=lambda event: event.sku,
        ),
        Family(
            event=DispatchConfirmed,
            ordering_key=dispatch_key,
            handler=handlers.get("dispatch.confirmed"),
            priority="urgent",
            order_id=lambda event: event.order_id,
            deadline=lambda event: event.ship_by,
        ),
    ]
