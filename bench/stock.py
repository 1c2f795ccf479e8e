"""Stock adjustments summarised into SAP Business One documents, end to end (issue 5).

The benchmark process produces ``adjustments`` ``stock.adjusted`` events over ``skus`` SKUs and
five locations (``LOC-01`` .. ``LOC-05`` → warehouses ``01`` .. ``05``), then starts the B1
Service Layer simulator with every SKU as an item with opening stock in every warehouse, then
runs the real worker (``skuflow.app.Worker``, normal class: stock handler, window flusher, B1
connector) in a process of its own (``python -m bench.stock '<WorkerSpec as JSON>'``) so its
peak RSS is its own ``VmHWM``. The benchmark process polls PostgreSQL until every staged line
is posted, settled or rejected, stops the worker (SIGTERM: it drains, then prints its peak),
and checks the simulator's stock of every (item, warehouse) against opening + every adjustment.
"""

from __future__ import annotations

import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import aiohttp
import anyio
import anyio.abc
import asyncpg
import msgspec

from bench.data import create_topics, produce, sku
from bench.stack import Stack, fresh_group
from config.settings import (
    B1Settings,
    DatabaseSettings,
    EccSettings,
    EngineSettings,
    ErpSettings,
    HealthSettings,
    KafkaSettings,
    LogSettings,
    MappingsSettings,
    Secret,
    Settings,
    StockSettings,
    TopicsSettings,
)
from devstack.sims.b1.server import B1Simulator
from devstack.sims.ecc.server import EccSimulator
from handlers.stock.events import StockAdjusted
from skuflow.app import Worker, run_until_signalled, tune_gc
from worker.logs import configure_logging

_T = TypeVar("_T")
_REPO = Path(__file__).resolve().parents[1]
LOCATIONS = {f"LOC-{n:02d}": f"{n:02d}" for n in range(1, 6)}
OPENING = 1_000
#: Small signed quantities, a little more in than out.
QUANTITIES = (-3, -2, -1, 1, 2, 4)
WINDOW_SECONDS = 2.0
WINDOW_MAX_LINES = 500
_PASSWORD = "b1-bench"
_EPOCH = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
_DONE_STATES = "('posted', 'settled', 'rejected')"
_ERP_WRITES = frozenset({"InventoryGenEntries", "InventoryGenExits"})


#: SAP ECC: the same locations as storage locations of one plant.
ECC_PLANT = "1000"
ECC_LOCATIONS = {location: f"{ECC_PLANT}/00{code}" for location, code in LOCATIONS.items()}
_ECC = {
    "sid": "ECD",
    "client": "100",
    "user": "SKUFLOW",
    "partner": "SKUFLOW",
    "port": "SKUFLOWPRT",
}


class WorkerSpec(msgspec.Struct, frozen=True):
    stack: Stack
    topic: str
    group: str
    erp_url: str
    erp: str = "b1"


class WorkerReport(msgspec.Struct, frozen=True):
    peak_mb: float  # VmHWM of the worker process after it drained and stopped
    exit_code: int


class StockReport(msgspec.Struct, frozen=True):
    adjustments: int
    skus: int
    warehouses: int
    produce_seconds: float
    seconds: float  # worker spawned (all events produced) → every line posted/settled/rejected
    lines_done: int
    exceptions: int
    documents: int
    failed_writes: int  # POSTs to InventoryGenEntries/Exits that did not create a document
    places: int
    lost: int  # (item, warehouse) whose simulator stock != opening + every adjustment
    peak_mb: float
    lock_storm: float = 0.0
    erp: str = "b1"

    @property
    def erp_writes(self) -> int:
        return self.documents + self.failed_writes

    @property
    def rate(self) -> float:
        return self.adjustments / self.seconds

    @property
    def ratio(self) -> float:
        return self.adjustments / max(1, self.erp_writes)


class Traffic:
    """``count`` adjustments over ``skus`` SKUs and :data:`LOCATIONS`; ``expected`` fills in as
    the records are drawn: the net quantity per (item, warehouse). A draw that would take a
    place below zero flips its sign, so no posting can ever be refused for negative stock."""

    def __init__(self, count: int, skus: int, seed: int) -> None:
        self.count = count
        self.skus = skus
        self.seed = seed
        self.expected: dict[tuple[str, str], int] = {}

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        rng = random.Random(self.seed)
        encoder = msgspec.json.Encoder()
        locations = list(LOCATIONS.items())
        expected = self.expected
        for n in range(self.count):
            item = sku(rng.randrange(self.skus))
            location, warehouse = rng.choice(locations)
            quantity = rng.choice(QUANTITIES)
            net = expected.get((item, warehouse), 0)
            if OPENING + net + quantity < 0:
                quantity = -quantity
            expected[item, warehouse] = net + quantity
            event = StockAdjusted(
                event_id=f"b1-{self.seed}-{n}",
                occurred_at=_EPOCH + timedelta(milliseconds=n),
                source="ims",
                source_ref=f"IMS-ADJ-{n}",
                sku=item,
                warehouse=location,
                quantity=Decimal(quantity),
                reason="cycle count correction",
            )
            yield item.encode(), encoder.encode(event)


