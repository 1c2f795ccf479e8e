"""The dispatch flow: ``dispatch.confirmed`` → Amazon ``confirmShipment``, urgent, earliest
ship-by first at Amazon's quota, exactly once per (order, package).

``events`` (the contract's Struct), ``handler`` (the ledger around the call: sending,
confirmed, retrying, rejected), ``migrations/`` (``skuflow_dispatch``). Needs the ``spapi``
system (``handlers.connectors.spapi``).
"""

from __future__ import annotations

import logging

from handlers.common.flow import Flow, FlowContext, FlowParts
from handlers.common.router import Family
from handlers.connectors.spapi.client import SpApiClient
from handlers.dispatch.events import DispatchConfirmed
from handlers.dispatch.handler import DispatchHandler

log = logging.getLogger("skuflow.domain")


def dispatch_key(event: DispatchConfirmed) -> str:
    return f"order:{event.channel}:{event.order_id}"


def build(ctx: FlowContext) -> FlowParts:
    client = ctx.systems.get("spapi")
    if not isinstance(client, SpApiClient):
        log.warning("SP-API credentials not set: dispatch confirmations become exceptions")
        return FlowParts()
    return FlowParts(
        handlers={"dispatch.confirmed": DispatchHandler(ctx.pool, client)},
        pacer=client.pacer,  # the urgent class picks its lanes when confirmShipment grants
    )


FLOW = Flow(
    name="dispatch",
    families=(
        Family(
            event=DispatchConfirmed,
            ordering_key=dispatch_key,
            priority="urgent",
            order_id=lambda event: event.order_id,
            deadline=lambda event: event.ship_by,
        ),
    ),
    build=build,
    package=__name__,
)
