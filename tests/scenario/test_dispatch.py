"""User stories of dispatch confirmations: real Kafka, real PostgreSQL, the SP-API simulator.

Each test runs the real worker (both classes, the park retrier, the real dispatch handler and
SP-API connector) against a protocol-faithful Amazon simulator over HTTP.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import anyio
import asyncpg
import msgspec
import pytest

from config.settings import Secret, Settings, SpApiSettings
from devstack.sims.spapi.server import SpApiSimulator
from handlers.common.router import DomainRouter
from handlers.connectors.ratelimit import TokenBucket
from handlers.connectors.spapi.client import LwaTokenProvider, RetryPolicy, SpApiClient
from handlers.dispatch.handler import DispatchHandler
from handlers.flows import default_families
from handlers.stock.events import StockAdjusted
from skuflow.app import Worker, connect_database, engine_options, urgent_options
from tests.support.events import MARKETPLACE, dispatch_payload
from tests.support.stack import produce, settings_for, wait_for
from worker.backoff import Backoff
from worker.messages import Message
from worker.outcomes import DONE, Outcome
from worker.pacing import DeadlinePacer

pytestmark = [pytest.mark.scenario]

CreateTopics = Callable[..., None]
CLIENT_ID, CLIENT_SECRET, REFRESH = "amzn1.application-oa2-client.sim", "sim-secret", "Atzr|sim"
FAST_PARK = Backoff(initial=0.2, maximum=1.0, multiplier=2.0)


def adjustment(index: int) -> tuple[bytes, bytes]:
    sku = f"SKU-{index % 2_000:05d}"
    event = StockAdjusted(
        event_id=f"adj-{index}",
        occurred_at=datetime.now(UTC),
        source="ims",
        source_ref=f"IMS-{index}",
        sku=sku,
        warehouse="LOC-01",
        quantity=-1,  # type: ignore[arg-type]
        reason="count",
    )
    return sku.encode(), msgspec.json.encode(event)


class Stack:
    """The simulator, the worker and what the test needs to look at."""

    def __init__(self, sim: SpApiSimulator, worker: Worker, pool: asyncpg.Pool) -> None:
        self.sim = sim
        self.worker = worker
        self.pool = pool
        self.stock_handled = 0

    def confirmed_orders(self) -> list[str]:
        return [c.order_id for c in self.sim.confirmations]

    async def ledger_confirmed(self) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM skuflow_shipments WHERE status = 'confirmed'"
            )
        )

    async def exceptions(self, kind: str) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT * FROM skuflow_exceptions WHERE kind = $1 ORDER BY id", kind
            )
        )


@asynccontextmanager
async def dispatch_stack(
    settings: Settings,
    *,
    orders: list[tuple[str, datetime]],
    client_rate: float = 50.0,
    client_burst: int = 10,
    stock_seconds: float = 0.0,
    urgent_runners: int | None = None,
    faults: dict[str, Any] | None = None,
    retry: RetryPolicy | None = None,
) -> AsyncIterator[Stack]:
    sim = SpApiSimulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH)
    await sim.start()
    sim.set_faults(**(faults or {}))
    for order_id, ship_by in orders:
        sim.add_order(order_id, MARKETPLACE, ship_by, [(f"{order_id}-1", "ABC-123", 1)])
    settings = msgspec.structs.replace(
        settings,
        spapi=SpApiSettings(
            endpoint=sim.endpoint,
            lwa_endpoint=sim.lwa_endpoint,
            client_id=CLIENT_ID,
            client_secret=Secret(CLIENT_SECRET),
            refresh_token=Secret(REFRESH),
        ),
    )
    stack_holder: list[Stack] = []

    async def slow_stock(_event: StockAdjusted, _message: Message) -> Outcome:
        if stock_seconds:
            await anyio.sleep(stock_seconds)
        stack_holder[0].stock_handled += 1
        return DONE

    pool = await connect_database(settings)
    try:
        async with aiohttp.ClientSession() as session:
            tokens = LwaTokenProvider(
                sim.lwa_endpoint, CLIENT_ID, Secret(CLIENT_SECRET), Secret(REFRESH), session
            )
            pacer = DeadlinePacer(TokenBucket(client_rate, client_burst))
            client = SpApiClient(
                sim.endpoint, tokens, session, pacer, retry=retry or RetryPolicy(attempts=1)
            )
            handlers: dict[str, Any] = {
                "stock.adjusted": slow_stock,
                "dispatch.confirmed": DispatchHandler(pool, client, FAST_PARK),
            }
            router = DomainRouter(default_families(handlers))
            urgent = urgent_options(settings)
            if urgent_runners is not None:
                urgent = msgspec.structs.replace(
                    urgent,
                    tuning=msgspec.structs.replace(urgent.tuning, max_in_flight=urgent_runners),
                )
            worker = Worker(
                settings,
                router=router,
                options=engine_options(settings),
                urgent=urgent,
                pacer=pacer,
            )
            stack = Stack(sim, worker, pool)
            stack_holder.append(stack)
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                try:
                    await wait_for(
                        lambda: len(worker.engines) == 2 and all(e.joined for e in worker.engines),
                        60,
                        "both classes joined",
                    )
                    yield stack
                finally:
                    worker.request_stop()
    finally:
        await pool.close()
        await sim.stop()


def _settings(bootstrap: str, database_url: str, unique: str, **engine: Any) -> Settings:
    return settings_for(bootstrap, database_url, f"{unique}.group", f"{unique}.stock", **engine)


def _soon(hours: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


@pytest.mark.timeout(180)
def test_dispatch_confirmations_overtake_a_large_stock_backlog(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    # 64 stock runners x 50 ms: the 40k backlog needs ~30 s of ERP time.
    settings = _settings(kafka_bootstrap, database_url, unique, max_in_flight=64)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    backlog = 40_000
    orders = [(f"171-{i:07d}-0000001", _soon(6)) for i in range(20)]

    async def main() -> tuple[int, list[str]]:
        await produce(
            kafka_bootstrap, settings.topics.stock, (adjustment(i) for i in range(backlog))
        )
        async with dispatch_stack(settings, orders=orders, stock_seconds=0.05) as stack:
            await wait_for(lambda: stack.stock_handled > 1_000, 60, "the backlog is being worked")
            await produce(
                kafka_bootstrap,
                settings.topics.dispatch,
                [(o.encode(), dispatch_payload(o, by)) for o, by in orders],
            )
            await wait_for(lambda: len(stack.sim.confirmations) == len(orders), 60, "confirmed")
            return stack.stock_handled, stack.confirmed_orders()

    stock_done, confirmed = anyio.run(main)
    assert sorted(confirmed) == sorted(o for o, _ in orders)
    # Every confirmation went out while most of the backlog was still waiting.
    assert stock_done < backlog / 2


@pytest.mark.timeout(120)
def test_under_contention_the_earliest_ship_by_is_confirmed_first(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dead_letter)
    create_topics(settings.topics.dispatch, partitions=1)
    rng = random.Random(5)
    orders = [(f"171-{i:07d}-0000002", _soon(3 + rng.random() * 20)) for i in range(12)]

    async def main() -> list[str]:
        await produce(
            kafka_bootstrap,
            settings.topics.dispatch,
            [(o.encode(), dispatch_payload(o, by)) for o, by in orders],
        )
        # Slow answers keep one confirmation in flight long enough for every other event to
        # be fetched and queued, whatever the load on the machine.
        slow = {"latency_ms": 300}
        async with dispatch_stack(settings, orders=orders, urgent_runners=1, faults=slow) as stack:
            await wait_for(lambda: len(stack.sim.confirmations) == len(orders), 60, "confirmed")
            return stack.confirmed_orders()

    confirmed = anyio.run(main)
    by_deadline = [o for o, _ in sorted(orders, key=lambda order: order[1])]
    # The first may have started before the rest arrived; after it, strictly by deadline.
    rest = [o for o in confirmed if o != confirmed[0]]
    assert rest == [o for o in by_deadline if o != confirmed[0]]


def _deadline_order(orders: list[tuple[str, datetime]]) -> list[str]:
    """By ship-by, ties in offset order (the list is in the order it was produced)."""
    ranked = sorted(enumerate(orders), key=lambda item: (item[1][1], item[0]))
    return [order_id for _, (order_id, _) in ranked]


def _shuffled_deadlines(tag: str, count: int, seed: int) -> list[tuple[str, datetime]]:
    """``count`` orders due in 1-20 h, in random order, with every fourth deadline shared by
    two orders (the tie is broken by offset)."""
    rng = random.Random(seed)
    base = datetime.now(UTC)
    hours = [1 + rng.random() * 19 for _ in range(count)]
    for index in range(0, count - 1, 4):
        hours[index + 1] = hours[index]
    return [(f"171-{i:07d}-{tag}", base + timedelta(hours=h)) for i, h in enumerate(hours)]


@pytest.mark.timeout(120)
def test_at_amazons_quota_the_token_goes_to_the_earliest_ship_by_present(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    """40 dispatches wait when the worker starts, and 32 urgent runners (the default) race for
    a quota of 4 confirmations/s with no burst to speak of: they are confirmed in exactly
    ship-by order, ties by offset. Then three more arrive, due sooner than all that are left:
    each is confirmed within two confirmations of being produced, not behind the queue."""
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dead_letter)
    create_topics(settings.topics.dispatch, partitions=1)
    waiting = _shuffled_deadlines("0000010", 40, seed=13)
    late = [
        (f"171-{i:07d}-0000011", datetime.now(UTC) + timedelta(minutes=30 + i)) for i in range(3)
    ]
    quota = {"throttle_rate": 4.0, "burst": 1}

    async def main() -> tuple[list[str], list[int]]:
        await produce(
            kafka_bootstrap,
            settings.topics.dispatch,
            [(o.encode(), dispatch_payload(o, by)) for o, by in waiting],
        )
        async with dispatch_stack(
            settings, orders=waiting + late, client_rate=4.0, client_burst=1, faults=quota
        ) as stack:
            await wait_for(lambda: len(stack.sim.confirmations) >= 20, 60, "half confirmed")
            produced_after: list[int] = []
            for order_id, ship_by in late:
                produced_after.append(len(stack.sim.confirmations))
                await produce(
                    kafka_bootstrap,
                    settings.topics.dispatch,
                    [(order_id.encode(), dispatch_payload(order_id, ship_by))],
                )
                await wait_for(
                    lambda o=order_id: o in stack.confirmed_orders(), 30, f"{order_id} confirmed"
                )
            await wait_for(
                lambda: len(stack.sim.confirmations) == len(waiting) + len(late), 60, "confirmed"
            )
            confirmed = stack.confirmed_orders()
            positions = [
                confirmed.index(order_id) - before
                for (order_id, _), before in zip(late, produced_after, strict=True)
            ]
            return confirmed, positions

    confirmed, positions = anyio.run(main)
    late_ids = {order_id for order_id, _ in late}
    assert [o for o in confirmed if o not in late_ids] == _deadline_order(waiting)
    # 0: the very next confirmation; 1: one token was already granted when it arrived.
    assert all(0 <= position <= 1 for position in positions), positions


@pytest.mark.timeout(120)
def test_a_throttled_confirmation_retries_before_later_deadlines(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    """Amazon's plan is half the rate the client was configured with, so some sends get 429:
    each throttled dispatch waits for the next token by its ship-by date (and nobody gets a
    token before Retry-After), so the order at Amazon is still exact and nothing is sent
    twice."""
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dead_letter)
    create_topics(settings.topics.dispatch, partitions=1)
    orders = _shuffled_deadlines("0000012", 16, seed=29)

    async def main() -> tuple[list[str], int]:
        await produce(
            kafka_bootstrap,
            settings.topics.dispatch,
            [(o.encode(), dispatch_payload(o, by)) for o, by in orders],
        )
        async with dispatch_stack(
            settings,
            orders=orders,
            client_rate=8.0,
            client_burst=2,
            faults={"throttle_rate": 4.0, "burst": 1},
            retry=RetryPolicy(attempts=6, max_elapsed=30.0),
        ) as stack:
            await wait_for(lambda: len(stack.sim.confirmations) == len(orders), 60, "confirmed")
            throttled = sum(1 for r in stack.sim.requests if r.status == 429)
            return stack.confirmed_orders(), throttled

    confirmed, throttled = anyio.run(main)
    assert throttled > 0
    assert confirmed == _deadline_order(orders)


@pytest.mark.timeout(120)
def test_throttling_never_loses_a_confirmation_and_never_sends_one_twice(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    orders = [(f"171-{i:07d}-0000003", _soon(5)) for i in range(25)]

    async def main() -> tuple[list[str], int]:
        # The client paces at 50/s; Amazon's plan is 2/s with a burst of 10: most get 429.
        async with dispatch_stack(settings, orders=orders, client_rate=50.0) as stack:
            await produce(
                kafka_bootstrap,
                settings.topics.dispatch,
                [(o.encode(), dispatch_payload(o, by)) for o, by in orders],
            )
            await wait_for(lambda: len(stack.sim.confirmations) == len(orders), 90, "confirmed")
            throttled = sum(1 for r in stack.sim.requests if r.status == 429)
            with anyio.fail_after(30):
                while await stack.ledger_confirmed() < len(orders):
                    await anyio.sleep(0.1)
            return stack.confirmed_orders(), throttled

    confirmed, throttled = anyio.run(main)
    assert throttled > 0
    assert sorted(confirmed) == sorted(o for o, _ in orders)  # each exactly once


@pytest.mark.timeout(120)
def test_an_outage_longer_than_a_retry_cycle_ends_with_every_confirmation_delivered_once(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    orders = [(f"171-{i:07d}-0000004", _soon(5)) for i in range(10)]

    async def main() -> tuple[list[str], int, int]:
        async with dispatch_stack(settings, orders=orders) as stack:
            stack.sim.set_faults(outage_until=datetime.now(UTC) + timedelta(seconds=6))
            await produce(
                kafka_bootstrap,
                settings.topics.dispatch,
                [(o.encode(), dispatch_payload(o, by)) for o, by in orders],
            )
            await wait_for(
                lambda: stack.worker.retrier is not None and stack.worker.retrier.retried >= 10,
                60,
                "parked confirmations retried",
            )
            await wait_for(lambda: len(stack.sim.confirmations) == len(orders), 60, "confirmed")
            unavailable = sum(1 for r in stack.sim.requests if r.status == 503)
            with anyio.fail_after(30):  # the last rows leave the park store just after the call
                while parked_left := int(
                    await stack.pool.fetchval("SELECT count(*) FROM skuflow_parked")
                ):
                    await anyio.sleep(0.1)
            return stack.confirmed_orders(), unavailable, parked_left

    confirmed, unavailable, parked_left = anyio.run(main)
    assert unavailable >= len(orders)
    assert sorted(confirmed) == sorted(o for o, _ in orders)
    assert parked_left == 0


@pytest.mark.timeout(120)
def test_duplicates_and_redeliveries_never_double_confirm(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    order, ship_by = "171-0000001-0000005", _soon(5)
    crashed, crashed_by = "171-0000002-0000005", _soon(5)

    async def main() -> tuple[list[str], list[bool], str]:
        async with dispatch_stack(settings, orders=[(order, ship_by), (crashed, crashed_by)]) as s:
            # A previous process crashed after calling Amazon, before writing the ledger.
            await s.pool.execute(
                """INSERT INTO skuflow_shipments (order_id, package_reference_id, channel,
                     marketplace_id, event_id, tracking_number, carrier_code, ship_by, status)
                   VALUES ($1, '1', 'amazon', $2, 'dsp-x', 'RM1', 'Royal Mail', $3, 'sending')""",
                crashed,
                MARKETPLACE,
                crashed_by,
            )
            records = [
                (order.encode(), dispatch_payload(order, ship_by)),
                (order.encode(), dispatch_payload(order, ship_by)),  # redelivered as is
                (
                    order.encode(),
                    dispatch_payload(order, ship_by, event_id="dsp-again"),
                ),  # re-sent by WMS
                (crashed.encode(), dispatch_payload(crashed, crashed_by)),
            ]
            await produce(kafka_bootstrap, settings.topics.dispatch, records)
            await wait_for(
                lambda: s.worker.urgent is not None and s.worker.urgent.processed == 4, 60, "all"
            )
            status = await s.pool.fetchval(
                "SELECT status FROM skuflow_shipments WHERE order_id = $1", crashed
            )
            return s.confirmed_orders(), [c.edit for c in s.sim.confirmations], status

    confirmed, edits, crashed_status = anyio.run(main)
    assert sorted(confirmed) == sorted([order, crashed])
    assert edits == [False, False]
    assert crashed_status == "confirmed"


@pytest.mark.timeout(120)
def test_at_risk_and_missed_deadlines_are_reported_and_still_confirmed(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    settings = _settings(kafka_bootstrap, database_url, unique)
    create_topics(settings.topics.stock, settings.topics.dispatch, settings.topics.dead_letter)
    relaxed, at_risk, missed = (
        ("171-0000001-0000006", _soon(5)),
        ("171-0000002-0000006", _soon(0.5)),
        ("171-0000003-0000006", _soon(-0.25)),
    )
    orders = [relaxed, at_risk, missed]

    async def main() -> tuple[list[str], list[asyncpg.Record], list[asyncpg.Record]]:
        async with dispatch_stack(settings, orders=orders) as stack:
            await produce(
                kafka_bootstrap,
                settings.topics.dispatch,
                [(o.encode(), dispatch_payload(o, by)) for o, by in orders],
            )
            await wait_for(lambda: len(stack.sim.confirmations) == 3, 60, "confirmed")
            await wait_for(
                lambda: stack.worker.urgent is not None and stack.worker.urgent.processed == 3,
                30,
                "settled",
            )
            return (
                stack.confirmed_orders(),
                await stack.exceptions("deadline_at_risk"),
                await stack.exceptions("deadline_missed"),
            )

    confirmed, risky, late = anyio.run(main)
    assert sorted(confirmed) == sorted(o for o, _ in orders)
    assert [r["key"].decode() for r in risky] == [at_risk[0]]
    assert risky[0]["status"] == "resolved"
    assert "min to spare" in risky[0]["resolution"]
    assert [r["key"].decode() for r in late] == [missed[0]]
    assert late[0]["status"] == "open"  # a late shipment needs a person to look at it
    assert "after the deadline" in late[0]["resolution"]
