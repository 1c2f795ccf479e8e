"""Amazon orders into the ERP simulators, end to end (issue 16).

**Orders into each ERP** (:func:`orders_run`): the benchmark process produces ``count``
``order.received`` events (1-3 lines each over ``skus`` SKUs, every one valid, the customer
without holds) to ``topics.orders``, seeds the simulator, and runs the real worker
(``skuflow.app.Worker``, both classes, the order flow's background work) in a process of its own
(``python -m bench.orders worker '<OrderWorkerSpec as JSON>'``, :func:`bench.stock.serve`) until
every order is ``released`` in ``skuflow_orders``. The time is PostgreSQL's: the first order's
``received_at`` (its event consumed) to the last ``released_at``. The simulator's records give
the ERP requests that created orders and whether every order is in the ERP exactly once.

**Order-to-release latency under a stock backlog** (:func:`latency_run`): one worker process
(both classes, B1 simulator) works a backlog of stock adjustments while a separate process
(``python -m bench.orders stream '<StreamSpec as JSON>'``, so neither the simulator nor the
worker delays its clock) produces orders at a steady rate and reads ``topics.released``:
per order, ``time.time()`` just before the send → the ``order.released`` of it received.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import aiohttp
import anyio
import anyio.abc
import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.cases import Measurement
from bench.data import create_topics, produce, sku
from bench.stack import Stack, fresh_group
from bench.stock import (
    LOCATIONS,
    Traffic,
    WorkerReport,
    WorkerSpec,
    b1_simulator,
    ecc_simulator,
    poll_worker,
    run_worker,
    scalar,
    serve,
    stock_progress,
    worker_settings,
)
from bench.urgent import UrgentRun
from config.settings import OrdersSettings, Settings
from devstack.sims.b1.server import B1Simulator
from devstack.sims.ecc.sales import ORDER
from devstack.sims.ecc.server import EccSimulator
from handlers.connectors.b1.client import b1_client_from_settings
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.connectors.ecc.orders import customer_number
from handlers.orders.events import OrderLine, OrderReceived
from skuflow.app import tune_gc

Contender = Literal["b1-batched", "b1-single", "ecc"]
CONTENDERS: tuple[Contender, ...] = ("b1-batched", "b1-single", "ecc")
MARKETPLACE = "A1F83G8C2ARO7P"  # amazon.co.uk
#: The customer of every order (``orders.default_customers``), without holds or credit limit.
B1_CUSTOMER, ECC_CUSTOMER = "C-AMAZON-UK", "1000"
ECC_SALES_AREA = "1000/10/00"  # the connector's default sales area (``ecc.sales_org`` ...)
#: Lines per order and their weights; quantities of a line.
LINE_COUNTS, LINE_WEIGHTS = (1, 2, 3), (60, 30, 10)
QUANTITIES = (1, 1, 1, 2, 3)
PRICES = tuple(Decimal(p) for p in ("4.99", "9.99", "12.50", "19.99", "34.00"))
_EPOCH = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
_DONE = ("released", "failed")
#: After the last order was sent, how long the stream waits for the releases still missing.
SETTLE_SECONDS = 60.0
#: Seconds the backlog is worked before the order stream starts.
WARMUP_SECONDS = 3.0


def order_id(prefix: int, n: int) -> str:
    """An Amazon-shaped order id (19 characters: ECC's BSTNK keeps 20) unique to a run."""
    return f"{prefix:03d}-{n:07d}-{(n * 7_919 + prefix) % 10_000_000:07d}"


def order_event(rng: random.Random, oid: str, skus: int, now: datetime) -> OrderReceived:
    """A valid merchant-fulfilled order of 1-3 lines of distinct SKUs, priced, shipping from
    one of :data:`LOCATIONS`."""
    count = rng.choices(LINE_COUNTS, LINE_WEIGHTS)[0]
    lines = [
        OrderLine(
            order_item_id=f"{oid.replace('-', '')[:12]}{index:02d}",
            sku=sku(item),
            quantity=Decimal(rng.choice(QUANTITIES)),
            unit_price=rng.choice(PRICES),
        )
        for index, item in enumerate(rng.sample(range(skus), count))
    ]
    return OrderReceived(
        event_id=f"bench-order-{oid}",
        occurred_at=now,
        source="amazon",
        source_ref=oid,
        channel="amazon",
        order_id=oid,
        marketplace_id=MARKETPLACE,
        revision=now,
        purchased_at=_EPOCH,
        currency="GBP",
        warehouse=rng.choice(list(LOCATIONS)),
        ship_by=now + timedelta(days=2),
        lines=lines,
    )


def order_records(
    prefix: int, count: int, skus: int, lines: list[int]
) -> Iterator[tuple[bytes, bytes]]:
    """``count`` orders keyed by order id (``lines`` gets each order's line count)."""
    rng = random.Random(prefix)
    encoder = msgspec.json.Encoder()
    for n in range(count):
        event = order_event(rng, order_id(prefix, n), skus, _EPOCH)
        lines.append(len(event.lines))
        yield event.order_id.encode(), encoder.encode(event)


# --- the worker process ---


class OrderWorkerSpec(msgspec.Struct, frozen=True):
    worker: WorkerSpec  # stack, stock topic, group, the simulator, erp.kind
    orders_topic: str
    customer: str
    #: False: the B1 connector without ``create_sales_orders`` (:class:`OneCallPerOrder`).
    batching: bool = True


class OneCallPerOrder:
    """An ERP connector with its :class:`~handlers.ports.erp.BatchSalesOrders` side hidden: the
    order work sends one ``create_sales_order`` per order (at the same concurrency,
    ``orders.max_concurrent_writes``); everything else is the connector's."""

    _HIDDEN = frozenset({"create_sales_orders", "max_batch_orders"})

    def __init__(self, erp: object) -> None:
        self._erp = erp

    def __getattr__(self, name: str) -> Any:
        if name in self._HIDDEN:
            raise AttributeError(name)
        return getattr(self._erp, name)


def one_call_per_order(settings: Settings, session: aiohttp.ClientSession) -> object:
    """The B1 connector as ``skuflow run`` builds it (``handlers.domain.connect_erp``),
    without batching."""
    client = b1_client_from_settings(settings.b1, session, key_field=KEY_FIELD)
    return OneCallPerOrder(B1Erp(client, credit_hold_field=settings.b1.credit_hold_field or None))


def order_settings(spec: OrderWorkerSpec) -> Settings:
    """:func:`bench.stock.worker_settings` plus the order flow's topics (``<orders>.returns``,
    ``<orders>.released``) and ``[orders]`` at its defaults but the customer."""
    settings = worker_settings(spec.worker)
    topic = spec.orders_topic
    topics = msgspec.structs.replace(
        settings.topics, orders=topic, returns=f"{topic}.returns", released=f"{topic}.released"
    )
    orders = OrdersSettings(default_customers={"*": spec.customer})
    return msgspec.structs.replace(settings, topics=topics, orders=orders)


async def _create_order_topics(stack: Stack, spec: OrderWorkerSpec) -> None:
    stock, orders = spec.worker.topic, spec.orders_topic
    await create_topics(
        stack.bootstrap,
        *(stock, f"{stock}.dispatch", f"{stock}.dlq"),
        *(orders, f"{orders}.returns", f"{orders}.released"),
    )


class _Ledger(msgspec.Struct, frozen=True):
    released: int = 0
    failed: int = 0
    seconds: float = 0.0  # first received_at → last released_at


async def _ledger(conn: asyncpg.Connection, prefix: int) -> _Ledger:
    try:
        row = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE state = 'released') AS released,
                      count(*) FILTER (WHERE state = 'failed') AS failed,
                      extract(epoch FROM max(released_at) - min(received_at)) AS seconds
               FROM skuflow_orders WHERE order_id LIKE $1""",
            f"{prefix:03d}-%",
        )
    except asyncpg.UndefinedTableError:  # the worker has not migrated yet
        return _Ledger()
    return _Ledger(row["released"], row["failed"], float(row["seconds"] or 0))


async def close_earlier_orders(conn: asyncpg.Connection) -> None:
    """Every open order of the runs before (their simulators are gone) closed, as a delivered
    one is: a run's order work watches its own open orders only, not every run's so far."""
    with contextlib.suppress(asyncpg.UndefinedTableError):  # no worker has migrated yet
        await conn.execute(
            "UPDATE skuflow_orders SET state = 'closed' "
            "WHERE state IN ('in_erp', 'released', 'held')"
        )


async def _exceptions(conn: asyncpg.Connection) -> int:
    return await scalar(conn, "SELECT count(*) FROM skuflow_exceptions")


# --- orders into each ERP ---


class OrdersReport(msgspec.Struct, frozen=True):
    contender: str
    orders: int
    lines: int
    skus: int
    seconds: float  # first order consumed → last order released (PostgreSQL's clock)
    released: int
    failed: int  # orders the ERP refused, and events that became exceptions
    create_calls: int  # ERP requests that created orders (B1 POST Orders; ECC IDoc calls)
    erp_requests: int  # every ERP request: logins, master data, order states
    missing: int  # orders not in the ERP
    duplicated: int  # orders in the ERP more than once
    peak_mb: float

    @property
    def rate(self) -> float:
        return self.released / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        return self.missing + self.duplicated


def _prefix(contender: Contender) -> int:
    return 201 + CONTENDERS.index(contender)


async def orders_run(
    stack: Stack, topic: str, contender: Contender, count: int, skus: int
) -> OrdersReport:
    """Produce ``count`` orders, seed the simulator, run the worker until all are released."""
    erp = "ecc" if contender == "ecc" else "b1"
    prefix = _prefix(contender)
    sim: B1Simulator | EccSimulator
    if erp == "ecc":
        sim = ecc_simulator(skus, message_types=("MBGMCR", "ORDERS"))
        sim.sales.add_customer(customer_number(ECC_CUSTOMER), sales_areas=(ECC_SALES_AREA,))
    else:
        sim = b1_simulator(skus)
        sim.sales.add_customer(B1_CUSTOMER)
    await sim.start()
    worker = WorkerSpec(stack, f"{topic}.stock", fresh_group(f"orders-{contender}"), sim.url, erp)
    customer = ECC_CUSTOMER if erp == "ecc" else B1_CUSTOMER
    spec = OrderWorkerSpec(worker, topic, customer, batching=contender != "b1-single")
    lines: list[int] = []
    try:
        await _create_order_topics(stack, spec)
        await produce(stack.bootstrap, topic, order_records(prefix, count, skus, lines))
        conn = await asyncpg.connect(stack.database_url)
        try:
            ledger, report = await _until_released(conn, spec, prefix, count)
        finally:
            await conn.close()
        ids = [order_id(prefix, n) for n in range(count)]
        in_erp = _b1_orders(sim, ids) if isinstance(sim, B1Simulator) else _ecc_orders(sim, ids)
        return OrdersReport(
            contender=contender,
            orders=count,
            lines=sum(lines),
            skus=skus,
            seconds=ledger.seconds,
            released=ledger.released,
            failed=count - ledger.released,
            create_calls=_create_calls(sim),
            erp_requests=_round_trips(sim),
            missing=sum(1 for oid in ids if in_erp[oid] == 0),
            duplicated=sum(1 for oid in ids if in_erp[oid] > 1),
            peak_mb=report.peak_mb,
        )
    finally:
        await sim.stop()


async def _until_released(
    conn: asyncpg.Connection, spec: OrderWorkerSpec, prefix: int, count: int
) -> tuple[_Ledger, WorkerReport]:
    await close_earlier_orders(conn)
    baseline = await _exceptions(conn)

    async def progress() -> tuple[_Ledger, int]:
        return await _ledger(conn, prefix), await _exceptions(conn) - baseline

    def done(now: tuple[_Ledger, int]) -> bool:
        ledger, rejected = now
        return ledger.released + ledger.failed + rejected >= count

    def note(now: tuple[_Ledger, int]) -> str:
        return f"orders → ERP: {now[0].released:,} of {count:,} released"

    async def released(process: anyio.abc.Process) -> _Ledger:
        return (await poll_worker(process, progress, done, note))[0]

    _seconds, ledger, report = await run_worker(
        "bench.orders", _Command(worker=spec), released, limit_seconds=1_800
    )
    return ledger, report


def _b1_orders(sim: B1Simulator, ids: list[str]) -> Counter[str]:
    wanted = set(ids)
    rows = sim.sales.rows("Orders", [[]])
    return Counter(str(doc["NumAtCard"]) for doc in rows if doc.get("NumAtCard") in wanted)


def _ecc_orders(sim: EccSimulator, ids: list[str]) -> Counter[str]:
    return Counter({oid: len(sim.sales.orders_by_reference(oid, ORDER)) for oid in ids})


def _create_calls(sim: B1Simulator | EccSimulator) -> int:
    """HTTP requests that created orders: B1 ``POST /Orders`` alone, or a ``$batch`` with one
    or more of them; ECC IDoc requests."""
    if isinstance(sim, EccSimulator):
        return sum(1 for r in sim.requests if r.method == "POST" and "/idoc" in r.path)
    creating = [r for r in sim.requests if r.method == "POST" and r.path.endswith("/Orders")]
    return sum(1 for r in creating if not r.batch) + len({r.batch for r in creating if r.batch})


def _round_trips(sim: B1Simulator | EccSimulator) -> int:
    """Every HTTP request (a B1 ``$batch`` once, not its sub requests)."""
    if isinstance(sim, EccSimulator):
        return len(sim.requests)
    return sum(1 for r in sim.requests if not r.batch or r.operation == "$batch")


def orders_table(reports: list[OrdersReport]) -> list[str]:
    single = next((r for r in reports if r.contender == "b1-single"), reports[0])
    rows = [
        "| orders → ERP simulator, end to end (real worker, both classes) | orders (lines) "
        "| seconds | orders/s | vs B1 one call per order | ERP calls creating orders "
        "| round trips per order | all ERP requests per order | lost | worker peak RSS |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in reports:
        orders = f"{r.released:,}" if r.released == r.orders else f"{r.released:,} of {r.orders:,}"
        lost = f"{r.lost} (target 0: {'met' if r.lost == 0 else '**missed**'})"
        if r.lost:
            lost += f"; {r.missing} missing, {r.duplicated} twice"
        ratio = "1.00 (reference)" if r is single else f"{r.rate / single.rate:.2f}"
        rows.append(
            f"| {_LABELS[r.contender]} | {orders} ({r.lines:,}) | {r.seconds:.1f} | {r.rate:,.0f} "
            f"| {ratio} | {r.create_calls:,} | {r.create_calls / r.orders:.2f} "
            f"| {r.erp_requests / r.orders:.2f} | {lost} | {r.peak_mb:.0f} MB |"
        )
    return rows


_LABELS = {
    "b1-batched": "SAP B1: `$batch`, up to `orders.batch_max_orders` orders per round trip",
    "b1-single": "SAP B1: one `POST /Orders` per order (same connector, batching hidden)",
    "ecc": "**SAP ECC**: one ORDERS05 IDoc per order, followed to status 53",
}


def orders_note(reports: list[OrdersReport]) -> str:
    first = reports[0]
    settings = OrdersSettings()
    return (
        f"{first.orders:,} `order.received` events (1-3 lines, {first.skus} SKUs, 5 shipping "
        "locations, every order valid, one customer without holds or credit limit) produced "
        "first; seconds: the first order's `received_at` (its event consumed) to the last "
        "`released_at` in `skuflow_orders`, PostgreSQL's clock. Worker at the `[orders]` "
        f"defaults (`batch_max_orders` {settings.batch_max_orders}, `max_concurrent_writes` "
        f"{settings.max_concurrent_writes}, `watch_seconds` {settings.watch_seconds:g}); the "
        "simulator in the benchmark process (B1 without a conflict window; ECC applying IDocs "
        "out of sequence 20 ms after arrival, `ecc.poll_seconds` 0.05). B1 one call per order: "
        "the same connector passed to `Worker(erp=...)` with `create_sales_orders` hidden, so "
        "the order work sends one `POST /Orders` per order, "
        f"{settings.max_concurrent_writes} at once, where the batched run sends "
        f"{settings.max_concurrent_writes} `$batch` requests at once. ERP calls creating "
        "orders: B1 `POST /Orders` alone or `$batch` requests holding them, ECC IDoc requests; "
        "all ERP requests: every HTTP round trip the simulator recorded (a `$batch` once; "
        "login, master data, order states). Lost: orders the "
        "simulator holds other than exactly once. Peak RSS: VmHWM of the worker process."
    )


# --- order-to-release latency under a stock backlog ---


class StreamSpec(msgspec.Struct, frozen=True):
    bootstrap: str
    topic: str
    released: str
    prefix: int
    rate: float
    count: int
    skus: int


class StreamReport(msgspec.Struct, frozen=True):
    sent: int
    latencies: dict[str, float]  # by order id: seconds, produce → its order.released received


async def stream(spec: StreamSpec) -> StreamReport:
    """Send ``spec.count`` orders at ``spec.rate`` and time each one's ``order.released``."""
    rng = random.Random(spec.prefix)
    encoder = msgspec.json.Encoder()
    sent_at: dict[str, float] = {}
    latencies: dict[str, float] = {}
    every_one = anyio.Event()
    consumer = AIOKafkaConsumer(
        spec.released, bootstrap_servers=spec.bootstrap, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=spec.bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        await producer.partitions_for(spec.topic)  # metadata before the clock starts

        async def receive() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batch.values():
                    for record in records:
                        event = msgspec.json.decode(record.value)
                        oid = event.get("order_id")
                        if event.get("type") == "order.released" and oid in sent_at:
                            latencies.setdefault(oid, now - sent_at[oid])
                if len(latencies) == spec.count:
                    every_one.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            start = time.monotonic()
            for n in range(spec.count):
                await anyio.sleep(max(0.0, start + n / spec.rate - time.monotonic()))
                event = order_event(rng, order_id(spec.prefix, n), spec.skus, datetime.now(UTC))
                value = encoder.encode(event)
                sent_at[event.order_id] = time.time()
                await producer.send(spec.topic, value, key=event.order_id.encode())
            with anyio.move_on_after(SETTLE_SECONDS):
                await every_one.wait()
            tg.cancel_scope.cancel()
    finally:
        await producer.stop()
        await consumer.stop()
    return StreamReport(spec.count, latencies)


class Phases(msgspec.Struct, frozen=True):
    """Where an order's latency went, per released order (seconds): produced (its
    ``occurred_at``, stamped at the send) → consumed (``received_at``) → released
    (``released_at``: created in the ERP, watched, the outbox row committed) → seen."""

    consumed: list[float]
    released: list[float]
    seen: list[float]


class LatencyRun(msgspec.Struct, frozen=True):
    backlog: int
    run: UrgentRun  # its percentiles (never released = infinitely late); stock: lines posted
    phases: Phases
    staged: int  # stock lines staged while the stream ran
    lost: int  # streamed orders not in the ERP exactly once
    peak_mb: float


class _Stock(msgspec.Struct, frozen=True):
    staged: int  # stock lines in the database, all runs so far
    done: int  # ... posted, settled or rejected
    at: float  # time.perf_counter()

    def before(self, now: _Stock) -> bool:
        """More lines are staged ``now`` than at this mark."""
        return now.staged > self.staged


#: The stream's report, and the stock lines at its start and at its end.
_Streamed = tuple[StreamReport, _Stock, _Stock]


async def _stock(conn: asyncpg.Connection) -> _Stock:
    staged = await scalar(conn, "SELECT count(*) FROM skuflow_stock_lines")
    return _Stock(staged, (await stock_progress(conn))[0], time.perf_counter())


async def latency_run(
    stack: Stack, topic: str, *, backlog: int, keys: int, skus: int, rate: float, seconds: float
) -> LatencyRun:
    """Orders at ``rate`` for ``seconds`` while ``backlog`` stock adjustments (over ``keys``
    SKUs) are worked by the same worker process; ``backlog`` 0: the reference run."""
    prefix, warmup = (211, 219) if backlog else (210, 218)
    sim = b1_simulator(keys)
    sim.sales.add_customer(B1_CUSTOMER)
    await sim.start()
    worker = WorkerSpec(stack, f"{topic}.stock", fresh_group("order-latency"), sim.url)
    spec = OrderWorkerSpec(worker, topic, B1_CUSTOMER)
    count = round(rate * seconds)
    streamed = StreamSpec(stack.bootstrap, topic, f"{topic}.released", prefix, rate, count, skus)
    try:
        await _create_order_topics(stack, spec)
        if backlog:
            await produce(stack.bootstrap, worker.topic, Traffic(backlog, keys, seed=21).records())
        # One order first: without a backlog the stream waits until it is released.
        await produce(stack.bootstrap, topic, order_records(warmup, 1, skus, []))
        conn = await asyncpg.connect(stack.database_url)
        try:
            await close_earlier_orders(conn)
            first = await _stock(conn)

            async def run_stream(process: anyio.abc.Process) -> _Streamed:
                if backlog:
                    await poll_worker(process, lambda: _stock(conn), first.before)
                    await anyio.sleep(WARMUP_SECONDS)
                else:
                    await poll_worker(process, lambda: _ledger(conn, warmup), _any_released)
                before = await _stock(conn)
                report = await _run_stream(streamed)
                return report, before, await _stock(conn)

            _, (report, before, after), worker_report = await run_worker(
                "bench.orders", _Command(worker=spec), run_stream, limit_seconds=1_800
            )
            phases = await _phases(conn, prefix, report.latencies)
        finally:
            await conn.close()
        in_erp = _b1_orders(sim, [order_id(prefix, n) for n in range(count)])
        stock = Measurement(after.done - before.done, after.at - before.at)
        left = backlog - (after.done - first.done)
        return LatencyRun(
            backlog=backlog,
            run=UrgentRun("orders", report.sent, list(report.latencies.values()), stock, left),
            phases=phases,
            staged=after.staged - before.staged,
            lost=sum(1 for n in range(count) if in_erp[order_id(prefix, n)] != 1),
            peak_mb=worker_report.peak_mb,
        )
    finally:
        await sim.stop()


def _any_released(ledger: _Ledger) -> bool:
    return ledger.released > 0


class _Produced(msgspec.Struct):
    occurred_at: datetime


async def _phases(conn: asyncpg.Connection, prefix: int, latencies: dict[str, float]) -> Phases:
    rows = await conn.fetch(
        """SELECT order_id, payload, received_at, released_at FROM skuflow_orders
           WHERE order_id LIKE $1 AND released_at IS NOT NULL""",
        f"{prefix:03d}-%",
    )
    phases = Phases([], [], [])
    decode = msgspec.json.Decoder(_Produced).decode
    for row in rows:
        produced = decode(row["payload"]).occurred_at
        consumed = (row["received_at"] - produced).total_seconds()
        released = (row["released_at"] - row["received_at"]).total_seconds()
        phases.consumed.append(consumed)
        phases.released.append(released)
        if row["order_id"] in latencies:
            phases.seen.append(latencies[row["order_id"]] - consumed - released)
    return phases


async def _run_stream(spec: StreamSpec) -> StreamReport:
    command = _Command(stream=spec)
    argv = [sys.executable, "-m", "bench.orders", msgspec.json.encode(command).decode()]
    done = await anyio.run_process(argv, stderr=None)
    return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=StreamReport)