def worker_settings(spec: WorkerSpec) -> Settings:
    """The worker's settings: the bench stack, B1 at the simulator, 5 mapped locations."""
    settings = Settings(
        kafka=KafkaSettings(bootstrap=spec.stack.bootstrap, group=spec.group, client_id="bench"),
        database=DatabaseSettings(url=Secret(spec.stack.database_url)),
        topics=TopicsSettings(
            stock=spec.topic, dispatch=f"{spec.topic}.dispatch", dead_letter=f"{spec.topic}.dlq"
        ),
        health=HealthSettings(port=0, host="127.0.0.1"),
        log=LogSettings(format="console", level="WARNING"),
        engine=EngineSettings(),
        stock=StockSettings(window_seconds=WINDOW_SECONDS, window_max_lines=WINDOW_MAX_LINES),
    )
    return with_erp(settings, spec.erp, spec.erp_url)


def with_erp(settings: Settings, erp: str, url: str) -> Settings:
    """``settings`` posting to the simulator at ``url``: ``erp.kind``, its section (the other
    at its defaults) and :data:`LOCATIONS` mapped to its warehouses."""
    return msgspec.structs.replace(
        settings,
        b1=B1Settings(url=url if erp == "b1" else B1Settings().url, password=Secret(_PASSWORD)),
        erp=ErpSettings(kind="ecc" if erp == "ecc" else "b1"),
        ecc=EccSettings(
            url=url if erp == "ecc" else EccSettings().url,
            client=_ECC["client"],
            sid=_ECC["sid"],
            user=_ECC["user"],
            password=Secret(_PASSWORD),
            sender_port=_ECC["port"],
            sender_partner=_ECC["partner"],
            poll_seconds=0.05,
            poll_max_seconds=0.5,
        ),
        mappings=MappingsSettings(warehouses=ECC_LOCATIONS if erp == "ecc" else LOCATIONS),
    )


def b1_simulator(skus: int) -> B1Simulator:
    """The B1 simulator (not started) with ``skus`` items of :data:`OPENING` stock in every
    warehouse of :data:`LOCATIONS`, no conflict window (postings of an item may follow each
    other at once)."""
    sim = B1Simulator(password=_PASSWORD)
    sim.set_faults(conflict_window_ms=0)
    opening = dict.fromkeys(LOCATIONS.values(), OPENING)
    for n in range(skus):
        sim.add_item(sku(n), stock=opening)
    return sim


def ecc_simulator(skus: int, *, message_types: tuple[str, ...] = ("MBGMCR",)) -> EccSimulator:
    """The ECC simulator (not started): skuflow's partner profile for ``message_types``, the
    storage locations of :data:`ECC_LOCATIONS`, ``skus`` materials with :data:`OPENING` stock
    in each; IDocs applied out of sequence, each 20 ms after it arrived."""
    sim = EccSimulator(
        sid=_ECC["sid"], client=_ECC["client"], user=_ECC["user"], password=_PASSWORD, seed=5
    )
    sim.add_partner(_ECC["partner"], _ECC["port"], message_types=message_types)
    for code in LOCATIONS.values():
        sim.add_storage_location(ECC_PLANT, f"00{code}")
    for n in range(skus):
        sim.add_material(sku(n), [ECC_PLANT])
        for code in LOCATIONS.values():
            sim.set_stock(sku(n), ECC_PLANT, f"00{code}", OPENING)
    sim.set_processing(ordering="random", delay_ms=20, tick_ms=10)
    return sim


async def scalar(conn: asyncpg.Connection, query: str, *args: object) -> int:
    """An integer query's answer; 0 before the worker has created its tables."""
    try:
        return int(await conn.fetchval(query, *args) or 0)
    except asyncpg.UndefinedTableError:  # the worker has not migrated yet
        return 0


