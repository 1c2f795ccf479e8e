"""``skuflow dev``: broker, PostgreSQL, sample traffic, the worker and a live view, in one process.

Startup is synchronous and printed step by step: the broker (Apache Kafka on the JDK, Tansu
without one) and an embedded PostgreSQL under ``<cache>/dev/<pid>/``. In the event loop the
Amazon SP-API simulator and the SAP B1 Service Layer simulator start first (``[spapi]`` and
``[b1]`` point at them: the real dispatch and stock handlers run; every SKU of the sample
catalogue is an item in the warehouses ``01``..``03`` that ``LOC-01``..``LOC-03`` map to; with
``--erp ecc`` the SAP ECC simulator instead, ``[erp] kind = "ecc"`` and ``[ecc]`` pointed at it,
every SKU a material of plant ``1000`` in the storage locations ``1000/0001``..``1000/0003``,
IDocs processed out of sequence), then
one anyio task group runs the sample producer (stock adjustments and bad input), the order
traffic (:mod:`devstack.order_traffic`: Amazon orders made at the SP-API simulator and captured by
the real poller — ``[orders] capture`` on, at a demo's pace — the warehouse shipping what skuflow
releases and taking returns back, the ERP's users holding customers and approving orders, with
the customers of :mod:`devstack.backoffice` seeded in the ERP), the :class:`~skuflow.app.Worker`
and the view (a status line every 5 s with ``--no-view``; both in :mod:`devstack.view`). With
``--erp ecc`` and no ECC sales connector in the build, there is no order traffic: the sample
producer sends dispatches of orders it registers with the simulator, as before the order flow.
The first Ctrl-C/SIGTERM (or ``--duration``) stops the traffic and drains the worker; a second
one exits at once. Broker and PostgreSQL are stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import anyio
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from msgspec.structs import replace
from rich.console import Console

from config.settings import (
    B1Settings,
    ErpSettings,
    MappingsSettings,
    OrdersSettings,
    Secret,
    Settings,
    StockSettings,
)
from devstack.backoffice import (
    APPROVAL_MARKETPLACE,
    B1_CUSTOMERS,
    ECC_CUSTOMERS,
    HOLD_MARKETPLACES,
    B1BackOffice,
    EccBackOffice,
    ecc_sales_missing,
    seed_b1_customers,
    seed_ecc_customers,
)
from devstack.kafka import KAFKA_VERSION, TANSU_LIMITS, KafkaBroker, TansuBroker, start_broker
from devstack.order_traffic import OrderTraffic, OrderTrafficStats
from devstack.orders import SHIPPING_LOCATION, SampleOrders
from devstack.postgres import EmbeddedPostgres, create_database
from devstack.sims.b1.server import B1Simulator
from devstack.sims.ecc.server import EccSimulator
from devstack.sims.spapi.server import USAGE_PLANS, SpApiSimulator
from devstack.traffic import (
    BATCH_LOTS,
    DISPATCH_SHARE,
    WAREHOUSES,
    SampleEvents,
    SampleOrder,
    TrafficStats,
    opening_serial,
    produce_sample_traffic,
)
from devstack.view import (
    DevStats,
    Snapshot,
    configure_logging,
    live_view,
    status_lines,
)
from skuflow.app import VERSION, Worker, install_uvloop
from worker.errors import SkuflowError
from worker.tracing import configure_tracing

__all__ = ["run_dev"]

_REPO_ROOT = Path(__file__).resolve().parents[1]
Say = Callable[[str], None]
Broker = KafkaBroker | TansuBroker
#: The dev app's LWA credentials: only the in-process simulator knows them.
_LWA = ("amzn1.application-oa2-client.skuflow-dev", "skuflow-dev-secret", "Atzr|skuflow-dev")
_B1 = ("SBODEMO", "manager", "skuflow-dev-b1-password")  # the B1 simulator's company, login
#: ERP warehouse per location; opening stock per warehouse (serials: per serial-managed item).
_ERP_WAREHOUSES = {location: f"{n:02d}" for n, location in enumerate(WAREHOUSES, 1)}
_OPENING, _OPENING_SERIALS, _DEV_WINDOW_SECONDS = 10_000, 2_000, 5.0
#: Returns in damaged condition go to their own location (B1 warehouse DMG, ECC 1000/0009).
_DAMAGED, _B1_DAMAGED, _ECC_DAMAGED = "LOC-DMG", "DMG", "1000/0009"
#: Orders a second at most; each makes ~1.2 packages, and the dispatches stay within 3/4 of
#: the confirmShipment rate, as before the order flow.
_ORDER_RATE, _PACKAGES_PER_ORDER = 1.0, 1.2
#: ``[orders]`` at a demo's pace, where the configuration leaves a setting at its default:
#: the poller asks every second (searchOrders paced at 1/s, burst 5 — Amazon's plan is
#: 0.0056/s), reads 15 s again, the ERP holds are read every 2 s, documents posted in 2 s
#: windows.
_ORDERS_PACE: dict[str, object] = {
    "capture_poll_seconds": 1.0,
    "capture_rate_per_second": 1.0,
    "capture_burst": 5,
    "capture_overlap_seconds": 15.0,
    "capture_lookback_seconds": 600.0,
    "watch_seconds": 2.0,
    "window_seconds": 2.0,
    "retry_max_seconds": 10.0,
}
#: ``--erp ecc``: the ECC simulator's system (SID, client, RFC user, password), skuflow's logical
#: system and port as its WE20 partner profile knows them, the plant every location is a storage
#: location of (``LOC-01`` → ``1000/0001``), and how it processes inbound IDocs: out of
#: sequence, several at once, each a little later than it arrived — as ECC may.
_ECC = ("ECD", "100", "SKUFLOW_RFC", "skuflow-dev-ecc-password")
_ECC_PARTNER, _ECC_PORT, _ECC_PLANT = "SKUFLOW", "SKUFLOWPRT", "1000"
_ECC_WAREHOUSES = {location: f"{_ECC_PLANT}/{n:04d}" for n, location in enumerate(WAREHOUSES, 1)}
_ECC_MESSAGE_TYPES = ("MBGMCR", "ORDERS")  # stock; sales orders (when the connector has them)
_ECC_PROCESSING: dict[str, object] = {"ordering": "parallel", "delay_ms": 150, "apply_ms": 20}
Erp = B1Simulator | EccSimulator


def run_dev(settings: Settings, args: argparse.Namespace) -> int:
    """The ``skuflow dev`` command; returns the exit status (0 after a clean stop)."""
    rate, skus, duration = float(args.rate), int(args.skus), args.duration
    erp_kind = str(getattr(args, "erp", "b1"))
    if erp_kind not in ("b1", "ecc"):
        raise SkuflowError("--erp must be b1 or ecc")
    if not (rate > 0 and math.isfinite(rate)) or skus < 1:
        raise SkuflowError("--rate must be > 0 and --skus >= 1")
    if duration is not None and not duration > 0:
        raise SkuflowError("--duration must be > 0")
    console = Console(highlight=False)
    view = not args.no_view and console.is_terminal

    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True)

    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C until the loop runs
    broker: Broker | None = None
    postgres: EmbeddedPostgres | None = None
    handlers: list[logging.Handler] = []
    workdir, began = _workdir(), time.monotonic()
    say(f"skuflow dev: starting the embedded stack in {workdir}")
    try:
        step = time.monotonic()
        broker = start_broker(workdir / "kafka", prefer=args.broker)
        kind = f"Apache Kafka {KAFKA_VERSION}" if isinstance(broker, KafkaBroker) else "Tansu"
        say(f"  kafka       {_took(step)} (pid {broker.pid}): {kind} at {broker.bootstrap}")
        if isinstance(broker, TansuBroker) and args.broker == "tansu":
            say(f"  warning     {TANSU_LIMITS}")
        step = time.monotonic()
        postgres = EmbeddedPostgres(workdir / "pgdata", keep_data=False)
        postgres.start()
        db_url = create_database(postgres.url, "skuflow")
        say(f"  postgresql  {_took(step)} (pid {postgres.pid}): {db_url}")
        dev = _dev_settings(
            settings, broker.bootstrap, db_url, idempotent_producer=isinstance(broker, KafkaBroker)
        )
        log_file = workdir / "worker.log"
        logs = str(log_file) if view else f"stderr (repeats thinned out); all of them in {log_file}"
        handlers, throttle = configure_logging(dev.log.level, log_file, to_stderr=not view)
        facts = {"stack": f"{kind} {broker.bootstrap} · PostgreSQL pid {postgres.pid}"}

        async def main() -> int:
            step, (client_id, secret, token) = time.monotonic(), _LWA
            sim = SpApiSimulator(client_id=client_id, client_secret=secret, refresh_token=token)
            erp = _erp_simulator(erp_kind)
            await sim.start()  # before the worker: its handlers call the simulators
            try:
                say(f"  sp-api      {_took(step)}: Amazon SP-API simulator at {sim.endpoint}")
                step = time.monotonic()
                await erp.start()
                app = _DevApp(dev, sim, erp, say, rate=rate, skus=skus, duration=duration)
                if isinstance(erp, EccSimulator):
                    say(
                        f"  sap ecc     {_took(step)}: ECC simulator (IDoc-XML, SOAP-RFC) at "
                        f"{erp.url}, {erp.logical_system}"
                    )
                    app.facts["erp"] = f"SAP ECC simulator at {erp.url}"
                else:
                    say(f"  sap b1      {_took(step)}: Service Layer simulator at {erp.url}")
                    app.facts["erp"] = f"SAP B1 simulator at {erp.url}"
                app.stats.throttle = throttle  # counts what the stderr log handler held back
                app.facts.update(facts)
                app.facts.update(logs=logs, amazon=f"simulator at {sim.endpoint}")
                return await app.run(console if view else None, began)
            finally:
                with anyio.CancelScope(shield=True):
                    await erp.stop()
                    await sim.stop()

        options = {"use_uvloop": True} if install_uvloop() is not None else {}
        return int(anyio.run(main, backend_options=options))
    except KeyboardInterrupt:
        say("skuflow dev: interrupted; stopping what was started")
        return 130
    except Exception as exc:
        if handlers:  # the traceback goes to the log file, one line to the terminal
            logging.getLogger("skuflow.dev").exception("skuflow dev failed")
        print(f"skuflow: error: {exc}\n  (files of this run: {workdir})", file=sys.stderr)
        return 1
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
        signal.signal(signal.SIGTERM, _interrupt)
        _stop_stack(broker, postgres, workdir, say)
        signal.signal(signal.SIGTERM, previous_sigterm)


class _DevApp:
    """The asynchronous part: topics, then traffic + worker + view in one task group."""

    def __init__(
        self,
        settings: Settings,
        sim: SpApiSimulator,
        erp: Erp,
        say: Say,
        *,
        rate: float,
        skus: int,
        duration: float | None,
    ) -> None:
        self.settings, self.sim, self.say = _with_simulators(settings, sim, erp), sim, say
        self.warehouses = _ECC_WAREHOUSES if isinstance(erp, EccSimulator) else _ERP_WAREHOUSES
        self.rate, self.skus, self.duration = rate, skus, duration
        # Like a real seller's, the dispatches stay within the confirmShipment rate, with room
        self.plan = min(USAGE_PLANS["confirmShipment"][0], settings.spapi.rate_per_second)
        self.share = min(DISPATCH_SHARE, 0.75 * self.plan / rate)
        on_ecc = isinstance(erp, EccSimulator)
        self.order_stats = OrderTrafficStats(erp="SAP ECC" if on_ecc else "SAP B1")
        self.order_stats.off = ecc_sales_missing() if on_ecc else None
        run = os.urandom(3).hex()
        # With the order flow the dispatches are the warehouse's, of the orders it was released
        self.events = SampleEvents(
            skus,
            run=run,
            dispatch_share=self.share if self.order_stats.off else 0.0,
            on_order=self._register if self.order_stats.off else None,
            unique_serials=isinstance(erp, EccSimulator),  # ECC: a serial is unique per material
        )
        if isinstance(erp, EccSimulator):
            _seed_ecc(erp, self.events, sales=self.order_stats.off is None)
        else:
            _seed_erp(erp, self.events)
        self.order_rate = min(_ORDER_RATE, self.share * rate / _PACKAGES_PER_ORDER)
        self.traffic = TrafficStats()
        self.order_traffic = None if self.order_stats.off else self._order_traffic(erp, run)
        # Tracing as `skuflow run` has it: on when OTEL_* names an exporter or endpoint.
        self.worker = Worker(self.settings, tracer_provider=configure_tracing(VERSION))
        b1, ecc = (None, erp) if isinstance(erp, EccSimulator) else (erp, None)
        self.stats = DevStats(
            self.settings, self.worker, self.traffic, None, sim, b1, ecc, orders=self.order_stats
        )
        self.facts: dict[str, str] = {}
        self.state = "starting"
        self.view = False
        self._traffic_scope = anyio.CancelScope()

    async def run(self, console: Console | None, began: float) -> int:
        rate, skus, group = self.rate, self.skus, self.settings.kafka.group
        self.say(f"  worker      group {group}; logs to {self.facts.get('logs')}")
        self.say(f"  traffic     {rate:g} events/s over {skus} SKUs at {', '.join(WAREHOUSES)}")
        if self.order_traffic is None:
            self.say(
                f"  dispatches  {self.share * rate:.3g}/s of them: within 3/4 of the "
                f"{self.plan:g}/s confirmShipment rate (Amazon's usage plan)"
            )
            self.say(f"  orders      {self.order_stats.off}: no order traffic")
        else:
            orders = self.settings.orders
            self.say(
                f"  orders      {self.order_rate:.2g}/s at the SP-API simulator, captured by the "
                f"poller (every {orders.capture_poll_seconds:g}s, searchOrders at "
                f"{orders.capture_rate_per_second:g}/s; Amazon's plan is 0.0056/s); their "
                f"dispatches within 3/4 of the {self.plan:g}/s confirmShipment rate"
            )
            customers = B1_CUSTOMERS if self.order_stats.erp == "SAP B1" else ECC_CUSTOMERS
            self.say(
                f"  customers   {', '.join(f'{m}→{c}' for m, c in customers.items())}; credit "
                f"holds on {' / '.join(customers[m] for m in HOLD_MARKETPLACES)} in turn, "
                f"{customers[APPROVAL_MARKETPLACE]} approved"
            )
        self.say(
            f"  stock       windows of {self.settings.stock.window_seconds:g}s; "
            f"{', '.join(f'{k}→{v}' for k, v in self.warehouses.items())}; "
            f"{len(self.events.skus)} items, ~1% ghost stock (unknown SKU, LOC-99)"
        )
        topics, step = self.settings.topics, time.monotonic()
        wanted = {topics.stock: 6, topics.dispatch: 6, topics.dead_letter: 1}
        wanted |= {topics.orders: 6, topics.returns: 3, topics.released: 3}
        await _create_topics(self.settings.kafka.bootstrap, wanted, self.settings.kafka.group)
        listed = ", ".join(f"{name} x{count}" for name, count in wanted.items())
        self.say(f"  topics      {_took(step)}: {listed}")
        self.say(f"stack up in {time.monotonic() - began:.1f}s. Ctrl-C to stop")
        self.stats.start()
        self.view, counted = console is not None, False
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signals, tg.cancel_scope)
            tg.start_soon(self._produce)
            tg.start_soon(self.stats.poll)
            if self.duration is not None:
                tg.start_soon(self._stop_after, self.duration)
            if console is not None:
                tg.start_soon(live_view, console, self.snapshot, self.facts)
            else:
                tg.start_soon(status_lines, self.say, self.snapshot)
            await self.worker.run()
            self.state = "stopped"
            counted = await self.stats.count_final()
            tg.cancel_scope.cancel()
        if self.state != "stopped":  # a second signal cut the drain short
            self.state = "exited without draining"
        if not counted:
            await self.stats.count_final()
        self.say(self.stats.summary(self.state))
        return 0 if self.state == "stopped" else 130

    def snapshot(self) -> Snapshot:
        """The numbers for the view; notices when the worker has joined its group."""
        engines = self.worker.engines
        if self.state == "starting" and len(engines) == 2 and all(e.joined for e in engines):
            self.state = "running"
        return self.stats.snapshot(self.state)

    def stop(self, why: str) -> None:
        if self.state in ("starting", "running"):
            self.state = "draining"
            if not self.view:
                self.say(f"stopping ({why}): traffic stopped, worker draining")
            self._traffic_scope.cancel()
            self.worker.request_stop()

    async def _signals(self, everything: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self.state not in ("starting", "running"):
                    everything.cancel()
                    return
                self.stop(signum.name)

    async def _stop_after(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self.stop(f"--duration {seconds:g}s elapsed")

    async def _produce(self) -> None:
        bootstrap, topics = self.settings.kafka.bootstrap, self.settings.topics
        with self._traffic_scope:
            async with anyio.create_task_group() as tg:
                if self.order_traffic is not None:
                    tg.start_soon(self.order_traffic.run)
                await produce_sample_traffic(
                    bootstrap,
                    topics.stock,
                    topics.dispatch,
                    rate=self.rate,
                    skus=self.skus,
                    stats=self.traffic,
                    events=self.events,
                )

    def _order_traffic(self, erp: Erp, run: str) -> OrderTraffic:
        """Orders over the SKUs sold by the unit; the ERP's customers and back office; the
        SP-API simulator's searchOrders plan as ``[orders]`` has it."""
        events, orders = self.events, self.settings.orders
        plain = [
            sku
            for sku in events.skus
            if sku not in events.batch_skus | events.serial_skus | events.weight_skus
        ]
        self.sim.set_faults(
            usage_plans={"searchOrders": (orders.capture_rate_per_second, orders.capture_burst)}
        )
        customers = orders.default_customers
        office = EccBackOffice(erp) if isinstance(erp, EccSimulator) else B1BackOffice(erp)
        return OrderTraffic(
            bootstrap=self.settings.kafka.bootstrap,
            topics=self.settings.topics,
            sim=self.sim,
            office=office,
            orders=SampleOrders(plain, run=run),
            customers=customers,
            hold_customers=tuple(customers[m] for m in HOLD_MARKETPLACES),
            approval_customer=customers[APPROVAL_MARKETPLACE],
            rate=self.order_rate,
            # created with lastUpdatedTime in the past by the search's settle: found at once
            lag=orders.capture_settle_seconds,
            # nothing of a customer about to be held is on its way: the last packages of the
            # orders that left (3 s) and two document windows
            freeze_seconds=3.0 + 2 * orders.window_seconds + 2.0,
            stats=self.order_stats,
            traffic=self.traffic,
        )

    def _register(self, order: SampleOrder) -> None:
        """Amazon knows every order before its dispatch is sent."""
        self.sim.add_order(
            order.order_id, order.marketplace_id, order.latest_ship_date, order.items
        )


