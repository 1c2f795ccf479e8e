"""Order capture: Amazon orders (Orders API v2026-01-01 ``searchOrders``) into ``topics.orders``.

:class:`OrderCapture` runs in every replica; one of them polls for a seller account at a time.

* **Leadership.** A PostgreSQL session advisory lock (``pg_try_advisory_lock``, key derived
  from ``orders.seller_id``) taken on a pool connection held while leading. A follower tries
  again every ``follower_retry_seconds``. Losing that connection (terminated, or a liveness
  ``SELECT 1`` failing every ``lease_check_seconds``) stops polling and publishing at once.
  Each leadership increments the seller's ``epoch`` (``SELECT ... FOR UPDATE``, so it waits
  for a deposed leader's transaction in flight); every write and every relay batch checks the
  epoch under a row lock, so a deposed leader that has not noticed yet cannot write or
  publish beside the new one.
* **Cursor.** Per seller: ``reached`` (every order updated up to there has been read) and the
  search in progress — its window and ``paginationToken`` — so a restart mid-pagination
  continues with the next page. A window is ``lastUpdatedAfter = reached - overlap`` to
  ``lastUpdatedBefore = now - settle``: ``settle`` (130 s) respects the model's rule that a
  ``*Before`` is at least two minutes before the request, with 10 s for clock skew; the
  ``overlap`` (600 s) reads again what a previous window covered, because an order's
  ``lastUpdatedTime`` may lie in the past when the search index shows it (eventual
  consistency): an order that became visible up to ``overlap + settle`` (12 min) after its
  update is still caught. Reading an order twice is harmless (the revision check). A token
  Amazon refuses (expired after 24 h, undecodable) restarts its window from its
  ``lastUpdatedAfter``. When the window's last page is read, ``reached`` moves to its
  ``lastUpdatedBefore``.
* **Nothing missed, nothing published twice for one revision.** Per order the last revision
  decided on (``lastUpdatedTime``). In one transaction: the page's events go to the outbox
  (event id ``amazon-order-<orderId>-<revision µs>``, unique), the revisions and the cursor
  advance. First sight → ``order.received``; a later revision → ``order.changed``;
  fulfilment status CANCELLED → ``order.cancelled``; the same or an older revision → nothing.
  PENDING / PENDING_AVAILABILITY revisions (payment not authorised: no prices) are not
  published and not recorded, so the first one that is UNSHIPPED (or later) is the
  ``order.received``. An order first seen CANCELLED was never published: recorded, not
  published; after a cancellation nothing more is published. Orders fulfilled by Amazon are
  published too (``fulfilled_by="AMAZON"``: the flow decides).
* **Relay.** The leader publishes the outbox in order (key: the order id; value: the event's
  JSON, ``type`` included) and deletes what Kafka acknowledged in the batch's transaction. A
  stop (or a lost leadership) lets the send in flight finish, up to ``send_timeout``, and
  deletes what was acknowledged before it lets go. The one window where a revision is sent
  twice: the process dies between Kafka's acknowledgement and that commit (or a send in flight
  outlives ``send_timeout`` at a stop); the next leader sends the same event ids again and
  consumers drop them as duplicates.

Instruments: ``skuflow.orders.captured`` (events written to the outbox, by ``type``),
``skuflow.orders.capture.lag`` (seconds from ``reached`` to now while leading) and
``skuflow.orders.capture.leader`` (1 while this process leads the seller).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import asyncpg
import msgspec
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from config.settings import OrdersSettings
from handlers.connectors.spapi.client import SpApiError, SpApiRejected
from handlers.connectors.spapi.orders import Money, Order, OrderItem, OrdersPage
from handlers.orders.events import OrderCancelled, OrderChanged, OrderLine, OrderReceived
from worker.sinks import DeadLetterProducer

log = logging.getLogger("skuflow.orders.capture")

CHANNEL = SOURCE = "amazon"
#: Seconds a window reads again before the cursor (late-visible orders; a setting to come).
OVERLAP_SECONDS = 600.0
#: Seconds between a window's end and now: the model's two minutes and 10 s of clock skew.
SETTLE_SECONDS = 130.0
#: Fulfilment statuses whose orders are not published yet (no prices before UNSHIPPED).
UNPAID = frozenset({"PENDING", "PENDING_AVAILABILITY"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
_ENCODE = msgspec.json.Encoder().encode

CaptureEvent = OrderReceived | OrderChanged | OrderCancelled


class OrderSource(Protocol):
    """What the poller calls: :class:`handlers.connectors.spapi.orders.OrdersClient`."""

    async def search_orders(
        self,
        *,
        last_updated_after: datetime | None = None,
        last_updated_before: datetime | None = None,
        marketplace_ids: Sequence[str] = (),
        max_results_per_page: int | None = None,
        pagination_token: str | None = None,
    ) -> OrdersPage: ...


@dataclass(frozen=True)
class Cursor:
    """Where a seller's capture stands: ``reached``, and the search in progress, if any."""

    reached: datetime
    window: tuple[datetime, datetime] | None = None  # (lastUpdatedAfter, lastUpdatedBefore)
    token: str | None = None  # the next page of that window


