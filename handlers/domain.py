"""The domain of this build, assembled from settings: the external systems, then every flow.

The systems are connected first (a system without credentials is simply absent), then each
flow of :data:`handlers.flows.FLOWS` builds its handlers from them. A family without a handler
turns its events into ``no_handler`` exceptions (explicit and retryable), never silently
acknowledged; each flow says at start-up what it is missing.
"""

from __future__ import annotations

import logging

import aiohttp
import asyncpg

from config.settings import Settings
from handlers.common.flow import Background, FlowContext
from handlers.common.router import DomainRouter
from handlers.common.telemetry import DomainTelemetry
from handlers.connectors.b1.client import b1_client_from_settings
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.connectors.ecc.port import ecc_erp_from_settings
from handlers.connectors.spapi.client import spapi_client_from_settings
from handlers.flows import FLOWS, default_families
from handlers.ports.erp import capabilities
from worker.messages import Handler
from worker.pacing import DeadlinePacer

log = logging.getLogger("skuflow.domain")


def spapi_configured(settings: Settings) -> bool:
    sp = settings.spapi
    return bool(sp.client_id and sp.client_secret and sp.refresh_token)


def b1_configured(settings: Settings) -> bool:
    return settings.b1.password is not None and bool(settings.b1.password.reveal())


def ecc_configured(settings: Settings) -> bool:
    return settings.ecc.password is not None and bool(settings.ecc.password.reveal())


def connect_erp(
    settings: Settings, pool: asyncpg.Pool, session: aiohttp.ClientSession
) -> tuple[object | None, str]:
    """The configured ERP connector (``erp.kind``) and its name; None without credentials."""
    if settings.erp.kind == "ecc":
        if not ecc_configured(settings):
            return None, "SAP ECC"
        return ecc_erp_from_settings(settings.ecc, session, pool), "SAP ECC"
    if not b1_configured(settings):
        return None, "SAP B1"
    return B1Erp(b1_client_from_settings(settings.b1, session, key_field=KEY_FIELD)), "SAP B1"


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
    erp: object | None = None,
    telemetry: DomainTelemetry | None = None,
) -> Domain:
    """``erp``: an ERP connector to use instead of the configured one (tests, the bench)."""
    telemetry = telemetry or DomainTelemetry()
    systems: dict[str, object] = {}
    if spapi_configured(settings):
        systems["spapi"] = spapi_client_from_settings(settings.spapi, session, telemetry, pool)
    erp_name = "the given ERP"
    if erp is None:
        erp, erp_name = connect_erp(settings, pool, session)
    if erp is not None:
        log.info("ERP connected", extra={"erp": erp_name, "capabilities": capabilities(erp)})
    context = FlowContext(
        settings=settings,
        pool=pool,
        session=session,
        telemetry=telemetry,
        erp=erp,
        erp_name=erp_name,
        systems=systems,
    )
    handlers: dict[str, Handler] = {}
    background: list[Background] = []
    pacer: DeadlinePacer | None = None
    for flow in FLOWS:
        parts = flow.build(context)
        handlers.update(parts.handlers)
        background.extend(parts.background)
        if parts.pacer is not None:
            if pacer is not None:
                raise RuntimeError(f"flow {flow.name}: a second urgent pacer (one per worker)")
            pacer = parts.pacer
    return Domain(DomainRouter(default_families(handlers)), background, pacer)
