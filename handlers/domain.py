"""The domain of this build, assembled from settings: handlers per family and their helpers.

A family gets a handler when its connector is configured; without one its events become
``no_handler`` exceptions (explicit and retryable), never silently acknowledged. Connectors
that need work beside the event stream (the stock window flusher) hand it back as background
tasks for the worker to run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import aiohttp
import anyio
import asyncpg

from config.settings import Settings, load_sku_map
from handlers.connectors.b1 import b1_client_from_settings
from handlers.connectors.b1_port import KEY_FIELD, B1Erp
from handlers.connectors.spapi import spapi_client_from_settings
from handlers.dispatch import DispatchHandler
from handlers.erp import ErpError, ErpPort
from handlers.families import default_families
from handlers.masterdata import MasterData
from handlers.posting import StockPoster
from handlers.router import DomainRouter
from handlers.stock import StockHandler, StockMappings
from handlers.telemetry import DomainTelemetry
from worker.backoff import Backoff
from worker.groupcommit import GroupCommitWriter
from worker.messages import Handler
from worker.pacing import DeadlinePacer
from worker.windows import WindowScheduler

log = logging.getLogger("skuflow.domain")

Background = Callable[[], Coroutine[Any, Any, None]]


def spapi_configured(settings: Settings) -> bool:
    sp = settings.spapi
    return bool(sp.client_id and sp.client_secret and sp.refresh_token)


def b1_configured(settings: Settings) -> bool:
    return settings.b1.password is not None and bool(settings.b1.password.reveal())


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


class Domain:
    def __init__(
        self,
        router: DomainRouter,
        background: list[Background],
        pacer: DeadlinePacer | None = None,
    ) -> None:
        self.router = router
        self.background = background
        #: confirmShipment's rate limiter: the urgent class picks its lanes when it grants.
        self.pacer = pacer


def build_domain(
    settings: Settings,
    pool: asyncpg.Pool,
    session: aiohttp.ClientSession,
    *,
    erp: ErpPort | None = None,
    telemetry: DomainTelemetry | None = None,
) -> Domain:
    telemetry = telemetry or DomainTelemetry()
    handlers: dict[str, Handler] = {}
    background: list[Background] = []
    pacer: DeadlinePacer | None = None
    if spapi_configured(settings):
        client = spapi_client_from_settings(settings.spapi, session, telemetry, pool)
        handlers["dispatch.confirmed"] = DispatchHandler(pool, client)
        pacer = client.pacer
    else:
        log.warning("SP-API credentials not set: dispatch confirmations become exceptions")
    if erp is None and b1_configured(settings):
        erp = B1Erp(b1_client_from_settings(settings.b1, session, key_field=KEY_FIELD))
    if erp is not None:
        skus = load_sku_map(settings.mappings.sku_map) if settings.mappings.sku_map else None
        mappings = StockMappings(skus, settings.mappings.warehouses)
        master = MasterData(erp)
        db = settings.database
        writer = GroupCommitWriter(
            pool,
            max_rows=db.batch_max_rows,
            max_wait=db.batch_max_wait_seconds,
            max_batches=db.batches_in_flight,
            meter=telemetry.meter,
        )
        handlers["stock.adjusted"] = StockHandler(pool, mappings, master, writer)
        background.append(writer.run)  # staging: many events' rows per transaction
        poster = StockPoster(
            pool,
            erp,
            max_lines=settings.stock.window_max_lines,
            backoff=Backoff(1.0, settings.stock.retry_max_seconds, 2.0),
            collision_retries=settings.stock.collision_retries,
            telemetry=telemetry,
        )
        scheduler = WindowScheduler(
            groups=poster.warehouses_with_work,
            size=poster.staged_count,
            flush=poster.flush,
            window_seconds=settings.stock.window_seconds,
            max_items=settings.stock.window_max_lines,
        )
        background.append(scheduler.run)
        background.append(lambda: check_warehouses(master, settings.mappings.warehouses))
    else:
        log.warning("SAP B1 credentials not set: stock adjustments become exceptions")
    return Domain(DomainRouter(default_families(handlers)), background, pacer)
