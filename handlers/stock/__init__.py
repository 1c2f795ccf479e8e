"""The stock flow: ``stock.adjusted`` and ``stock.transferred`` → validated, staged, netted,
posted to the ERP in summarised documents (one per warehouse per window; transfers as
transfers).

``events`` (the contract's Struct), ``handler`` (validation against mappings and master data,
staging through the group-commit writer), ``netting`` (a window's movements → document lines),
``posting`` (the window flusher: documents, retries, collisions, exception records),
``migrations/`` (``skuflow_stock_lines``, ``skuflow_postings``). Needs an ERP with the
``master data`` and ``stock documents`` capabilities of :mod:`handlers.ports.erp`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio

from config.settings import load_sku_map
from handlers.common.flow import Flow, FlowContext, FlowParts
from handlers.common.mappings import Mappings as StockMappings
from handlers.common.masterdata import MasterData
from handlers.common.router import Family
from handlers.ports.erp import ErpError, MasterDataSource, StockDocuments, missing_capabilities
from handlers.stock.events import StockAdjusted, StockTransferred
from handlers.stock.handler import StockHandler
from handlers.stock.posting import StockPoster
from worker.backoff import Backoff
from worker.windows import WindowScheduler

log = logging.getLogger("skuflow.domain")


#: The ERP capabilities the stock flow needs (names of :data:`handlers.ports.erp.CAPABILITIES`).
NEEDS = ("master data", "stock documents")


def stock_key(event: StockAdjusted | StockTransferred) -> str:
    """Adjustments and transfers of a SKU share one lane: they take effect in offset order."""
    return f"sku:{event.sku}"


async def check_warehouses(master: MasterData, warehouses: Mapping[str, str]) -> None:
    """At start-up: every mapped ERP warehouse must exist (retrying while the ERP is down).

    An unknown one is reported loudly once; its movements become ``unknown_warehouse``
    exceptions, so nothing is lost while the mapping or the ERP is fixed.
    """
    backoff = Backoff(1.0, 60.0)
    for location, code in sorted(warehouses.items()):
        attempt = 0
        while True:
            try:
                found = await master.warehouse(code)
                break
            except ErpError as exc:
                attempt += 1
                log.warning("ERP not reachable for the warehouse check", extra={"error": str(exc)})
                await anyio.sleep(backoff.delay(attempt))
        if found is None:
            log.error(
                "mapped warehouse does not exist in the ERP",
                extra={"location": location, "warehouse": code},
            )


def build(ctx: FlowContext) -> FlowParts:
    erp = ctx.erp
    if erp is None:
        log.warning("%s credentials not set: stock adjustments become exceptions", ctx.erp_name)
        return FlowParts()
    if not (isinstance(erp, MasterDataSource) and isinstance(erp, StockDocuments)):
        log.warning(
            "the ERP lacks a capability of the stock flow: stock adjustments become exceptions",
            extra={"erp": ctx.erp_name, "missing": missing_capabilities(erp, NEEDS)},
        )
        return FlowParts()
    settings = ctx.settings
    skus = load_sku_map(settings.mappings.sku_map) if settings.mappings.sku_map else None
    mappings = StockMappings(skus, settings.mappings.warehouses)
    master = MasterData(erp)
    writer = ctx.writer
    if writer is None:
        raise RuntimeError("the stock flow stages through the domain's group-commit writer")
    poster = StockPoster(
        ctx.pool,
        erp,
        max_lines=settings.stock.window_max_lines,
        backoff=Backoff(1.0, settings.stock.retry_max_seconds, 2.0),
        collision_retries=settings.stock.collision_retries,
        telemetry=ctx.telemetry,
    )
    scheduler = WindowScheduler(
        groups=poster.warehouses_with_work,
        size=poster.staged_count,
        flush=poster.flush,
        window_seconds=settings.stock.window_seconds,
        max_items=settings.stock.window_max_lines,
    )
    handler = StockHandler(ctx.pool, mappings, master, writer)
    return FlowParts(
        handlers={"stock.adjusted": handler, "stock.transferred": handler},
        background=[
            scheduler.run,
            lambda: check_warehouses(master, settings.mappings.warehouses),
        ],
    )


FLOW = Flow(
    name="stock",
    families=(
        Family(event=StockAdjusted, ordering_key=stock_key, sku=lambda event: event.sku),
        Family(event=StockTransferred, ordering_key=stock_key, sku=lambda event: event.sku),
    ),
    build=build,
    package=__name__,
)
