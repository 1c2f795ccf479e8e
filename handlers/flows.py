"""The flows of this build: adding a flow is one line in :data:`FLOWS`.

Each flow package declares its families and how to build their handlers (its ``FLOW``,
:class:`handlers.common.flow.Flow`); everything that is the same for every flow — the router's
decoder, the handler map, the migrations — is derived here.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from handlers import dispatch, orders, stock
from handlers.common.events import event_type_name
from handlers.common.flow import Flow
from handlers.common.router import Family
from worker.messages import Handler
from worker.store import Migration, package_migrations

FLOWS: tuple[Flow, ...] = (
    stock.FLOW,
    dispatch.FLOW,
    orders.FLOW,
)

#: Packages with migrations that belong to no single flow (connector state, e.g. shared
#: rate-limit buckets).
SHARED_MIGRATIONS = ("handlers.connectors", "handlers.connectors.ecc")

#: The component every domain migration is recorded under in ``skuflow_schema``; versions
#: are numbered across all flows (``NNNN_name``), so the order of the whole schema is fixed.
COMPONENT = "handlers"


def default_families(handlers: Mapping[str, Handler] | None = None) -> list[Family]:
    """Every registered family; ``handlers`` maps an event type to its handler, if any."""
    handlers = handlers or {}
    return [
        msgspec.structs.replace(family, handler=handlers.get(event_type_name(family.event)))
        for flow in FLOWS
        for family in flow.families
    ]


def event_types() -> tuple[type[object], ...]:
    """The event Structs of every registered family."""
    return tuple(family.event for flow in FLOWS for family in flow.families)


def migrations() -> list[Migration]:
    """The domain's migrations from every flow and shared package, in version order."""
    packages = [flow.package for flow in FLOWS] + list(SHARED_MIGRATIONS)
    found = [m for package in packages for m in package_migrations(package, COMPONENT)]
    versions = [m.version for m in found]
    duplicated = sorted({v for v in versions if versions.count(v) > 1})
    if duplicated:
        raise RuntimeError(f"migration versions used twice across flows: {duplicated}")
    return sorted(found, key=lambda m: m.version)
