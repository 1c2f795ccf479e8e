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

The hooks wrap the two connector methods in this process only; production modules carry no
test code paths.
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

T = TypeVar("T")


def _die_after(count: int, method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    done = 0

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        nonlocal done
        result = await method(*args, **kwargs)
        done += 1
        if done >= count:
            print(f"chaos: SIGKILL after {method.__qualname__} #{done}", file=sys.stderr)
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return wrapper


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


if __name__ == "__main__":
    install_hooks(dict(os.environ))
    sys.exit(main(["run", *sys.argv[1:]]))
