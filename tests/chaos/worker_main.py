"""``skuflow run`` with deterministic crash points, for the chaos suite.

``python -m tests.chaos.worker_main [skuflow run arguments]`` is exactly ``skuflow run`` (the
same CLI, settings, wiring and handlers) unless one of these variables is set:

``SKUFLOW_CHAOS_KILL_AFTER_ERP_POSTS=N``
    the process SIGKILLs itself right after its N-th ERP document was created (the ERP
    answered) and *before* the posting's plan is written to PostgreSQL — the window in which a
    careless poster would post the document twice.
``SKUFLOW_CHAOS_KILL_AFTER_CONFIRMATIONS=N``
    the same after the N-th accepted Amazon ``confirmShipment``, before the shipment ledger
    says ``confirmed``.
``SKUFLOW_CHAOS_KILL_AFTER_IDOC_SENDS=N``
    SAP ECC: the process SIGKILLs itself right after ECC stored its N-th IDoc (HTTP 200) and
    before the IDoc tracker says so or its application is followed — the restarted worker
    must find the IDoc by its ARCKEY and follow it, never send a second one.
``SKUFLOW_CHAOS_KILL_AFTER_SALES_ORDERS=N`` (``..._DELIVERIES``, ``..._INVOICES``, ``..._RETURNS``)
    the order flow: the process SIGKILLs itself right after the ERP created its N-th sales
    order (B1: the order or the draft an approval procedure made of it), delivery, invoice, or
    return (a return or a credit note: the documents that take goods back and credit them) and
    *before* the order ledger (``skuflow_orders`` / ``skuflow_order_documents``) records it —
    the restarted worker must look the row left ``creating`` / ``posting`` up by its reference
    or key, never create a second document.
``SKUFLOW_CHAOS_KILL_AFTER_OUTBOX_SENDS=N``
    the same after Kafka acknowledged the N-th event the outbox relay sent (e.g.
    ``order.released``) and before its outbox row is deleted: it is published again, with
    the same event id.

The hooks wrap connector (and relay) methods in this process only; production modules carry
no test code paths.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from handlers.connectors.b1.port import B1Erp
from handlers.connectors.ecc.client import EccClient
from handlers.connectors.ecc.port import EccErp
from handlers.connectors.spapi.client import SpApiClient
from skuflow.cli import main
from worker.outbox import OutboxRelay, Producer

T = TypeVar("T")

#: The order flow's crash points: variable → the ERP port methods whose answers it counts (a
#: batch of sales orders counts the orders it created).
SALES_HOOKS = {
    "SKUFLOW_CHAOS_KILL_AFTER_SALES_ORDERS": ("create_sales_order", "create_sales_orders"),
    "SKUFLOW_CHAOS_KILL_AFTER_DELIVERIES": ("create_delivery",),
    "SKUFLOW_CHAOS_KILL_AFTER_INVOICES": ("create_invoice",),
    "SKUFLOW_CHAOS_KILL_AFTER_RETURNS": ("create_return", "create_credit_note"),
}


def _created(result: object) -> int:
    """What one answer created: one document, or a batch's documents (not its errors)."""
    if isinstance(result, list):
        return sum(1 for outcome in result if not isinstance(outcome, Exception))
    return 1


class _Countdown:
    """SIGKILLs the process once the methods it wraps have answered ``count`` times in all (a
    batch's answer counts what it created)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.done = 0

    def wrap(self, method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(method)
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            result = await method(*args, **kwargs)
            self.done += _created(result)
            if self.done >= self.count:
                print(f"chaos: SIGKILL after {method.__qualname__} #{self.done}", file=sys.stderr)
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return wrapper


def _die_after(count: int, method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    return _Countdown(count).wrap(method)


def _relay_dying_after(count: int) -> None:
    """Every outbox relay's producer dies after ``count`` acknowledged sends (in all)."""
    countdown, init = _Countdown(count), OutboxRelay.__init__

    class DyingProducer:
        def __init__(self, producer: Producer) -> None:
            self.send_and_wait = countdown.wrap(producer.send_and_wait)

    @functools.wraps(init)
    def wrapped(self: OutboxRelay, pool: Any, producer: Producer, **options: Any) -> None:
        init(self, pool, DyingProducer(producer), **options)  # type: ignore[arg-type]  # duck-typed Producer

    OutboxRelay.__init__ = wrapped  # type: ignore[method-assign]


def install_hooks(env: dict[str, str]) -> None:
    erp_posts = int(env.get("SKUFLOW_CHAOS_KILL_AFTER_ERP_POSTS") or 0)
    if erp_posts:
        B1Erp.post_document = _die_after(erp_posts, B1Erp.post_document)  # type: ignore[method-assign,assignment]
        EccErp.post_document = _die_after(erp_posts, EccErp.post_document)  # type: ignore[method-assign,assignment]
    idoc_sends = int(env.get("SKUFLOW_CHAOS_KILL_AFTER_IDOC_SENDS") or 0)
    if idoc_sends:
        EccClient.send_idoc = _die_after(idoc_sends, EccClient.send_idoc)  # type: ignore[method-assign,assignment]
    confirmations = int(env.get("SKUFLOW_CHAOS_KILL_AFTER_CONFIRMATIONS") or 0)
    if confirmations:
        SpApiClient.confirm_shipment = _die_after(  # type: ignore[method-assign,assignment]
            confirmations, SpApiClient.confirm_shipment
        )
    for variable, methods in SALES_HOOKS.items():
        count = int(env.get(variable) or 0)
        if count:
            countdown = _Countdown(count)  # one count across the methods and the ERPs
            for erp in (B1Erp, EccErp):
                for name in methods:
                    if hasattr(erp, name):  # (an ERP without batches of sales orders)
                        setattr(erp, name, countdown.wrap(getattr(erp, name)))
    outbox_sends = int(env.get("SKUFLOW_CHAOS_KILL_AFTER_OUTBOX_SENDS") or 0)
    if outbox_sends:
        _relay_dying_after(outbox_sends)


if __name__ == "__main__":
    install_hooks(dict(os.environ))
    sys.exit(main(["run", *sys.argv[1:]]))