def latency_table(reference: LatencyRun, loaded: LatencyRun) -> list[str]:
    rows = [
        "| order → `order.released`, produce → seen on `topics.released` | orders | p50 ms "
        "| p95 ms | p99 ms | max ms | p50 / p99 ms: produced → consumed · consumed → released "
        "· released → seen | stock meanwhile | p99 vs no backlog | lost | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---|---|---|---|---:|",
    ]
    base = reference.run.percentile_ms(0.99)
    for case in (reference, loaded):
        run = case.run
        orders = f"{run.sent:,}" if run.handled == run.sent else f"{run.handled:,} of {run.sent:,}"
        cells = " | ".join(_ms(run.percentile_ms(q)) for q in (0.5, 0.95, 0.99, 1.0))
        phases = " · ".join(
            f"{_ms(_quantile_ms(values, 0.5))} / {_ms(_quantile_ms(values, 0.99))}"
            for values in (case.phases.consumed, case.phases.released, case.phases.seen)
        )
        if case.backlog:
            label = f"real worker (both classes), {case.backlog:,} stock adjustments being worked"
            left = f"{run.backlog_left:,} not posted at the end"
            stock = f"{case.staged:,} lines staged, {run.stock.rate:,.0f}/s posted ({left})"
            ratio = f"{run.percentile_ms(0.99) / base:,.1f}x"
        else:
            label, stock, ratio = "real worker (both classes), no stock", "—", "1.00 (reference)"
        rows.append(
            f"| {label} | {orders} | {cells} | {phases} | {stock} | {ratio} | {case.lost} "
            f"| {case.peak_mb:.0f} MB |"
        )
    return rows