@dataclass(frozen=True)
class Known:
    """An order's last revision decided on, and its status then."""

    revision: datetime
    status: str


class _Deposed(Exception):
    """Another replica took the leadership over: this one must stop writing."""


def lock_key(seller_id: str) -> int:
    """The seller's advisory lock: a signed 64-bit key (PostgreSQL bigint)."""
    digest = hashlib.sha256(f"skuflow.orders.capture:{seller_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def event_id(order_id: str, revision: datetime) -> str:
    return f"amazon-order-{order_id}-{(revision - _EPOCH) // timedelta(microseconds=1)}"


def decide(order: Order, known: Known | None) -> tuple[CaptureEvent | None, bool]:
    """The event one revision of ``order`` publishes (or None), and whether to record it."""
    status = order.fulfillment.fulfillment_status if order.fulfillment else None
    if status is None:  # (searched without includedData=FULFILLMENT)
        log.warning("order %s without a fulfillment status: not captured", order.order_id)
        return None, False
    if known is not None and order.last_updated_time <= known.revision:
        return None, False  # a replay (overlap, restart): decided already
    if status in UNPAID:
        return None, False
    if known is None or known.status == "CANCELLED":
        if status == "CANCELLED" or known is not None:
            return None, True  # never published, or cancelled already: nothing to tell
        return revision_event(order, OrderReceived), True
    if status == "CANCELLED":
        return cancelled_event(order), True
    return revision_event(order, OrderChanged), True


def _common(order: Order) -> dict[str, Any]:
    revision = order.last_updated_time
    return {
        "event_id": event_id(order.order_id, revision),
        "occurred_at": revision,
        "source": SOURCE,
        "source_ref": order.order_id,
        "channel": CHANNEL,
        "order_id": order.order_id,
        "marketplace_id": order.sales_channel.marketplace_id or order.sales_channel.channel_name,
        "revision": revision,
    }


def cancelled_event(order: Order) -> OrderCancelled:
    reasons = (item.cancel_reason for item in order.order_items)
    return OrderCancelled(**_common(order), reason=next((r for r in reasons if r), None))


def revision_event(order: Order, kind: type[OrderReceived]) -> OrderReceived:
    """``order`` (v2026) as an ``order.received`` or (``kind``) ``order.changed``; its lines
    without the items cancelled (quantity 0)."""
    fulfillment = order.fulfillment
    assert fulfillment is not None  # (decide() publishes none without it)
    window = fulfillment.ship_by_window
    lines = [_line(item) for item in order.order_items if item.quantity_ordered > 0]
    prices = [m for item in order.order_items for m in (item.unit_price, item.item_tax) if m]
    return kind(
        **_common(order),
        purchased_at=order.created_time,
        status=fulfillment.fulfillment_status,
        fulfilled_by="AMAZON" if fulfillment.fulfilled_by == "AMAZON" else "MERCHANT",
        ship_by=window.latest_date_time if window else None,
        currency=prices[0].currency_code if prices else None,
        lines=lines,
    )


def _line(item: OrderItem) -> OrderLine:
    def amount(money: Money | None) -> Decimal | None:
        return money.amount if money is not None else None

    return OrderLine(
        order_item_id=item.order_item_id,
        sku=item.product.seller_sku or item.product.asin or "",
        quantity=Decimal(item.quantity_ordered),
        unit_price=amount(item.unit_price),
        item_tax=amount(item.item_tax),
        promotion_discount=amount(item.promotion_discount),
        tax_code=item.reporting_scheme,  # IOSS / UOSS: the only tax classification v2026 has
    )


class OrderCapture:
    """The poller and relay of one seller account; ``run()`` until cancelled (module doc)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: OrderSource,
        producer: DeadLetterProducer,
        topic: str,
        settings: OrdersSettings,
        *,
        overlap_seconds: float = OVERLAP_SECONDS,
        settle_seconds: float = SETTLE_SECONDS,
        follower_retry_seconds: float = 5.0,
        lease_check_seconds: float = 2.0,
        relay_batch: int = 100,
        send_timeout: float = 10.0,
        meter: metrics.Meter | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool, self._source, self._producer, self._topic = pool, client, producer, topic
        self._seller = settings.seller_id
        self._marketplaces = tuple(settings.marketplace_ids)
        self._page_size = settings.capture_page_size
        self._poll = settings.capture_poll_seconds
        self._lookback = timedelta(seconds=settings.capture_lookback_seconds)
        self._overlap = timedelta(seconds=overlap_seconds)
        self._settle = timedelta(seconds=settle_seconds)
        self._retry, self._lease_check = follower_retry_seconds, lease_check_seconds
        self._relay_batch, self._send_timeout, self._now = relay_batch, send_timeout, now
        self._key = lock_key(self._seller)
        self._identity = f"{socket.gethostname()}:{os.getpid()}"
        self._epoch = 0
        self._scope: anyio.CancelScope | None = None
        self._wake: anyio.Event | None = None  # set when the outbox has new rows
        self.cursor: Cursor | None = None  # while leading
        self.leading = False
        meter = meter or metrics.get_meter("skuflow.handlers")
        self._captured = meter.create_counter(
            "skuflow.orders.captured",
            unit="{event}",
            description="Order events written to the outbox by the order poller, by type.",
        )
        meter.create_observable_gauge(
            "skuflow.orders.capture.lag",
            callbacks=[self._observe_lag],
            unit="s",
            description="Seconds from the order poller's cursor to now, while it leads.",
        )
        meter.create_observable_gauge(
            "skuflow.orders.capture.leader",
            callbacks=[self._observe_leader],
            unit="{process}",
            description="1 while this process polls the seller's orders.",
        )

    def __repr__(self) -> str:
        return f"OrderCapture(seller={self._seller!r}, topic={self._topic!r})"

    # --- leadership ---

    async def run(self) -> None:
        """Lead when the seller's lock is free, else stand by; forever (cancel to stop)."""
        standing_by = False
        while True:
            try:
                led = await self._lead()
            except _DB_ERRORS as exc:
                led = False
                log.warning(
                    "order capture: PostgreSQL unavailable (%s: %s)", type(exc).__name__, exc
                )
            if led:  # and lost: a replica whose connection just failed lets the others go first
                standing_by = False
                await anyio.sleep(3 * self._retry)
                continue
            if not standing_by:
                standing_by = True
                log.info("order capture: another replica polls seller %s", self._seller)
            await anyio.sleep(self._retry)

    async def _lead(self) -> bool:
        """Lead while the lock's connection lives; False: another replica holds the lock."""
        async with self._pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key):
                return False
            lost = anyio.Event()

            def terminated(_connection: object) -> None:
                lost.set()

            conn.add_termination_listener(terminated)
            why = "stopped"
            try:
                self.cursor = await self._take_over()
                self.leading = True
                log.info(
                    "order capture: leading seller %s (epoch %d, orders updated since %s)",
                    *(self._seller, self._epoch, self.cursor.reached.isoformat()),
                )
                async with anyio.create_task_group() as tg:
                    self._scope = tg.cancel_scope
                    tg.start_soon(self._watch, conn, lost)
                    tg.start_soon(self._poll_loop)
                    tg.start_soon(self._relay_loop)
                why = "its PostgreSQL connection was lost" if lost.is_set() else "deposed"
            finally:
                with contextlib.suppress(asyncpg.InterfaceError):  # (gone with the connection)
                    conn.remove_termination_listener(terminated)
                if self.leading:
                    level = logging.INFO if why == "stopped" else logging.WARNING
                    log.log(
                        level, "order capture: no longer leading seller %s: %s", self._seller, why
                    )
                self.leading, self.cursor, self._scope = False, None, None
                with anyio.move_on_after(2, shield=True), contextlib.suppress(*_DB_ERRORS):
                    if not conn.is_closed():
                        await conn.execute("SELECT pg_advisory_unlock($1)", self._key)
            return True

    async def _watch(self, conn: asyncpg.Connection, lost: anyio.Event) -> None:
        """Returns (ending the leadership) once the lock's connection is gone."""
        while not lost.is_set():
            with anyio.move_on_after(self._lease_check):
                await lost.wait()
            if lost.is_set():
                break
            try:
                with anyio.fail_after(self._lease_check):
                    await conn.fetchval("SELECT 1")
            except _DB_ERRORS:
                conn.terminate()  # the server drops the lock when it sees the session go
                lost.set()
        self._stop()

    def _stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def _deposed(self, exc: _Deposed) -> None:
        log.warning("order capture: another replica took seller %s over (%s)", self._seller, exc)
        self._stop()

    async def _take_over(self) -> Cursor:
        """A new epoch (after any transaction of the previous leader), and the cursor."""
        async with self._pool.acquire() as conn, conn.transaction():
            start = self._now() - self._lookback
            await conn.execute(
                "INSERT INTO skuflow_order_capture (seller, reached) VALUES ($1, $2) "
                "ON CONFLICT (seller) DO NOTHING",
                *(self._seller, start),
            )
            row = await conn.fetchrow(
                "SELECT reached, window_after, window_before, page_token, epoch "
                "FROM skuflow_order_capture WHERE seller = $1 FOR UPDATE",
                self._seller,
            )
            assert row is not None
            self._epoch = row["epoch"] + 1
            await conn.execute(
                "UPDATE skuflow_order_capture SET epoch = $2, leader = $3, led_since = now() "
                "WHERE seller = $1",
                *(self._seller, self._epoch, self._identity),
            )
        after, before = row["window_after"], row["window_before"]
        window = (after, before) if after is not None and before is not None else None
        return Cursor(row["reached"], window, row["page_token"])

    async def _fence(self, conn: asyncpg.Connection, lock: str) -> None:
        """Lock the seller's row (``lock``: FOR NO KEY UPDATE to write the cursor, FOR KEY
        SHARE to publish) and raise :class:`_Deposed` when another leadership began."""
        epoch = await conn.fetchval(
            f"SELECT epoch FROM skuflow_order_capture WHERE seller = $1 FOR {lock}", self._seller
        )
        if epoch != self._epoch:
            raise _Deposed(f"epoch {epoch} began after {self._epoch}")

    # --- polling ---

    async def _poll_loop(self) -> None:
        while True:
            try:
                more = await self._poll_page()
            except _Deposed as exc:
                self._deposed(exc)
                return
            except (SpApiError, *_DB_ERRORS) as exc:
                log.warning("order capture: polling failed (%s); again in %gs", exc, self._poll)
                more = False
            if not more:
                await anyio.sleep(self._poll)

    async def _poll_page(self) -> bool:
        """Read one page and commit it; True when the window has more pages."""
        cursor = self.cursor
        assert cursor is not None
        if cursor.window is None:
            before = self._now().replace(microsecond=0) - self._settle
            if before <= cursor.reached:
                return False  # not due yet
            cursor = replace(cursor, window=(cursor.reached - self._overlap, before), token=None)
        assert cursor.window is not None
        after, before = cursor.window
        try:
            page = await self._source.search_orders(
                last_updated_after=after,
                last_updated_before=before,
                marketplace_ids=self._marketplaces,
                max_results_per_page=self._page_size,
                pagination_token=cursor.token,
            )
        except SpApiRejected as refused:
            if cursor.token is None:
                raise
            log.warning(
                "order capture: Amazon refused the paginationToken (%s); searching %s..%s "
                "again from its start",
                *(refused, after.isoformat(), before.isoformat()),
            )
            self.cursor = replace(cursor, token=None)
            return True
        if page.next_token is not None:
            advanced = replace(cursor, token=page.next_token)
        else:
            bound = min(before, page.last_updated_before or before)
            advanced = Cursor(max(cursor.reached, bound))
        await self._commit(page.orders, advanced)
        self.cursor = advanced
        if self._wake is not None:
            self._wake.set()
        return page.next_token is not None

    async def _commit(self, orders: Sequence[Order], cursor: Cursor) -> None:
        """The page's events into the outbox, its revisions and the cursor: one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._fence(conn, "NO KEY UPDATE")
            rows = await conn.fetch(
                "SELECT order_id, revision, status FROM skuflow_order_capture_revisions "
                "WHERE seller = $1 AND order_id = ANY($2::text[])",
                *(self._seller, [order.order_id for order in orders]),
            )
            known = {r["order_id"]: Known(r["revision"], r["status"]) for r in rows}
            events: list[CaptureEvent] = []
            revisions: list[tuple[str, str, datetime, str, str | None]] = []
            for order in orders:
                event, record = decide(order, known.get(order.order_id))
                if not record:
                    continue
                assert order.fulfillment is not None
                status = order.fulfillment.fulfillment_status
                known[order.order_id] = Known(order.last_updated_time, status)
                kind = _tag(event) if event is not None else None
                revisions.append(
                    (self._seller, order.order_id, order.last_updated_time, status, kind)
                )
                if event is not None:
                    events.append(event)
            await conn.executemany(
                "INSERT INTO skuflow_order_outbox "
                "(seller, event_id, order_id, event_type, payload) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (event_id) DO NOTHING",
                [(self._seller, e.event_id, e.order_id, _tag(e), _ENCODE(e)) for e in events],
            )
            await conn.executemany(
                "INSERT INTO skuflow_order_capture_revisions AS r "
                "(seller, order_id, revision, status, last_event) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (seller, order_id) DO UPDATE SET revision = EXCLUDED.revision, "
                "status = EXCLUDED.status, updated_at = now(), "
                "last_event = COALESCE(EXCLUDED.last_event, r.last_event) "
                "WHERE r.revision < EXCLUDED.revision",
                revisions,
            )
            after, before = cursor.window or (None, None)
            await conn.execute(
                "UPDATE skuflow_order_capture SET reached = $2, window_after = $3, "
                "window_before = $4, page_token = $5, updated_at = now() WHERE seller = $1",
                *(self._seller, cursor.reached, after, before, cursor.token),
            )
        for event in events:
            self._captured.add(1, {"type": _tag(event)})

    # --- the outbox relay ---

    async def _relay_loop(self) -> None:
        backoff = 0.0
        while True:
            self._wake = wake = anyio.Event()  # commits from now on wake the next round
            try:
                sent = await self._relay_once()
                backoff = 0.0
            except _Deposed as exc:
                self._deposed(exc)
                return
            except Exception as exc:  # (Kafka's and PostgreSQL's errors alike: retried)
                backoff = min(30.0, max(0.5, backoff * 2))
                log.warning("order capture: publishing failed (%s); again in %gs", exc, backoff)
                await anyio.sleep(backoff)
                continue
            if sent < self._relay_batch:
                with anyio.move_on_after(1.0):
                    await wake.wait()

    async def _relay_once(self) -> int:
        """Publish the oldest outbox rows in order; delete those Kafka acknowledged."""
        async with self._pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            acked: list[int] = []
            try:
                await self._fence(conn, "KEY SHARE")
                rows = await conn.fetch(
                    "SELECT seq, order_id, payload FROM skuflow_order_outbox WHERE seller = $1 "
                    "ORDER BY seq LIMIT $2",
                    *(self._seller, self._relay_batch),
                )
                for row in rows:
                    # A stop lets the send in flight finish (its ack decides whether the row
                    # goes) and lands between two sends.
                    with anyio.move_on_after(self._send_timeout, shield=True) as sending:
                        await self._producer.send_and_wait(
                            self._topic, value=bytes(row["payload"]), key=row["order_id"].encode()
                        )
                    if sending.cancelled_caught:
                        raise TimeoutError(f"no acknowledgement within {self._send_timeout:g}s")
                    acked.append(row["seq"])
                    await anyio.lowlevel.checkpoint()
                return len(rows)
            finally:
                with anyio.move_on_after(5, shield=True), contextlib.suppress(*_DB_ERRORS):
                    if acked:
                        await conn.execute(
                            "DELETE FROM skuflow_order_outbox WHERE seq = ANY($1::bigint[])", acked
                        )
                        await transaction.commit()
                    else:
                        await transaction.rollback()

    # --- instruments ---

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        cursor = self.cursor
        if cursor is None:
            return []
        lag = (self._now() - cursor.reached).total_seconds()
        return [Observation(lag, {"skuflow.seller": self._seller})]

    def _observe_leader(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(int(self.leading), {"skuflow.seller": self._seller})]


def _tag(event: CaptureEvent) -> str:
    return str(type(event).__struct_config__.tag)