async def stock_progress(conn: asyncpg.Connection) -> tuple[int, int]:
    """(stock lines posted, settled or rejected; exception records), all runs so far."""
    done = await scalar(
        conn, f"SELECT count(*) FROM skuflow_stock_lines WHERE state IN {_DONE_STATES}"
    )
    return done, await scalar(conn, "SELECT count(*) FROM skuflow_exceptions")


def _note(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


async def _until_done(
    conn: asyncpg.Connection,
    process: anyio.abc.Process,
    documents: Callable[[], int],
    adjustments: int,
    baseline: tuple[int, int],
) -> tuple[int, int]:
    """Poll until every adjustment is a done line or an exception; (lines, exceptions)."""

    async def progress() -> tuple[int, int]:
        done, exceptions = await stock_progress(conn)
        return done - baseline[0], exceptions - baseline[1]

    return await poll_worker(
        process,
        progress,
        lambda now: sum(now) >= adjustments,
        lambda now: f"stock → ERP: {now[0]:,} lines done, {documents():,} documents",
    )


async def poll_worker(
    process: anyio.abc.Process | None,
    progress: Callable[[], Awaitable[_T]],
    done: Callable[[_T], bool],
    note: Callable[[_T], str] | None = None,
) -> _T:
    """``progress()`` every 0.1 s until ``done`` says yes (and ``note`` of it every 15 s); the
    worker ``process`` must not exit meanwhile."""
    last_note = time.perf_counter()
    while True:
        now = await progress()
        if done(now):
            return now
        if process is not None and process.returncode is not None:
            raise RuntimeError(f"worker exited early ({process.returncode})")
        if note is not None and time.perf_counter() - last_note >= 15:
            last_note = time.perf_counter()
            _note(note(now))
        await anyio.sleep(0.1)


async def run_worker(
    module: str,
    spec: msgspec.Struct,
    until: Callable[[anyio.abc.Process], Awaitable[_T]],
    limit_seconds: float,
) -> tuple[float, _T, WorkerReport]:
    """``python -m <module> '<spec as JSON>'`` (a worker process: :func:`serve`) until
    ``until(process)`` returns, then stopped: (seconds from the spawn to ``until``'s answer,
    that answer, the worker's report). On a failure the tail of its stderr is printed."""
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = await anyio.open_process(
            [sys.executable, "-m", module, msgspec.json.encode(spec).decode()],
            cwd=_REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            with anyio.fail_after(limit_seconds):
                answer = await until(process)
            seconds = time.perf_counter() - started
            report = await _stop(process)
        except BaseException:
            if process.returncode is None:
                process.kill()
            log.seek(0)
            _note("worker stderr (tail):\n" + log.read()[-4000:].decode(errors="replace"))
            raise
    return seconds, answer, report


async def _stop(process: anyio.abc.Process) -> WorkerReport:
    """SIGTERM: the worker drains, stops and prints its :class:`WorkerReport`."""
    process.send_signal(signal.SIGTERM)
    assert process.stdout is not None
    output = b""
    with anyio.fail_after(120):
        async for chunk in process.stdout:
            output += chunk
        await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"worker failed ({process.returncode})")
    return msgspec.json.decode(output.strip().splitlines()[-1], type=WorkerReport)


async def stock_run(
    stack: Stack,
    topic: str,
    adjustments: int,
    skus: int,
    *,
    limit_seconds: float = 1_800,
    lock_storm: float = 0.0,
    erp: str = "b1",
) -> StockReport:
    """Produce, seed the simulator, run the worker subprocess until everything is posted."""
    await create_topics(stack.bootstrap, topic, f"{topic}.dispatch", f"{topic}.dlq")
    # (event ids carry the seed: a second run into the same database must not repeat them)
    traffic = Traffic(
        adjustments, skus, seed=(6 if lock_storm else 5) + (10 if erp == "ecc" else 0)
    )
    started = time.perf_counter()
    await produce(stack.bootstrap, topic, traffic.records())
    produce_seconds = time.perf_counter() - started
    _note(f"stock → B1: {adjustments:,} produced in {produce_seconds:.1f} s; seeding simulator")

    if erp == "ecc":
        return await _ecc_run(stack, topic, adjustments, skus, traffic, produce_seconds,
                              limit_seconds)  # fmt: skip
    sim = b1_simulator(skus)
    # lock_storm: that share of postings refused with ODBC -2039 ("another user modified")
    sim.set_faults(lock_storm_rate=lock_storm)
    await sim.start()
    conn = await asyncpg.connect(stack.database_url)
    try:
        spec = WorkerSpec(stack, topic, fresh_group("stock-b1"), sim.url)
        seconds, done, exceptions, report = await _worker(
            spec, conn, lambda: len(sim.documents), adjustments, limit_seconds
        )
        lost = sum(
            1
            for item in (sku(n) for n in range(skus))
            for warehouse in LOCATIONS.values()
            if sim.stock(item, warehouse) != OPENING + traffic.expected.get((item, warehouse), 0)
        )
        failed = sum(
            1
            for r in sim.requests
            if r.method == "POST" and r.operation in _ERP_WRITES and r.status != 201
        )
        return StockReport(
            adjustments=adjustments,
            skus=skus,
            warehouses=len(LOCATIONS),
            produce_seconds=produce_seconds,
            seconds=seconds,
            lines_done=done,
            exceptions=exceptions,
            documents=len(sim.documents),
            failed_writes=failed,
            places=skus * len(LOCATIONS),
            lost=lost,
            peak_mb=report.peak_mb,
            lock_storm=lock_storm,
        )
    finally:
        await conn.close()
        await sim.stop()


async def _worker(
    spec: WorkerSpec,
    conn: asyncpg.Connection,
    documents: Callable[[], int],
    adjustments: int,
    limit_seconds: float,
) -> tuple[float, int, int, WorkerReport]:
    """The worker subprocess until every adjustment is done: (seconds, lines, exceptions,
    its report)."""
    baseline = await stock_progress(conn)

    async def done(process: anyio.abc.Process) -> tuple[int, int]:
        return await _until_done(conn, process, documents, adjustments, baseline)

    seconds, (lines, exceptions), report = await run_worker(
        "bench.stock", spec, done, limit_seconds
    )
    return seconds, lines, exceptions, report


async def _ecc_run(
    stack: Stack,
    topic: str,
    adjustments: int,
    skus: int,
    traffic: Traffic,
    produce_seconds: float,
    limit_seconds: float,
) -> StockReport:
    """The same traffic to the SAP ECC simulator, which applies IDocs out of sequence."""
    sim = ecc_simulator(skus)
    await sim.start()
    conn = await asyncpg.connect(stack.database_url)
    try:
        spec = WorkerSpec(stack, topic, fresh_group("stock-ecc"), sim.url, erp="ecc")
        seconds, done, exceptions, report = await _worker(
            spec, conn, lambda: len(sim.documents), adjustments, limit_seconds
        )
        lost = sum(
            1
            for item in (sku(n) for n in range(skus))
            for code in LOCATIONS.values()
            if sim.stock(item, ECC_PLANT, f"00{code}")
            != OPENING + traffic.expected.get((item, code), 0)
        )
        return StockReport(
            adjustments=adjustments,
            skus=skus,
            warehouses=len(LOCATIONS),
            produce_seconds=produce_seconds,
            seconds=seconds,
            lines_done=done,
            exceptions=exceptions,
            documents=len(sim.documents),
            failed_writes=len(sim.idocs) - len(sim.documents),  # IDocs that did not post
            places=skus * len(LOCATIONS),
            lost=lost,
            peak_mb=report.peak_mb,
            erp="ecc",
        )
    finally:
        await conn.close()
        await sim.stop()


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve(
    settings: Settings,
    classes: frozenset[str],
    erp: Callable[[Settings, aiohttp.ClientSession], object] | None = None,
) -> None:
    """A worker process: ``skuflow run`` (``--class`` when ``classes`` is one) on ``settings``
    until SIGTERM, then its :class:`WorkerReport` on stdout. ``erp``: builds the ERP connector
    to use instead of the configured one (on a session of its own)."""
    configure_logging(settings.log.format, settings.log.level)
    tune_gc()  # as `skuflow run` does

    async def run() -> int:
        if erp is None:
            return await run_until_signalled(Worker(settings, classes=classes))
        async with aiohttp.ClientSession() as session:
            worker = Worker(settings, classes=classes, erp=erp(settings, session))
            return await run_until_signalled(worker)

    code = anyio.run(run, backend="asyncio", backend_options={"use_uvloop": True})
    print(msgspec.json.encode(WorkerReport(peak_mb=_hwm_mb(), exit_code=code)).decode())
    sys.exit(code)


def main() -> None:
    """The worker process: ``skuflow run --class normal`` on :func:`worker_settings`."""
    spec = msgspec.json.decode(sys.argv[1], type=WorkerSpec)
    serve(worker_settings(spec), frozenset({"normal"}))


if __name__ == "__main__":
    main()