def _quantile_ms(values: list[float], q: float) -> float:
    """Nearest rank of ``values`` (seconds) in ms (the phases: released orders only)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000 if ordered else math.nan


def latency_note(loaded: LatencyRun, rate: float) -> str:
    return (
        f"Orders at {rate:g}/s from a producer process of their own (1-3 lines, acks=all, "
        "linger 0); latency: `time.time()` when its `order.released` reaches a consumer in "
        "that process, minus `time.time()` just before the send. Nearest-rank percentiles "
        "over every order sent (never released = infinitely late). One worker process "
        "(`Worker`, both classes, `[orders]` defaults: `watch_seconds` "
        f"{OrdersSettings().watch_seconds:g}: an order is watched right after it is created, "
        "so its release does not wait for the period; but every period the cycle also reads "
        "every open order — released ones stay open until delivered — one transaction each, "
        "and creates nothing meanwhile), the B1 simulator in the benchmark process. "
        f"The stream starts {WARMUP_SECONDS:g} s after the first of {loaded.backlog:,} stock "
        "adjustments is staged (windows as in the stock case), or once a first order is "
        "released (no backlog). Stock meanwhile: lines staged and posted between the stream's "
        "first send and its end."
    )


def _ms(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:,.1f}"


def _note(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# --- the child processes ---


class _Command(msgspec.Struct, frozen=True, omit_defaults=True):
    """What ``python -m bench.orders`` runs: a worker or the order stream."""

    worker: OrderWorkerSpec | None = None
    stream: StreamSpec | None = None


def main() -> None:
    command = msgspec.json.decode(sys.argv[1], type=_Command)
    if command.worker is not None:
        erp = None if command.worker.batching else one_call_per_order
        serve(order_settings(command.worker), frozenset({"normal", "urgent"}), erp)
    elif command.stream is not None:
        tune_gc()
        run = anyio.run(stream, command.stream, backend="asyncio",
                        backend_options={"use_uvloop": True})  # fmt: skip
        print(msgspec.json.encode(run).decode())


if __name__ == "__main__":
    main()