# -- the stack -----------------------------------------------------------------------------------


def _workdir() -> Path:
    """``<cache>/dev/<pid>``; directories of earlier runs whose process is gone are removed."""
    base = os.environ.get("SKUFLOW_CACHE_DIR")
    root = (Path(base).expanduser() if base else _REPO_ROOT / ".cache") / "dev"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.name.isdigit() and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    workdir = root / str(os.getpid())
    workdir.mkdir(exist_ok=True)
    return workdir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _interrupt(_signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _took(since: float) -> str:
    return f"ready in {time.monotonic() - since:.1f}s"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _dev_settings(
    settings: Settings, bootstrap: str, db_url: str, *, idempotent_producer: bool = True
) -> Settings:
    """``settings`` pointed at the embedded broker and database (plaintext, no credentials).

    Tansu has no InitProducerId, so on the fallback broker the producer is not idempotent.
    """
    kafka = replace(
        settings.kafka,
        idempotent_producer=idempotent_producer and settings.kafka.idempotent_producer,
        bootstrap=bootstrap,
        security_protocol="PLAINTEXT",
        ssl_cafile=None,
        sasl_mechanism=None,
        sasl_username=None,
        sasl_password=None,
    )
    health = settings.health
    if health.port and not _port_free(health.host, health.port):
        health = replace(health, port=0)  # the configured port is taken: any free one
    return replace(
        settings,
        kafka=kafka,
        database=replace(settings.database, url=Secret(db_url)),
        health=health,
        log=replace(settings.log, format="console"),
    )


def _seed_erp(b1: B1Simulator, events: SampleEvents) -> None:
    """Every catalogue SKU an item with plenty of stock (exits never go negative) in every
    warehouse; batch-managed ones in every lot, serial-managed ones with opening serials; no
    lock windows (the worker serialises postings per item anyway); the warehouse of damaged
    returns; the customers of the sample orders (:mod:`devstack.backoffice`)."""
    b1.set_faults(conflict_window_ms=0)
    codes = list(_ERP_WAREHOUSES.values())
    for code in (*codes, _B1_DAMAGED):
        b1.add_warehouse(code)
    seed_b1_customers(b1)
    for sku in events.skus:
        if sku in events.batch_skus:
            b1.add_item(sku, batches=True)
            for code in codes:
                for lot in BATCH_LOTS:
                    b1.add_batch(sku, code, lot, _OPENING // len(BATCH_LOTS))
        elif sku in events.serial_skus:
            b1.add_item(sku, serials=True, stock=dict.fromkeys(codes, _OPENING_SERIALS))
        else:
            b1.add_item(sku, stock=dict.fromkeys(codes, _OPENING))


def _erp_simulator(kind: str) -> Erp:
    """The SAP B1 Service Layer simulator, or (``--erp ecc``) the SAP ECC simulator with
    skuflow's partner profile (stock movements, and sales orders when the ECC sales connector
    is there) and out-of-sequence inbound processing."""
    if kind != "ecc":
        company, user, password = _B1
        return B1Simulator(company, user, password)
    sid, client, user, password = _ECC
    ecc = EccSimulator(sid=sid, client=client, user=user, password=password)
    types = _ECC_MESSAGE_TYPES if ecc_sales_missing() is None else _ECC_MESSAGE_TYPES[:1]
    ecc.add_partner(_ECC_PARTNER, _ECC_PORT, types)
    ecc.set_processing(**_ECC_PROCESSING)
    return ecc


def _seed_ecc(ecc: EccSimulator, events: SampleEvents, *, sales: bool = False) -> None:
    """Every catalogue SKU a material (internal format: numeric ones zero-padded to 18, others
    upper case; base unit KG for the SKUs sold by weight) with plant data in the dev plant and
    opening stock in every storage location: per lot for batch-managed ones, opening serials
    ``<sku>-01S0``.. for serial-managed ones (the ones the traffic's exits take: a serial number
    is unique per material in ECC, so the names differ per location). With ``sales``: the
    storage location of damaged returns and the customers of the sample orders."""
    places = {location: code.split("/")[1] for location, code in _ECC_WAREHOUSES.items()}
    for lgort in places.values():
        ecc.add_storage_location(_ECC_PLANT, lgort, f"skuflow dev {lgort}")
    if sales:
        ecc.add_storage_location(_ECC_PLANT, _ECC_DAMAGED.split("/")[1], "skuflow dev damaged")
        seed_ecc_customers(ecc)
    for sku in events.skus:
        matnr = sku.zfill(18) if sku.isdigit() else sku.upper()
        serial = sku in events.serial_skus
        ecc.add_material(
            matnr,
            [_ECC_PLANT],
            meins="KG" if sku in events.weight_skus else "EA",
            batches=sku in events.batch_skus,
            serial_profile="0001" if serial else "",
        )
        for location, lgort in places.items():
            if sku in events.batch_skus:
                for lot in BATCH_LOTS:
                    ecc.set_stock(matnr, _ECC_PLANT, lgort, _OPENING // len(BATCH_LOTS), lot)
            elif serial:
                numbers = [opening_serial(sku, location, n, True) for n in range(_OPENING_SERIALS)]
                ecc.add_serials(matnr, _ECC_PLANT, lgort, *numbers)
            else:
                ecc.set_stock(matnr, _ECC_PLANT, lgort, _OPENING)


def _with_simulators(settings: Settings, sim: SpApiSimulator, erp: Erp) -> Settings:
    """``settings`` with ``[spapi]`` and ``[b1]`` (``--erp ecc``: ``[erp] kind = "ecc"`` and
    ``[ecc]``) pointed at the simulators (the real handlers run), the dev warehouse mapping, and
    5 s stock windows unless ``stock.window_seconds`` is set.
    """
    company, user, password = _B1
    b1 = settings.b1
    if isinstance(erp, B1Simulator):
        b1 = B1Settings(
            url=erp.url,
            company=company,
            user=user,
            password=Secret(password),
            credit_hold_field="U_CreditHold",  # the simulator's credit-hold flag
        )
    window = settings.stock.window_seconds
    if window == StockSettings().window_seconds:
        window = _DEV_WINDOW_SECONDS
    client_id, secret, token = _LWA
    spapi = replace(
        settings.spapi,
        endpoint=sim.endpoint,
        lwa_endpoint=sim.lwa_endpoint,
        client_id=client_id,
        client_secret=Secret(secret),
        refresh_token=Secret(token),
    )
    ecc_erp = isinstance(erp, EccSimulator)
    dev = replace(
        settings,
        spapi=spapi,
        b1=b1,
        mappings=MappingsSettings(warehouses={**_ERP_WAREHOUSES, _DAMAGED: _B1_DAMAGED}),
        stock=replace(settings.stock, window_seconds=window),
        orders=_dev_orders(settings.orders, ECC_CUSTOMERS if ecc_erp else B1_CUSTOMERS),
    )
    if isinstance(erp, B1Simulator):
        return dev
    sid, client, user, ecc_password = _ECC
    ecc = replace(
        settings.ecc,
        url=erp.url,
        client=client,
        sid=sid,
        user=user,
        password=Secret(ecc_password),
        verify_tls=False,
        inbound="idoc_xml",
        sender_port=_ECC_PORT,
        sender_partner=_ECC_PARTNER,
        receiver_port="",
        receiver_partner="",
        # a laptop's polling: the simulator applies an IDoc within ~0.2 s
        poll_seconds=0.2,
        poll_max_seconds=2.0,
        timeout_seconds=10.0,
        application_wait_seconds=60.0,
        lookup_grace_seconds=10.0,
    )
    return replace(
        dev,
        erp=ErpSettings(kind="ecc"),
        ecc=ecc,
        mappings=MappingsSettings(warehouses={**_ECC_WAREHOUSES, _DAMAGED: _ECC_DAMAGED}),
    )


def _dev_orders(orders: OrdersSettings, customers: dict[str, str]) -> OrdersSettings:
    """``[orders]`` for the dev stack: the poller on, the dev customers, every order shipped
    from ``LOC-01``, damaged returns to ``LOC-DMG``, and the demo's pace (``_ORDERS_PACE``)
    where the configuration leaves a setting at its default."""
    default = OrdersSettings()
    pace = {
        name: value
        for name, value in _ORDERS_PACE.items()
        if getattr(orders, name) == getattr(default, name)
    }
    return replace(
        orders,
        capture=True,
        default_customers=customers,
        default_warehouse=SHIPPING_LOCATION,
        return_locations={"damaged": _DAMAGED},
        **pace,
    )


async def _create_topics(bootstrap: str, topics: dict[str, int], group: str) -> None:
    """Create the topics (existing ones are fine), wait until every partition has a leader and
    the group coordinator is up (so the worker joins without coordinator errors)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        new = [NewTopic(name, n, replication_factor=1) for name, n in topics.items()]
        response = await admin.create_topics(new, timeout_ms=30_000)
        errors = [err for err in response.topic_errors if err[1] not in (0, 36)]  # 36: exists
        if errors:
            raise SkuflowError(f"creating topics failed: {errors}")
        with anyio.fail_after(30):
            while True:
                described = await admin.describe_topics(list(topics))
                if all(
                    t["error_code"] == 0
                    and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
                    for t in described
                ):
                    break
                await anyio.sleep(0.05)
            while True:
                try:
                    await admin.find_coordinator(group)
                    break
                except KafkaError:
                    await anyio.sleep(0.1)
    finally:
        await admin.close()


def _stop_stack(
    broker: Broker | None, pg: EmbeddedPostgres | None, workdir: Path, say: Say
) -> None:
    step = time.monotonic()
    try:
        if broker is not None:
            broker.stop()
            shutil.rmtree(workdir / "kafka" / "data", ignore_errors=True)
    finally:
        if pg is not None:
            pg.stop()  # keep_data=False: deletes the data directory
    if broker is not None or pg is not None:
        say(f"broker and PostgreSQL stopped in {time.monotonic() - step:.1f}s; logs in {workdir}")
