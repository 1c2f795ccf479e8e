"""The order traffic of ``skuflow dev``: Amazon, the warehouse and the ERP's back office at work.

:class:`OrderTraffic` runs four tasks until cancelled:

- **Amazon** makes orders at the SP-API simulator (its v2026 hooks; ``rate`` a second, the
  gaps jittered by half), each with its ``lastUpdatedTime`` ``lag`` seconds in the past —
  searchOrders only covers up to two minutes before now, so skuflow's real poller
  (``orders.capture``) finds them within a poll instead of ~130 s later; cancels the few it
  planned to.
- **The warehouse** reads ``topics.released`` as a 3PL would: ``order.released`` → picked and
  shipped a pick time later (``dispatch.confirmed`` per package, the event ids the dispatch
  flow takes; the order exists at the simulator, so confirmShipment accepts it),
  ``order.held`` → not shipped; some shipped orders come back (``return.received``, sellable or
  damaged), now and then a return no order matches.
- **The back office** (:class:`~devstack.backoffice.BackOffice`) puts the hold customers on
  credit hold in turn and lifts it 15-25 s later; before a hold it stops the warehouse shipping
  that customer's orders for ``freeze_seconds`` (what is on its way reaches the ERP first).
- **The approver** approves the approval customer's orders a few seconds after they were made.

What is open lives on an :class:`~devstack.order_board.OrderBoard` (bounded). Its numbers are
an :class:`OrderTrafficStats`; the dispatches also count in the stock traffic's
:class:`~devstack.traffic.TrafficStats` (the dispatch panel's scenarios).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from config.settings import TopicsSettings
from devstack.backoffice import BackOffice
from devstack.order_board import Action, OrderBoard, Tracked
from devstack.orders import SampleOrders
from devstack.sims.spapi.server import SpApiSimulator
from devstack.traffic import TrafficStats

__all__ = ["OrderTraffic", "OrderTrafficStats", "Sender"]


@dataclass(slots=True)
class OrderTrafficStats:
    """What the order traffic did (counts since the start) and what it is doing now."""

    erp: str = ""
    off: str | None = None  # why there is no order traffic (None: there is)
    created: int = 0  # orders made at the SP-API simulator
    not_made: int = 0  # not made: the board was full
    released: int = 0  # order.released read on topics.released
    held: int = 0  # order.held read on topics.released
    packages: int = 0  # dispatch.confirmed sent
    two_packages: int = 0  # orders that left in two
    shipped: int = 0  # orders whose last package left
    cancelled: int = 0  # cancelled at Amazon
    returns: Counter[str] = field(default_factory=Counter)  # sellable, damaged, unmatched
    holds_placed: int = 0
    holds_lifted: int = 0
    approvals: int = 0
    hold: str = ""  # the customer on (or about to go on) credit hold, "" when none
    hold_phase: str = ""  # "stopping shipments", "on credit hold"
    open: int = 0  # orders on the board
    failed: int = 0
    last_error: str | None = None

    def copy(self) -> OrderTrafficStats:
        return replace(self, returns=self.returns.copy())


class Sender(Protocol):
    """What the traffic needs of a Kafka producer (:class:`aiokafka.AIOKafkaProducer`)."""

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]: ...


class _Announcement(msgspec.Struct):
    type: str
    order_id: str


_ANNOUNCEMENT = msgspec.json.Decoder(_Announcement)


class OrderTraffic:
    def __init__(
        self,
        *,
        bootstrap: str,
        topics: TopicsSettings,
        sim: SpApiSimulator,
        office: BackOffice,
        orders: SampleOrders,
        customers: Mapping[str, str],
        hold_customers: tuple[str, ...],
        approval_customer: str | None,
        rate: float,
        lag: float,
        freeze_seconds: float,
        stats: OrderTrafficStats,
        traffic: TrafficStats,
        board: OrderBoard | None = None,
        seed: int = 0,
        first_hold: float = 1.0,
        hold_for: tuple[float, float] = (15.0, 25.0),
        hold_every: tuple[float, float] = (10.0, 20.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError("the order rate must be > 0")
        self._bootstrap, self._topics, self._sim, self._office = bootstrap, topics, sim, office
        self._orders, self._customers = orders, customers
        self._hold_customers, self._approval = hold_customers, approval_customer
        self._rate, self._lag, self._freeze = rate, lag, freeze_seconds
        self._first_hold, self._hold_for, self._hold_every = first_hold, hold_for, hold_every
        self.stats, self._traffic = stats, traffic
        self.board = board if board is not None else OrderBoard(seed=seed)
        self._rng, self._clock = random.Random(seed), clock

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, client_id="skuflow-dev-orders", acks=1, linger_ms=5
        )
        consumer = AIOKafkaConsumer(
            self._topics.released,
            bootstrap_servers=self._bootstrap,
            client_id="skuflow-dev-warehouse",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await producer.start()
        try:
            await consumer.start()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._make_orders)
                    tg.start_soon(self._listen, consumer)
                    tg.start_soon(self._steps, producer)
                    if self._hold_customers:
                        tg.start_soon(self._holds)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await consumer.stop()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await producer.stop()  # flushes what is pending

    # --- Amazon ---

    async def _make_orders(self) -> None:
        while True:
            await anyio.sleep(self._rng.uniform(0.5, 1.5) / self._rate)
            self.make_order(datetime.now(UTC))

    def make_order(self, now: datetime) -> str | None:
        """One new order at the SP-API simulator, tracked on the board; its id (None: the
        board is full, or the id was taken)."""
        if len(self.board) >= self.board.max_open:
            self.stats.not_made += 1
            return None
        order = self._orders.next_order(now)
        customer = self._customers.get(order.marketplace_id) or self._customers["*"]
        try:
            self._sim.create_order(order.spec(self._lag))
        except KeyError:  # an order id made twice
            return None
        approval = customer == self._approval
        self.board.add(order, customer, self._clock(), approval=approval)
        self.stats.created += 1
        return order.order_id

    # --- the warehouse ---

    async def _listen(self, consumer: AIOKafkaConsumer) -> None:
        async for record in consumer:
            self.announced(record.value or b"")

    def announced(self, value: bytes) -> None:
        """An event read on ``topics.released``."""
        try:
            event = _ANNOUNCEMENT.decode(value)
        except msgspec.DecodeError:
            return
        if event.type == "order.released":
            self.stats.released += 1
            self.board.released(event.order_id, self._clock())
        elif event.type == "order.held":
            self.stats.held += 1
            self.board.held(event.order_id)

    async def _steps(self, producer: AIOKafkaProducer) -> None:
        while True:
            await self.take_steps(producer)
            await anyio.sleep(0.2)

    async def take_steps(self, producer: Sender) -> None:
        """Everything due on the board by now."""
        for action, tracked in list(self.board.due(self._clock())):
            await self._step(action, tracked, producer)
        self.stats.open = len(self.board)

    async def _step(self, action: Action, tracked: Tracked, producer: Sender) -> None:
        order, now, stats = tracked.order, datetime.now(UTC), self.stats
        key = order.order_id.encode()
        if action in ("ship", "ship_rest"):
            number = 1 if action == "ship" else 2
            payload = self._orders.dispatch(order, number, now)
            await self._send(producer, self._topics.dispatch, key, payload)
            self._traffic.count_dispatch(order.scenario)
            stats.packages += 1
            stats.two_packages += number == 2
            stats.shipped += order.packages == number
        elif action == "return":
            _order_id, payload = self._orders.return_of(order, now)
            await self._send(producer, self._topics.returns, key, payload)
            stats.returns[order.returned or "sellable"] += 1
            if self._orders.unmatched():
                order_id, payload = self._orders.return_of(None, now)
                await self._send(producer, self._topics.returns, order_id.encode(), payload)
                stats.returns["unmatched"] += 1
        elif action == "cancel":
            self._sim.cancel_order(order.order_id, "Buyer requested cancellation", lag=self._lag)
            stats.cancelled += 1
        elif action == "approve":
            answer = self._office.approve(order.order_id)
            if answer == "approved":
                stats.approvals += 1
            elif answer == "waiting":
                self.board.approve_later(order.order_id, self._clock())

    async def _send(self, producer: Sender, topic: str, key: bytes, value: bytes) -> None:
        future = await producer.send(topic, value, key=key)
        future.add_done_callback(self._delivered)

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self._traffic.produced += 1
        else:
            self.stats.failed += 1
            self.stats.last_error = f"{type(error).__name__}: {error}"

    # --- the back office ---

    async def _holds(self) -> None:
        stats, board = self.stats, self.board
        await anyio.sleep(self._first_hold)
        for customer in itertools.cycle(self._hold_customers):
            stats.hold, stats.hold_phase = customer, "stopping shipments"
            board.freeze(customer)
            try:
                await anyio.sleep(self._freeze)
                self._office.hold(customer, board.open_orders(customer))
                stats.holds_placed += 1
                stats.hold_phase = "on credit hold"
                await anyio.sleep(self._rng.uniform(*self._hold_for))
            finally:
                with contextlib.suppress(KeyError):  # (a stop: lifted as it would be)
                    self._office.release(customer, board.open_orders(customer))
                board.unfreeze(customer, self._clock())
            stats.holds_lifted += 1
            stats.hold, stats.hold_phase = "", ""
            await anyio.sleep(self._rng.uniform(*self._hold_every))
