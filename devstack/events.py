"""Contract events as producers send them: for tests and benchmarks that need a valid one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from handlers.dispatch.events import DispatchConfirmed, DispatchLine

MARKETPLACE = "A1F83G8C2ARO7P"  # Amazon.co.uk


def dispatch_payload(
    order_id: str, ship_by: datetime, *, event_id: str | None = None, sku: str = "ABC-123"
) -> bytes:
    """A ``dispatch.confirmed`` of one package with one unit of order item ``<order_id>-1``."""
    event = DispatchConfirmed(
        event_id=event_id or f"dsp-{order_id}",
        occurred_at=datetime.now(UTC),
        source="seko",
        source_ref=f"SEKO-{order_id}",
        channel="amazon",
        order_id=order_id,
        marketplace_id=MARKETPLACE,
        ship_by=ship_by,
        ship_date=datetime.now(UTC),
        carrier_code="Royal Mail",
        shipping_method="Tracked 24",
        tracking_number=f"RM{order_id[-7:]}GB",
        package_reference_id="1",
        warehouse="LOC-01",
        lines=[DispatchLine(order_item_id=f"{order_id}-1", sku=sku, quantity=Decimal(1))],
    )
    return msgspec.json.encode(event)
