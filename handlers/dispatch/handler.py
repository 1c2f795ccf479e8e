"""Dispatch confirmations → Amazon ``confirmShipment``, exactly once per (order, package).

The ledger row is written *before* the call (``sending``) and after it (``confirmed``,
``retrying`` or ``rejected``):

- a row already ``confirmed``: the event is a duplicate or a redelivery — nothing is sent;
- a row left ``sending`` by a crash between the call and the ledger write: the confirmation is
  sent again with the *same* ``packageReferenceId``, which Amazon applies as an edit of that
  package, never as a second shipment;
- throttling, 5xx, timeouts and auth failures park the event (next attempt with backoff and
  jitter, the ship-by date as its deadline): the partition moves on and the park retrier
  brings it back until it is confirmed — at-risk and missed deadlines are flagged by the
  engine's urgent class, never dropped;
- a business rejection (unknown order item, quantity, carrier, order cancelled) becomes an
  exception record with Amazon's code and message: no blind retry.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from handlers.connectors.spapi.client import (
    ConfirmShipmentItem,
    PackageDetail,
    SpApiAuthError,
    SpApiClient,
    SpApiRejected,
    SpApiThrottled,
    SpApiUnavailable,
)
from handlers.dispatch.events import DispatchConfirmed
from worker.backoff import Backoff
from worker.messages import Message
from worker.outcomes import DONE, Outcome, Park, Reject

log = logging.getLogger("skuflow.dispatch")

#: Between two attempts of a parked confirmation: from seconds up to a few minutes.
PARK_BACKOFF = Backoff(initial=2.0, maximum=300.0, multiplier=2.0)


def package_of(event: DispatchConfirmed) -> PackageDetail:
    return PackageDetail(
        package_reference_id=event.package_reference_id,
        carrier_code=event.carrier_code,
        carrier_name=event.carrier_name,
        shipping_method=event.shipping_method,
        tracking_number=event.tracking_number,
        ship_date=event.ship_date,
        order_items=tuple(
            ConfirmShipmentItem(order_item_id=line.order_item_id, quantity=int(line.quantity))
            for line in event.lines
        ),
    )


class DispatchHandler:
    """The ``dispatch.confirmed`` handler for the ``amazon`` channel."""

    def __init__(
        self, pool: asyncpg.Pool, client: SpApiClient, backoff: Backoff = PARK_BACKOFF
    ) -> None:
        self._pool = pool
        self._client = client
        self._backoff = backoff

    async def __call__(self, event: DispatchConfirmed, message: Message) -> Outcome:
        if event.channel != "amazon":
            return Reject("unsupported_channel", f"no marketplace connector for {event.channel!r}")
        if await self._already_confirmed(event):
            log.info(
                "duplicate dispatch confirmation skipped",
                extra={"order_id": event.order_id, "event_id": event.event_id},
            )
            return DONE
        await self._record(event, "sending")
        try:
            result = await self._client.confirm_shipment(
                event.order_id, event.marketplace_id, package_of(event)
            )
        except SpApiRejected as exc:
            await self._record(event, "rejected", error=str(exc))
            return Reject("marketplace_rejected", f"Amazon {exc.code}: {exc.message}")
        except (SpApiThrottled, SpApiUnavailable, SpApiAuthError) as exc:
            await self._record(event, "retrying", error=str(exc))
            delay = self._backoff.delay(message.attempts)
            if isinstance(exc, SpApiThrottled):
                delay = max(delay, exc.retry_after)
            return Park(
                reason=str(exc),
                next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
                deadline=event.ship_by,
            )
        await self._record(event, "confirmed", request_id=result.request_id)
        return DONE

    async def _already_confirmed(self, event: DispatchConfirmed) -> bool:
        status = await self._pool.fetchval(
            "SELECT status FROM skuflow_shipments "
            "WHERE order_id = $1 AND package_reference_id = $2",
            event.order_id,
            event.package_reference_id,
        )
        return bool(status == "confirmed")

    async def _record(
        self,
        event: DispatchConfirmed,
        status: str,
        *,
        error: str | None = None,
        request_id: str | None = None,
    ) -> None:
        await self._pool.execute(
            """INSERT INTO skuflow_shipments
                 (order_id, package_reference_id, channel, marketplace_id, event_id,
                  tracking_number, carrier_code, ship_by, status, attempts, last_error,
                  request_id, confirmed_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11,
                       CASE WHEN $9 = 'confirmed' THEN now() END)
               ON CONFLICT (order_id, package_reference_id) DO UPDATE SET
                 status = EXCLUDED.status,
                 event_id = EXCLUDED.event_id,
                 tracking_number = EXCLUDED.tracking_number,
                 carrier_code = EXCLUDED.carrier_code,
                 attempts = skuflow_shipments.attempts
                            + CASE WHEN EXCLUDED.status = 'sending' THEN 1 ELSE 0 END,
                 last_attempt_at = now(),
                 last_error = EXCLUDED.last_error,
                 request_id = COALESCE(EXCLUDED.request_id, skuflow_shipments.request_id),
                 confirmed_at = COALESCE(EXCLUDED.confirmed_at, skuflow_shipments.confirmed_at)
               WHERE skuflow_shipments.status <> 'confirmed'""",
            event.order_id,
            event.package_reference_id,
            event.channel,
            event.marketplace_id,
            event.event_id,
            event.tracking_number,
            event.carrier_code,
            event.ship_by,
            status,
            error,
            request_id,
        )
