"""Deadline order at Amazon's quota: a dispatch backlog behind a stock backlog, at 2/s.

The case of issue 13: 50,000 stock adjustments and then 200 dispatch confirmations are waiting
when the worker starts; 5 of the dispatches are due in under 2 hours (at risk from the first
second), the rest in 3-24 hours, produced in random order. The worker (``skuflow.app.Worker``,
both classes in one process, 32 urgent runners) confirms them at the SP-API simulator, whose
confirmShipment plan is Amazon's (2/s, burst 10), through the real dispatch handler and SP-API
client. Two runs side by side, each on topics, consumer groups and a simulator of its own:

- **token-time EDF** (what ``skuflow run`` does): the urgent class's lanes are picked when the
  confirmShipment pacer grants a token (``worker.pacing``), on the bucket shared by replicas in
  PostgreSQL;
- **EDF, then FIFO at the bucket** (before issue 13): runners pick the earliest deadline, then
  queue first-come-first-served for a token of a plain token bucket.

Reported from the simulator's record of accepted confirmations: inverted pairs (a dispatch
confirmed before one due sooner, over all pairs, all being present together from the start;
and after the first ``burst`` confirmations, which may go before the whole backlog is fetched),
and the positions of the at-risk dispatches in the confirmation order. The stock handler awaits
2 ms of simulated ERP time per adjustment (the backdrop; the stock → B1 case measures the real
flow).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

import aiohttp
import anyio
import msgspec

from bench.data import create_topics, events, produce
from bench.stack import Stack, fresh_group, worker_settings
from config.settings import DatabaseSettings, HealthSettings, Secret, SpApiSettings
from devstack.events import MARKETPLACE, dispatch_payload
from devstack.sims.spapi.server import SpApiSimulator
from handlers.common.router import DomainRouter
from handlers.connectors.ratelimit import TokenBucket
from handlers.connectors.spapi.client import SpApiClient, spapi_client_from_settings
from handlers.connectors.spapi.lwa import LwaTokenProvider
from handlers.dispatch.handler import DispatchHandler
from handlers.flows import default_families
from handlers.stock.events import StockAdjusted
from skuflow.app import Worker, connect_database
from worker.messages import Message
from worker.outcomes import DONE, Outcome

Mode = Literal["paced", "fifo-bucket"]
MODES: tuple[Mode, ...] = ("paced", "fifo-bucket")
LABELS: dict[Mode, str] = {
    "paced": "token-time EDF (`skuflow run`): the lane is picked when the token is free",
    "fifo-bucket": "before: EDF pick, then FIFO at the token bucket",
}
RATE, BURST = 2.0, 10  # Amazon's confirmShipment plan
AT_RISK = 5
STOCK_SECONDS = 0.002
_CLIENT_ID = "amzn1.application-oa2-client.bench"
_SECRET = "bench-secret"


class DeadlineReport(msgspec.Struct, frozen=True):
    mode: Mode
    dispatches: int
    confirmed: int  # within the run's time limit
    ledger: dict[str, int]  # skuflow_shipments rows by status at the end
    parked: int
    stock_backlog: int
    seconds: float  # worker started → last confirmation accepted
    inversions: int
    pairs: int
    inversions_after_burst: int
    at_risk_positions: list[int]  # 1-based, in confirmation order (dispatches + 1: never)
    throttled: int  # 429s the simulator answered
    stock_done: int  # adjustments handled meanwhile


def inversions(confirmed: list[str], deadline: dict[str, datetime]) -> int:
    """Pairs confirmed in the opposite order of their deadlines (ties are not inversions)."""
    count = 0
    for i, first in enumerate(confirmed):
        for later in confirmed[i + 1 :]:
            if deadline[later] < deadline[first]:
                count += 1
    return count


async def deadline_run(
    stack: Stack, mode: Mode, *, dispatches: int, stock_backlog: int, seed: int = 13
) -> DeadlineReport:
    tag = f"{mode}-{time.time_ns()}"
    stock_topic, dispatch_topic = f"bench.deadline.{tag}.stock", f"bench.deadline.{tag}.dispatch"
    await create_topics(stack.bootstrap, stock_topic, dispatch_topic)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    run = time.time_ns() % 10_000_000  # order ids of their own: the ledger outlives a run
    orders = [
        (f"202-{i:07d}-{run:07d}", now + timedelta(hours=0.5 + rng.random() * 1.4))
        if i < AT_RISK
        else (f"202-{i:07d}-{run:07d}", now + timedelta(hours=3 + rng.random() * 21))
        for i in range(dispatches)
    ]
    rng.shuffle(orders)
    deadline = dict(orders)
    at_risk = {order_id for order_id, by in orders if by - now < timedelta(hours=2)}
    await produce(stack.bootstrap, stock_topic, events(stock_backlog, 10_000, seed))
    await produce(
        stack.bootstrap, dispatch_topic, ((o.encode(), dispatch_payload(o, b)) for o, b in orders)
    )

    refresh = f"Atzr|bench-{tag}"  # a bucket row of its own per run
    sim = SpApiSimulator(client_id=_CLIENT_ID, client_secret=_SECRET, refresh_token=refresh)
    await sim.start()
    for order_id, ship_by in orders:
        sim.add_order(order_id, MARKETPLACE, ship_by, [(f"{order_id}-1", "ABC-123", 1)])
    settings = msgspec.structs.replace(
        worker_settings(
            stack,
            fresh_group(f"deadline-{mode}"),
            stock_topic=stock_topic,
            dispatch_topic=dispatch_topic,
        ),
        database=DatabaseSettings(url=Secret(stack.database_url)),
        health=HealthSettings(port=0),
        spapi=SpApiSettings(
            endpoint=sim.endpoint,
            lwa_endpoint=sim.lwa_endpoint,
            client_id=_CLIENT_ID,
            client_secret=Secret(_SECRET),
            refresh_token=Secret(refresh),
            rate_per_second=RATE,
            burst=BURST,
        ),
    )
    stock_done = 0

    async def stock(_event: StockAdjusted, _message: Message) -> Outcome:
        nonlocal stock_done
        await anyio.sleep(STOCK_SECONDS)
        stock_done += 1
        return DONE

    pool = await connect_database(settings)
    try:
        async with aiohttp.ClientSession() as session:
            if mode == "paced":
                client = spapi_client_from_settings(settings.spapi, session, pool=pool)
            else:
                tokens = LwaTokenProvider(
                    sim.lwa_endpoint, _CLIENT_ID, Secret(_SECRET), Secret(refresh), session
                )
                client = SpApiClient(sim.endpoint, tokens, session, TokenBucket(RATE, BURST))
            router = DomainRouter(
                default_families(
                    {"stock.adjusted": stock, "dispatch.confirmed": DispatchHandler(pool, client)}
                )
            )
            worker = Worker(settings, router=router, pacer=client.pacer)
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                with anyio.move_on_after(60 + 3 * dispatches / RATE):
                    while len(sim.confirmations) < dispatches:  # noqa: ASYNC110  # a poll
                        await anyio.sleep(0.05)
                seconds = time.monotonic() - started
                ledger = dict(
                    await pool.fetch(
                        "SELECT status, count(*) FROM skuflow_shipments "
                        "WHERE order_id = ANY($1::text[]) GROUP BY status",
                        [order_id for order_id, _ in orders],
                    )
                )
                parked = int(
                    await pool.fetchval(
                        "SELECT count(*) FROM skuflow_parked WHERE topic = $1", dispatch_topic
                    )
                )
                worker.request_stop()
    finally:
        await pool.close()
        await sim.stop()
    confirmed = [c.order_id for c in sim.confirmations]
    return DeadlineReport(
        mode=mode,
        dispatches=dispatches,
        confirmed=len(confirmed),
        ledger={str(k): int(v) for k, v in ledger.items()},
        parked=parked,
        stock_backlog=stock_backlog,
        seconds=seconds,
        inversions=inversions(confirmed, deadline),
        pairs=dispatches * (dispatches - 1) // 2,
        inversions_after_burst=inversions(confirmed[BURST:], deadline),
        at_risk_positions=sorted(
            confirmed.index(o) + 1 if o in confirmed else dispatches + 1 for o in at_risk
        ),
        throttled=sum(1 for r in sim.requests if r.status == 429),
        stock_done=stock_done,
    )


def table(reports: list[DeadlineReport]) -> list[str]:
    rows = [
        "| deadline order at Amazon's quota (2/s, burst 10) | dispatches confirmed | seconds "
        "| inverted pairs (all) | inverted pairs after the first 10 (target 0) "
        "| at-risk positions (target ≤ 10) | 429s | stock done meanwhile |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for report in reports:
        worst = max(report.at_risk_positions, default=0)
        after = report.inversions_after_burst
        confirmed = f"{report.confirmed} of {report.dispatches}"
        if report.confirmed < report.dispatches:
            confirmed += f" (ledger {report.ledger}, {report.parked} parked)"
        rows.append(
            f"| {LABELS[report.mode]} | {confirmed} | {report.seconds:.1f} "
            f"| {report.inversions:,} of {report.pairs:,} "
            f"| {after:,}: {'met' if after == 0 else '**missed**'} "
            f"| {', '.join(map(str, report.at_risk_positions))}: "
            f"{'met' if worst <= BURST else '**missed**'} "
            f"| {report.throttled:,} | {report.stock_done:,} of {report.stock_backlog:,} |"
        )
    return rows
