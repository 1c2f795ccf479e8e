"""The order flow: marketplace orders into the ERP and back — sales orders created once,
released to the warehouse only when the ERP's checks pass, deliveries and invoices from
dispatches, returns and credit notes from returns.

``events`` (in: ``order.received``/``order.changed``/``order.cancelled``, ``return.received``;
out: ``order.released``/``order.held``), ``mapping`` (order → ERP sales order, or every
reason not), ``handler`` (the ledger ``skuflow_orders``; documents staged), ``work`` (create,
cancel, watch holds, release), ``documents`` (deliveries, invoices, returns, credit notes),
``ledger`` (what they share), ``migrations/``. Needs an ERP with the ``master data``, ``sales
orders`` and ``sales deliveries`` capabilities of :mod:`handlers.ports.erp`; announcements to
the warehouse go through the worker's outbox (:mod:`worker.outbox`).
"""

from __future__ import annotations

import logging

from config.settings import load_sku_map
from handlers.common.flow import Flow, FlowContext, FlowParts
from handlers.common.mappings import Mappings
from handlers.common.masterdata import MasterData
from handlers.common.router import Family
from handlers.connectors.spapi.client import SpApiClient
from handlers.connectors.spapi.orders import orders_client_from_settings
from handlers.orders.capture import OrderCapture
from handlers.orders.documents import DocumentPoster
from handlers.orders.events import OrderCancelled, OrderChanged, OrderReceived, ReturnReceived
from handlers.orders.handler import DeliveryStager, DocumentStager, OrderHandler, ReturnHandler
from handlers.orders.ledger import Announcer
from handlers.orders.mapping import OrderMapper
from handlers.orders.work import OrderWork
from handlers.ports.erp import MasterDataSource, SalesDeliveries, SalesOrders, missing_capabilities
from worker.backoff import Backoff
from worker.outbox import OutboxRelay, Producer

log = logging.getLogger("skuflow.domain")

#: The ERP capabilities the order flow needs (names of :data:`handlers.ports.erp.CAPABILITIES`).
NEEDS = ("master data", "sales orders", "sales deliveries")


def order_key(event: OrderReceived | OrderCancelled | ReturnReceived) -> str:
    """An order's revisions, cancellation and returns share one lane, in offset order."""
    return f"order:{event.channel}:{event.order_id}"


def build(ctx: FlowContext) -> FlowParts:
    erp = ctx.erp
    if erp is None:
        return FlowParts()  # the stock flow already said the ERP is not configured
    if not (
        isinstance(erp, MasterDataSource)
        and isinstance(erp, SalesOrders)
        and isinstance(erp, SalesDeliveries)
    ):
        log.warning(
            "the ERP lacks a capability of the order flow: orders and returns become exceptions",
            extra={"erp": ctx.erp_name, "missing": missing_capabilities(erp, NEEDS)},
        )
        return FlowParts()
    if not ctx.settings.orders.default_customers:
        # Not configured for order-to-cash (no customer to create orders for): the flow stays
        # off — order and return events become no_handler exceptions, and dispatches create
        # no ERP deliveries (a stock-only deployment's dispatches are not order exceptions).
        log.info("order flow off: orders.default_customers is empty")
        return FlowParts()
    if ctx.writer is None:
        raise RuntimeError("the order flow stages through the domain's group-commit writer")
    settings, orders = ctx.settings, ctx.settings.orders
    skus = load_sku_map(settings.mappings.sku_map) if settings.mappings.sku_map else None
    mappings = Mappings(skus, settings.mappings.warehouses)
    master = MasterData(erp)
    relay = None
    if isinstance(ctx.producer, Producer):
        relay = OutboxRelay(ctx.pool, ctx.producer)
    else:
        log.warning("no Kafka producer: order announcements wait in the outbox")
    announcer = Announcer(settings.topics.released, wake=relay.wake if relay else None)
    backoff = Backoff(1.0, orders.retry_max_seconds, 2.0)
    work = OrderWork(
        ctx.pool,
        erp,
        announcer,
        batch_max_orders=orders.batch_max_orders,
        max_concurrent_writes=orders.max_concurrent_writes,
        watch_seconds=orders.watch_seconds,
        backoff=backoff,
    )
    poster = DocumentPoster(ctx.pool, erp, orders, mappings, backoff=backoff)
    stager = DocumentStager(ctx.writer, on_staged=poster.wake)
    handler = OrderHandler(ctx.pool, OrderMapper(orders, mappings, master), on_change=work.wake)
    background = [work.run, poster.run]
    if relay is not None:
        background.append(relay.run)
    capture = _capture(ctx)
    if capture is not None:
        background.append(capture.run)
    return FlowParts(
        handlers={
            "order.received": handler,
            "order.changed": handler,
            "order.cancelled": handler,
            "return.received": ReturnHandler(stager, mappings, master),
        },
        observers={"dispatch.confirmed": DeliveryStager(stager)},
        background=background,
    )


def _capture(ctx: FlowContext) -> OrderCapture | None:
    """The SP-API order poller, when ``orders.capture`` is on and SP-API is connected."""
    orders = ctx.settings.orders
    if not orders.capture:
        return None
    client = ctx.systems.get("spapi")
    if not isinstance(client, SpApiClient) or not isinstance(ctx.producer, Producer):
        log.warning("orders.capture is on, but SP-API or Kafka is not connected: no capture")
        return None
    return OrderCapture(
        ctx.pool,
        orders_client_from_settings(client, orders),
        ctx.producer,
        ctx.settings.topics.orders,
        orders,
        overlap_seconds=orders.capture_overlap_seconds,
        settle_seconds=orders.capture_settle_seconds,
        meter=ctx.telemetry.meter,
    )


FLOW = Flow(
    name="orders",
    families=tuple(
        Family(event=event, ordering_key=order_key, order_id=lambda event: event.order_id)
        for event in (OrderReceived, OrderChanged, OrderCancelled, ReturnReceived)
    ),
    build=build,
    package=__name__,
    topics=("orders", "returns"),
)
