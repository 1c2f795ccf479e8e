"""The domain of this build, assembled from settings: the external systems, then every flow.

The systems are connected first (a system without credentials is simply absent), then each
flow of :data:`handlers.flows.FLOWS` builds its handlers from them. A family without a handler
turns its events into ``no_handler`` exceptions (explicit and retryable), never silently
acknowledged; each flow says at start-up what it is missing.
"""

from __future__ import annotations

import logging
from typing import Any

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
from worker.groupcommit import GroupCommitWriter
from worker.messages import Handler, Message
from worker.outcomes import Done, Outcome, Park, Retry
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
    client = b1_client_from_settings(settings.b1, session, key_field=KEY_FIELD)
    return B1Erp(client, credit_hold_field=settings.b1.credit_hold_field or None), "SAP B1"


class Domain:
    def __init__(
        self,
        router: DomainRouter,
        background: list[Background],
        pacer: DeadlinePacer | None = None,
        *,
        services: list[Background] | None = None,
        topics: list[str] | None = None,
    ) -> None:
        self.router = router
        #: Work beside the normal class (window flushers, ERP order work): its processes only.
        self.background = background
        #: What every process needs, whatever class it runs (the group-commit writer).
        self.services = services or []
        #: Topics the normal class consumes for the flows that run (beside topics.stock).
        self.topics = topics or []
        #: confirmShipment's rate limiter: the urgent class picks its lanes when it grants.
        self.pacer = pacer


def build_domain(
    settings: Settings,
    pool: asyncpg.Pool,
    session: aiohttp.ClientSession,
    *,
    erp: object | None = None,
    telemetry: DomainTelemetry | None = None,
    producer: object | None = None,
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
    db = settings.database
    writer = GroupCommitWriter(
        pool,
        max_rows=db.batch_max_rows,
        max_wait=db.batch_max_wait_seconds,
        max_batches=db.batches_in_flight,
        meter=telemetry.meter,
    )
    context = FlowContext(
        settings=settings,
        pool=pool,
        session=session,
        telemetry=telemetry,
        erp=erp,
        erp_name=erp_name,
        systems=systems,
        producer=producer,
        writer=writer,
    )
    handlers: dict[str, Handler] = {}
    observers: dict[str, list[Handler]] = {}
    background: list[Background] = []
    pacer: DeadlinePacer | None = None
    topics: list[str] = []
    for flow in FLOWS:
        parts = flow.build(context)
        if parts.handlers:
            topics.extend(getattr(settings.topics, name) for name in flow.topics)
        handlers.update(parts.handlers)
        for event_type, observer in parts.observers.items():
            observers.setdefault(event_type, []).append(observer)
        background.extend(parts.background)
        if parts.pacer is not None:
            if pacer is not None:
                raise RuntimeError(f"flow {flow.name}: a second urgent pacer (one per worker)")
            pacer = parts.pacer
    for event_type, extra in observers.items():
        if event_type in handlers:
            handlers[event_type] = observed(handlers[event_type], extra)
    return Domain(
        DomainRouter(default_families(handlers)),
        background,
        pacer,
        services=[writer.run],
        topics=topics,
    )


def observed(owner: Handler, observers: list[Handler]) -> Handler:
    """``owner`` followed by ``observers`` (see :attr:`FlowParts.observers`): the first
    outcome that is not final (retry, park) or not done wins."""

    async def handle(event: Any, message: Message) -> Outcome:
        outcome = await owner(event, message)
        if isinstance(outcome, Retry | Park):
            return outcome
        for observer in observers:
            extra = await observer(event, message)
            if not isinstance(extra, Done):
                return extra
        return outcome

    return handle
