"""The order flow's background work: ERP sales orders created, cancelled and watched.

One replica at a time does a cycle (a PostgreSQL advisory lock per cycle; the others skip
it), woken by a new order or every second:

1. **Create** the orders waiting (``received``), so a peak never overwhelms the ERP: where
   the ERP creates many per round trip (:class:`~handlers.ports.erp.BatchSalesOrders`, B1's
   ``$batch``), in batches of up to ``orders.batch_max_orders`` (and the ERP's own limit),
   ``orders.max_concurrent_writes`` batches at once; elsewhere one order per call, at most
   ``orders.batch_max_orders`` per cycle and ``orders.max_concurrent_writes`` calls at once.
   A row is marked ``creating`` (under its row lock) before it is sent; a row found
   ``creating`` (a crash or a lost answer) is looked up by its reference first — an order is
   created once. Each order's outcome is recorded alike, batched or not: locks and outages
   wait with jittered backoff; a refusal is an ``erp_rejected`` exception on that order only.
2. **Cancel** the orders the marketplace cancelled (``cancelling``); a released one is also
   announced ``order.held`` so the warehouse stops picking it.
3. **Watch** the open orders' ERP state every ``orders.watch_seconds`` (and right after they
   were created): an order is **released** (``order.released`` to the warehouse, once) only
   when the ERP names no hold; a released order the ERP puts on hold is announced
   ``order.held``; released again later when the hold is lifted. Held orders never reach the
   warehouse. The announcements go through the outbox in the same transaction as the state
   change.

Orders fulfilled by Amazon (FBA) are created in the ERP but never released: Amazon ships them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import anyio
import asyncpg
import msgspec

from handlers.orders.ledger import (
    Announcer,
    Cycles,
    encode_ref,
    leading,
    next_attempt,
    record_exception,
    ref_of,
)
from handlers.ports.erp import (
    BatchSalesOrders,
    ErpDuplicateEntry,
    ErpError,
    ErpRejected,
    SalesOrder,
    SalesOrderRef,
    SalesOrders,
    SalesOrderState,
)
from worker.backoff import Backoff
from worker.exceptions import ExceptionStore

log = logging.getLogger("skuflow.orders")

#: Orders whose ERP state is read in one call.
WATCH_CHUNK = 100
#: A cycle runs at least this often (the watch has its own, longer period).
CYCLE_SECONDS = 1.0
#: Why the warehouse must stop picking an order the marketplace cancelled.
CANCELLED_HOLD = "cancelled by the marketplace"


class _Claim(NamedTuple):
    """An order marked ``creating`` for this cycle; ``sent``: it was sent before."""

    channel: str
    order_id: str
    order: SalesOrder
    sent: bool
    attempts: int


class OrderWork:
    def __init__(
        self,
        pool: asyncpg.Pool,
        erp: SalesOrders,
        announcer: Announcer,
        *,
        batch_max_orders: int = 50,
        max_concurrent_writes: int = 4,
        watch_seconds: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._pool = pool
        self._erp = erp
        self._announcer = announcer
        self._batch = batch_max_orders
        self._writes = anyio.CapacityLimiter(max_concurrent_writes)
        self._watch_seconds = watch_seconds
        self._backoff = backoff or Backoff(1.0, 120.0, 2.0)
        self._exceptions = ExceptionStore(pool)
        self._cycles = Cycles("order work", CYCLE_SECONDS, self._backoff)
        self._watched_at = 0.0
        self.created = 0

    def wake(self) -> None:
        self._cycles.wake()

    async def run(self) -> None:
        await self._cycles.run(self.cycle)

    async def cycle(self, *, watch: bool | None = None) -> None:
        """One turn: create, cancel, watch (``watch`` None: when its period is due)."""
        async with leading(self._pool, "work") as turn:
            if turn is None:
                return
            created = await self._create_waiting()
            await self._cancel_waiting()
            due = time.monotonic() - self._watched_at >= self._watch_seconds
            if watch or (watch is None and (due or created)):
                await self.watch(only=created if (created and not due and watch is None) else None)

    # --- 1. create ---

    async def _create_waiting(self) -> list[str]:
        """The orders due created; with an ERP that takes many per round trip
        (:class:`BatchSalesOrders`), in batches of up to ``batch_max_orders``, at most
        ``max_concurrent_writes`` batches in flight."""
        erp = self._erp
        per_cycle = self._batch * int(self._writes.total_tokens)
        rows = await self._pool.fetch(
            """SELECT channel, order_id FROM skuflow_orders
               WHERE state IN ('received', 'creating') AND next_attempt_at <= now()
               ORDER BY next_attempt_at LIMIT $1""",
            per_cycle if isinstance(erp, BatchSalesOrders) else self._batch,
        )
        created: list[str] = []
        if isinstance(erp, BatchSalesOrders):
            await self._create_batched(erp, rows, created)
            return created

        async def one(channel: str, order_id: str) -> None:
            async with self._writes:
                if await self._create(channel, order_id):
                    created.append(order_id)

        async with anyio.create_task_group() as tg:
            for row in rows:
                tg.start_soon(one, row["channel"], row["order_id"])
        return created

    async def _create(self, channel: str, order_id: str) -> bool:
        async with self._pool.acquire() as conn:
            claim = await self._claim(conn, channel, order_id)
            if claim is None:
                return False
            order = claim.order
            try:
                ref = await self._erp.find_sales_order(order.reference) if claim.sent else None
                outcome: SalesOrderRef | ErpError = ref or await self._erp.create_sales_order(order)
            except ErpError as exc:
                outcome = exc
            except ValueError as exc:  # the connector cannot express it (a field too long)
                outcome = unsendable(exc)
            return await self._record(conn, claim, await self._after_duplicate(order, outcome))

    async def _create_batched(
        self, erp: BatchSalesOrders, rows: Sequence[asyncpg.Record], created: list[str]
    ) -> None:
        """Each row claimed; one sent before (its answer may have been lost) looked up by its
        reference first; the others sent in batches; every outcome recorded as
        :meth:`_create` records it."""
        claims: list[_Claim] = []
        async with self._pool.acquire() as conn:
            for row in rows:
                claim = await self._claim(conn, row["channel"], row["order_id"])
                if claim is not None:
                    claims.append(claim)
        size = max(1, min(self._batch, erp.max_batch_orders))
        unsent = [claim for claim in claims if not claim.sent]

        async def record(claim: _Claim, outcome: SalesOrderRef | ErpError) -> None:
            outcome = await self._after_duplicate(claim.order, outcome)
            async with self._pool.acquire() as conn:
                if await self._record(conn, claim, outcome):
                    created.append(claim.order_id)

        async def look_up(claim: _Claim) -> None:
            async with self._writes:
                try:
                    ref = await self._erp.find_sales_order(claim.order.reference)
                except ErpError as exc:
                    await record(claim, exc)
                    return
            if ref is not None:
                await record(claim, ref)
            else:
                unsent.append(claim)

        async def send(chunk: list[_Claim]) -> None:
            async with self._writes:
                try:
                    outcomes = await erp.create_sales_orders([claim.order for claim in chunk])
                except ValueError:  # one order the connector cannot express: each on its own
                    outcomes = [await self._one_of(claim.order) for claim in chunk]
            for claim, outcome in zip(chunk, outcomes, strict=True):
                await record(claim, outcome)

        async with anyio.create_task_group() as tg:
            for claim in claims:
                if claim.sent:
                    tg.start_soon(look_up, claim)
        async with anyio.create_task_group() as tg:
            for start in range(0, len(unsent), size):
                tg.start_soon(send, unsent[start : start + size])

    async def _one_of(self, order: SalesOrder) -> SalesOrderRef | ErpError:
        try:
            return await self._erp.create_sales_order(order)
        except ErpError as exc:
            return exc
        except ValueError as exc:
            return unsendable(exc)

    async def _claim(self, conn: asyncpg.Connection, channel: str, order_id: str) -> _Claim | None:
        """The order marked ``creating`` under its row lock, unless it changed meanwhile
        (cancelled); ``sent``: it was ``creating`` already (sent before)."""
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT state, sales_order, attempts FROM skuflow_orders "
                "WHERE channel = $1 AND order_id = $2 FOR UPDATE",
                channel,
                order_id,
            )
            if row is None or row["state"] not in ("received", "creating"):
                return None
            await conn.execute(
                "UPDATE skuflow_orders SET state = 'creating', updated_at = now() "
                "WHERE channel = $1 AND order_id = $2",
                channel,
                order_id,
            )
        order = msgspec.json.decode(row["sales_order"], type=SalesOrder)
        return _Claim(channel, order_id, order, row["state"] == "creating", row["attempts"])

    async def _after_duplicate(
        self, order: SalesOrder, outcome: SalesOrderRef | ErpError
    ) -> SalesOrderRef | ErpError:
        """A duplicate-key refusal (-2035) is the order itself when it is found by its
        reference (an earlier attempt reached the ERP), else the refusal."""
        if not isinstance(outcome, ErpDuplicateEntry):
            return outcome
        try:
            return await self._erp.find_sales_order(order.reference) or outcome
        except ErpError as exc:
            return exc

    async def _record(
        self, conn: asyncpg.Connection, claim: _Claim, outcome: SalesOrderRef | ErpError
    ) -> bool:
        """An ERP answer for a claimed order: created (its reference; ``in_erp``, or
        ``closed`` for one Amazon fulfils), refused (an ``erp_rejected`` exception), or not
        now (backoff; ambiguous ones stay ``creating``, looked up by reference next time).
        True when created."""
        channel, order_id = claim.channel, claim.order_id
        if isinstance(outcome, ErpRejected):
            await self._refused(conn, channel, order_id, outcome)
            return False
        if isinstance(outcome, ErpError):
            attempts = claim.attempts + 1
            await conn.execute(
                """UPDATE skuflow_orders SET attempts = $3, last_error = $4,
                     next_attempt_at = $5, updated_at = now()
                   WHERE channel = $1 AND order_id = $2""",
                channel, order_id, attempts, str(outcome), next_attempt(self._backoff, attempts),
            )  # fmt: skip
            log.warning("ERP order creation waits", extra={
                "order_id": order_id, "error": str(outcome), "attempts": attempts})  # fmt: skip
            return False
        await conn.execute(
            """UPDATE skuflow_orders SET erp_ref = $3::jsonb, last_error = NULL,
                 state = CASE WHEN state = 'cancelling' THEN 'cancelling'
                              WHEN fulfilled_by = 'AMAZON' THEN 'closed' ELSE 'in_erp' END,
                 next_attempt_at = now(), updated_at = now()
               WHERE channel = $1 AND order_id = $2""",
            channel,
            order_id,
            encode_ref(outcome),
        )
        self.created += 1
        log.info("ERP sales order created", extra={
            "order_id": order_id, "doc_num": outcome.doc_num, "draft": outcome.draft})  # fmt: skip
        return True

    async def _refused(
        self, conn: asyncpg.Connection, channel: str, order_id: str, exc: ErpRejected
    ) -> None:
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM skuflow_orders WHERE channel = $1 AND order_id = $2 FOR UPDATE",
                channel,
                order_id,
            )
            reason = f"the ERP refused order {order_id}: {exc.message} (ERP code {exc.code})"
            exception_id = await record_exception(
                self._exceptions, conn, row, "erp_rejected", reason
            )
            await conn.execute(
                """UPDATE skuflow_orders SET state = 'failed', exception_id = $3,
                     last_error = $4, updated_at = now() WHERE channel = $1 AND order_id = $2""",
                channel,
                order_id,
                exception_id,
                reason,
            )
        log.warning("ERP refused a sales order", extra={"order_id": order_id, "error": str(exc)})

    # --- 2. cancel ---

    async def _cancel_waiting(self) -> None:
        rows = await self._pool.fetch(
            """SELECT channel, order_id FROM skuflow_orders
               WHERE state = 'cancelling' AND next_attempt_at <= now()
               ORDER BY next_attempt_at LIMIT $1""",
            self._batch,
        )
        for row in rows:
            async with self._writes:
                await self._cancel(row["channel"], row["order_id"])

    async def _cancel(self, channel: str, order_id: str) -> None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM skuflow_orders WHERE channel = $1 AND order_id = $2",
                channel,
                order_id,
            )
            if row is None or row["state"] != "cancelling":
                return
            ref = ref_of(row["erp_ref"])
            try:
                if ref is None:
                    ref = await self._erp.find_sales_order(order_id)
                if ref is not None:
                    await self._erp.cancel_sales_order(ref)
            except ErpRejected as exc:
                async with conn.transaction():
                    reason = (
                        f"order {order_id} was cancelled by the marketplace, but the ERP "
                        f"refused to cancel order {ref.doc_num if ref else '?'}: {exc.message} "
                        f"(ERP code {exc.code})"
                    )
                    exception_id = await record_exception(
                        self._exceptions, conn, row, "order_cancel_after_ship", reason
                    )
                    await conn.execute(
                        """UPDATE skuflow_orders SET state = 'failed', exception_id = $3,
                             last_error = $4, updated_at = now()
                           WHERE channel = $1 AND order_id = $2""",
                        channel, order_id, exception_id, reason,
                    )  # fmt: skip
                return
            except ErpError as exc:
                attempts = row["attempts"] + 1
                await conn.execute(
                    """UPDATE skuflow_orders SET attempts = $3, last_error = $4,
                         next_attempt_at = $5 WHERE channel = $1 AND order_id = $2""",
                    channel, order_id, attempts, str(exc), next_attempt(self._backoff, attempts),
                )  # fmt: skip
                return
            async with conn.transaction():
                if row["releases"] > row["helds"]:  # the warehouse may be picking it: stop
                    await self._announcer.held(conn, row, row["helds"] + 1, [CANCELLED_HOLD])
                await conn.execute(
                    """UPDATE skuflow_orders SET state = 'cancelled', holds = $3,
                         helds = helds + CASE WHEN releases > helds THEN 1 ELSE 0 END,
                         updated_at = now() WHERE channel = $1 AND order_id = $2""",
                    channel,
                    order_id,
                    [CANCELLED_HOLD],
                )
            log.info("ERP sales order cancelled", extra={"order_id": order_id})

    # --- 3. watch ---

    async def watch(self, only: Sequence[str] | None = None) -> None:
        """Read the ERP state of the open orders (``only``: of these) and act on it."""
        if only is None:
            self._watched_at = time.monotonic()
        after = ""
        while True:
            rows = await self._pool.fetch(
                """SELECT channel, order_id, erp_ref FROM skuflow_orders
                   WHERE state IN ('in_erp', 'released', 'held') AND order_id > $1
                     AND ($3::text[] IS NULL OR order_id = ANY($3::text[]))
                   ORDER BY order_id LIMIT $2""",
                after,
                WATCH_CHUNK,
                list(only) if only is not None else None,
            )
            if not rows:
                return
            after = rows[-1]["order_id"]
            refs = [ref for ref in (ref_of(r["erp_ref"]) for r in rows) if ref is not None]
            try:
                states = await self._erp.sales_order_states(refs)
            except ErpError as exc:
                log.warning("ERP order states unavailable", extra={"error": str(exc)})
                return
            for row in rows:
                state = states.get(row["order_id"])
                if state is not None:
                    await self._apply(row["channel"], row["order_id"], state)

    async def _apply(self, channel: str, order_id: str, erp: SalesOrderState) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM skuflow_orders WHERE channel = $1 AND order_id = $2 FOR UPDATE",
                channel,
                order_id,
            )
            if row is None or row["state"] not in ("in_erp", "released", "held"):
                return
            holds = list(erp.holds)
            state, releases, helds = row["state"], row["releases"], row["helds"]
            if erp.status != "open":
                if state == "released":
                    reason = f"{'cancelled' if erp.status == 'cancelled' else 'closed'} in the ERP"
                    if erp.status == "cancelled":
                        helds += 1
                        await self._announcer.held(conn, row, helds, [reason])
                state = "cancelled" if erp.status == "cancelled" else "closed"
            elif not holds and state != "released":
                releases += 1
                await self._announcer.released(conn, _with_ref(row, erp.ref), releases)
                state = "released"
            elif holds and state == "released":
                helds += 1
                await self._announcer.held(conn, row, helds, holds)
                state = "held"
            elif holds:
                state = "held" if state == "held" else "in_erp"
            await conn.execute(
                """UPDATE skuflow_orders SET state = $3, holds = $4, releases = $5, helds = $6,
                     erp_ref = $7::jsonb, updated_at = now(),
                     released_at = CASE WHEN $5 > releases THEN now() ELSE released_at END
                   WHERE channel = $1 AND order_id = $2""",
                channel, order_id, state, holds, releases, helds, encode_ref(erp.ref),
            )  # fmt: skip
            if state != row["state"]:
                log.info("order state", extra={"order_id": order_id, "from": row["state"],
                         "to": state, "holds": json.dumps(holds)})  # fmt: skip


def unsendable(exc: ValueError) -> ErpRejected:
    """An order the connector cannot express for its ERP (e.g. a field longer than the ERP
    holds): refused before anything was sent, as the ERP would refuse it."""
    return ErpRejected("not sendable", str(exc))


def _with_ref(row: asyncpg.Record, ref: SalesOrderRef) -> dict[str, Any]:
    """``row`` with the ERP reference as the watch just read it (a draft approved since)."""
    copy = dict(row.items())
    copy["erp_ref"] = encode_ref(ref)
    return copy
