"""A flow: the event families of one business process, and how to build their handlers.

Each flow package (``handlers.stock``, ``handlers.dispatch``, ...) declares one :class:`Flow`
in its ``__init__``: its families (event Struct, ordering key, class, deadline) and a
``build`` function that receives the :class:`FlowContext` (settings, pool, HTTP session,
telemetry and the connected external systems) and returns its :class:`FlowParts` (a handler
per event type, background tasks, a rate-limit pacer, observers of other flows' events).
``handlers.flows`` lists the flows: a new flow is one line there, a new family in an existing
flow is one :class:`Family` in its package; the engine, the router and the wiring do not change.

A flow whose system is not connected, or whose ERP lacks a capability it needs, builds no
handler for the families concerned and says so once at start-up: their events become
``no_handler`` exception records (explicit and retryable), never silently acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from config.settings import Settings
from handlers.common.router import Family
from handlers.common.telemetry import DomainTelemetry
from worker.groupcommit import GroupCommitWriter
from worker.messages import Handler
from worker.pacing import DeadlinePacer

Background = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True, kw_only=True)
class FlowContext:
    """What a flow's ``build`` may use. ``systems`` maps a system's name (``"spapi"``) to its
    connected client; ``erp`` is the connected ERP (its capabilities are protocols of
    :mod:`handlers.ports.erp`), ``erp_name`` names it in log lines."""

    settings: Settings
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    telemetry: DomainTelemetry
    erp: object | None = None
    erp_name: str = "the ERP"
    systems: Mapping[str, object] = field(default_factory=dict)
    #: The worker's Kafka producer (``send_and_wait``), for flows that publish (an outbox
    #: relay); None where nothing may be published (tools, some tests).
    producer: object | None = None
    #: The group-commit writer every flow stages its rows through (one per worker: its
    #: batches carry the rows of every flow; its ``run`` is the domain's background task).
    writer: GroupCommitWriter | None = None


@dataclass(kw_only=True)
class FlowParts:
    """What a flow built: ``handlers`` by event type, tasks to run beside the stream, and the
    pacer of a rate-limited call its urgent events wait for (at most one per worker)."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    background: list[Background] = field(default_factory=list)
    pacer: DeadlinePacer | None = None
    #: Handlers of *another* flow's event types, run after that flow's own handler (e.g. the
    #: order flow stages a delivery for every ``dispatch.confirmed``). They run only when the
    #: owner's outcome is final (done or rejected), so a retried event runs both again: an
    #: observer must be idempotent. An event type without its owner's handler stays a
    #: ``no_handler`` exception; its observers do not run.
    observers: dict[str, Handler] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Flow:
    """One business process. ``package`` is where its ``migrations/*.sql`` live (if any)."""

    name: str
    families: tuple[Family, ...]
    build: Callable[[FlowContext], FlowParts]
    package: str
    #: The ``[topics]`` settings the normal class subscribes to for this flow, when it built
    #: a handler (a flow that cannot run in this deployment leaves its topics alone).
    topics: tuple[str, ...] = ()
