"""Shared machinery of the fault scenarios: simulators, real worker processes, a ledger of
what was produced, and the independent final check.

* :class:`Simulators` — the SAP B1 Service Layer and Amazon SP-API simulators on a background
  event loop of the test process, seeded with the catalogue; faults are set and results read
  over their HTTP inspection endpoints (``/_sim/faults``, ``/_sim/stock``, ``/_sim/documents``,
  ``/_sim/confirmations``), exactly as an outside observer would.
* :class:`WorkerProcess` — ``skuflow run`` in a child process (:mod:`tests.chaos.worker_main`:
  the real CLI plus optional crash points), with its own health port and log file; SIGKILL,
  SIGTERM, restart, ``/readyz``.
* :class:`Ledger` — produces stock adjustments (valid and invalid: undecodable bytes, schema
  violations, unmapped locations, unknown SKUs) and dispatch confirmations (orders registered
  with the marketplace first) and remembers what each should become.
* :func:`check` / :meth:`ChaosRun.settle` — ERP stock per item and warehouse equals opening
  stock plus every valid adjustment; no ERP document key twice; every order confirmed as
  exactly one shipment (a re-send after a crash is an *edit* of the same package, counted
  apart); every invalid message is an exception record and no valid one is (PostgreSQL
  ``skuflow_exceptions``); every at-risk deadline alert resolved.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer

from devstack.postgres import run_sync
from devstack.sims.b1.server import B1Simulator
from devstack.sims.ecc.server import EccSimulator
from devstack.sims.spapi.server import SpApiSimulator
from handlers.stock.events import StockAdjusted
from tests.chaos.report import ChaosReport, ChaosRow
from tests.support.events import MARKETPLACE, dispatch_payload
from tests.support.stack import produce
from worker.kafka import stop_client

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".cache" / "test-logs" / "chaos"

WAREHOUSES = {"LOC-01": "01", "LOC-02": "02"}
#: With SAP ECC the same warehouses are storage locations of plant 1000.
ECC_PLANT = "1000"
ECC_WAREHOUSES = {location: f"{ECC_PLANT}/00{code}" for location, code in WAREHOUSES.items()}
OPENING = 100_000
B1_PASSWORD = "chaos-b1-secret"
ECC_SID, ECC_CLIENT, ECC_USER, ECC_PASSWORD = "ECD", "100", "SKUFLOW", "chaos-ecc-secret"
ECC_PARTNER, ECC_PORT = "SKUFLOW", "SKUFLOWPRT"
CLIENT_ID, CLIENT_SECRET, REFRESH = "amzn1.application-oa2-client.chaos", "chaos-secret", "Atzr|c"
ALERT_KINDS = ("deadline_at_risk", "deadline_missed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all held at once while they are picked (one at a time,
    the second pick can return the first port again — seen as a broker refusing two
    listeners on one port)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll)


# --------------------------------------------------------------------------------------------
# Simulators
# --------------------------------------------------------------------------------------------


class Simulators:
    """The ERP (SAP B1 or SAP ECC) and SP-API simulators, served from a background event loop
    of the test process."""

    def __init__(
        self, items: list[str], *, b1_faults: dict[str, Any] | None = None, erp: str = "b1"
    ) -> None:
        self.items = items
        self.erp = erp
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.b1 = B1Simulator(password=B1_PASSWORD, seed=7)
        self.ecc = EccSimulator(
            sid=ECC_SID, client=ECC_CLIENT, user=ECC_USER, password=ECC_PASSWORD, seed=7
        )
        self.spapi = SpApiSimulator(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH, seed=7
        )
        self._b1_faults = {"conflict_window_ms": 0, **(b1_faults or {})}

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def run(self, action: Callable[[], T]) -> T:
        """``action()`` in the simulators' event loop (their hooks and records are not
        thread-safe): how a scenario changes an ERP's state or reads what it holds."""

        async def call() -> T:
            return action()

        return self._call(call())

    def start(self) -> None:
        self._thread.start()

        async def setup() -> None:
            await self.spapi.start()
            if self.erp == "ecc":
                await self.ecc.start()
                ecc = self.ecc
                ecc.add_partner(ECC_PARTNER, ECC_PORT)
                for code in WAREHOUSES.values():
                    ecc.add_storage_location(ECC_PLANT, f"00{code}")
                for item in self.items:
                    ecc.add_material(item, [ECC_PLANT])
                    for code in WAREHOUSES.values():
                        ecc.set_stock(item, ECC_PLANT, f"00{code}", OPENING)
                # Out of sequence, as ECC's inbound processing may run.
                ecc.set_processing(ordering="random", delay_ms=20, tick_ms=10)
                return
            await self.b1.start()
            self.b1.set_faults(**self._b1_faults)
            for item in self.items:
                self.b1.add_item(item, stock={code: OPENING for code in WAREHOUSES.values()})

        self._call(setup())

    def stop(self) -> None:
        async def teardown() -> None:
            await (self.ecc if self.erp == "ecc" else self.b1).stop()
            await self.spapi.stop()

        self._call(teardown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def add_orders(
        self,
        orders: list[tuple[str, datetime]],
        items: Callable[[str], list[tuple[str, str, int]]] | None = None,
        marketplace: Callable[[str], str] | None = None,
    ) -> None:
        """Orders as Amazon has them (for confirmShipment): ``items`` of an order id (order
        item id, SKU, quantity; default one unit of ``SKU``), its ``marketplace``."""

        def add() -> None:
            for order_id, ship_by in orders:
                lines = items(order_id) if items else [(f"{order_id}-1", "SKU", 1)]
                place = marketplace(order_id) if marketplace else MARKETPLACE
                self.spapi.add_order(order_id, place, ship_by, lines)

        self.run(add)

    # -- over HTTP, as an outside observer ------------------------------------------------------
    @property
    def b1_base(self) -> str:
        return self.b1.url.removesuffix("/b1s/v1")

    def b1_faults(self, **faults: Any) -> None:
        _post_json(f"{self.b1_base}/_sim/faults", faults)

    def b1_control(self, path: str, body: dict[str, Any]) -> Any:
        """A sales control of the B1 simulator (``/_sim/customers``, ``/_sim/sales-rules``,
        ``/_sim/drafts/{n}/approve``, ...): its answer."""
        return _post_json(f"{self.b1_base}/_sim/{path}", body)

    def b1_documents(self) -> list[dict[str, Any]]:
        """Every document B1 created (drafts too), as it was answered then."""
        return list(_get_json(f"{self.b1_base}/_sim/documents"))

    def spapi_faults(self, **faults: Any) -> None:
        _post_json(f"{self.spapi.endpoint}/_sim/faults", faults)

    def b1_stock(self) -> dict[tuple[str, str], Decimal]:
        rows = _get_json(f"{self.b1_base}/_sim/stock")
        return {(r["ItemCode"], r["WarehouseCode"]): Decimal(str(r["InStock"])) for r in rows}

    def b1_document_keys(self) -> list[str]:
        return [str(doc["body"].get("JournalMemo")) for doc in self.b1_documents()]

    def b1_requests(self) -> list[dict[str, Any]]:
        return list(_get_json(f"{self.b1_base}/_sim/requests"))

    # -- the ERP, whichever it is ---------------------------------------------------------------
    @property
    def warehouses(self) -> dict[str, str]:
        """Location → ERP warehouse code, as ``[mappings.warehouses]`` has it."""
        return ECC_WAREHOUSES if self.erp == "ecc" else WAREHOUSES

    def erp_stock(self) -> dict[tuple[str, str], Decimal]:
        """(item, B1-style warehouse code) → stock, for either ERP."""
        if self.erp != "ecc":
            return self.b1_stock()

        async def read() -> dict[tuple[str, str], Decimal]:
            return {
                (item, code): self.ecc.stock(item, ECC_PLANT, f"00{code}")
                for item in self.items
                for code in WAREHOUSES.values()
            }

        return self._call(read())

    def erp_document_keys(self) -> list[str]:
        """The posting key of every ERP document (B1 JournalMemo, ECC MKPF-XBLNR)."""
        if self.erp != "ecc":
            return self.b1_document_keys()

        async def read() -> list[str]:
            return [document.xblnr for document in self.ecc.documents]

        return self._call(read())

    def ecc_faults(self, **faults: Any) -> None:
        async def change() -> None:
            self.ecc.set_faults(**faults)

        self._call(change())

    def ecc_counters(self) -> dict[str, int]:
        async def read() -> dict[str, int]:
            return dict(self.ecc.counters)

        return self._call(read())

    def ecc_statuses(self) -> list[int]:
        """The HTTP status of every call ECC answered, in arrival order."""

        async def read() -> list[int]:
            return [request.status for request in self.ecc.requests]

        return self._call(read())

    def confirmations(self) -> list[dict[str, Any]]:
        return list(_get_json(f"{self.spapi.endpoint}/_sim/confirmations"))

    def spapi_requests(self) -> list[dict[str, Any]]:
        return list(_get_json(f"{self.spapi.endpoint}/_sim/requests"))


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read(), parse_float=Decimal)


def _post_json(url: str, body: dict[str, Any]) -> Any:
    data = msgspec.json.encode(body)
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


# --------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------


def write_config(
    path: Path,
    *,
    bootstrap: str,
    database_url: str,
    unique: str,
    sims: Simulators,
    b1_timeout: float = 5.0,
    engine: dict[str, Any] | None = None,
    spapi_rate: float = 20.0,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A ``skuflow run`` settings file for one scenario (secrets are test values);
    ``overrides``: settings added to (or replacing some of) a section, e.g. ``{"orders":
    {...}}``. Every topic is the scenario's own."""
    engine = {
        "commit_interval_seconds": 0.5,
        "revoke_timeout_seconds": 5.0,
        "drain_timeout_seconds": 10.0,
        **(engine or {}),
    }
    sections: dict[str, dict[str, Any]] = {
        "kafka": {
            "bootstrap": bootstrap,
            "group": f"{unique}.group",
            "session_timeout_ms": 6000,  # the broker's minimum: a dead member is noticed fast
            "heartbeat_interval_ms": 1000,
        },
        "database": {"url": database_url},
        "topics": {
            "stock": f"{unique}.stock",
            "dispatch": f"{unique}.dispatch",
            "dead_letter": f"{unique}.dlq",
            "orders": f"{unique}.orders",
            "returns": f"{unique}.returns",
            "released": f"{unique}.released",
        },
        "erp": {"kind": sims.erp},
        "spapi": {
            "endpoint": sims.spapi.endpoint,
            "lwa_endpoint": sims.spapi.lwa_endpoint,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH,
            "rate_per_second": spapi_rate,
            "burst": 10,
        },
        "stock": {"window_seconds": 1.0, "window_max_lines": 200, "retry_max_seconds": 4.0},
        "health": {"port": 0, "host": "127.0.0.1", "stall_seconds": 60.0},
        "log": {"format": "console", "level": "INFO"},
        "engine": engine,
    }
    if sims.erp == "b1":
        sections["b1"] = {
            "url": sims.b1.url,
            "password": B1_PASSWORD,
            "timeout_seconds": b1_timeout,
        }
    if sims.erp == "ecc":
        sections["ecc"] = {
            "url": sims.ecc.url, "client": ECC_CLIENT, "sid": ECC_SID, "user": ECC_USER,
            "password": ECC_PASSWORD, "sender_port": ECC_PORT, "sender_partner": ECC_PARTNER,
            "timeout_seconds": b1_timeout, "poll_seconds": 0.05, "poll_max_seconds": 0.5,
            "application_wait_seconds": 20.0, "lookup_grace_seconds": 2 * b1_timeout,
        }  # fmt: skip
    for name, values in (overrides or {}).items():
        sections[name] = {**sections.get(name, {}), **values}
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        lines.append("")
    lines.append("[mappings.warehouses]")
    lines += [f'"{location}" = "{code}"' for location, code in sims.warehouses.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    """A TOML value: JSON's scalars and arrays, tables inline (``{ "key" = value }``)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


class WorkerProcess:
    """``skuflow run`` (through :mod:`tests.chaos.worker_main`) as a child process."""

    def __init__(self, name: str, config: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.config = config
        self.env = dict(env or {})
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"{config.stem}-{name}.log"
        self.log.write_bytes(b"")

    def start(self, **env: str) -> WorkerProcess:
        assert not self.alive, f"{self.name} is running"
        self.port = free_port()
        self.starts += 1
        environment = {**os.environ, **self.env, **env, "SKUFLOW_HEALTH_PORT": str(self.port)}
        environment.pop("SKUFLOW_CONFIG", None)
        with self.log.open("ab") as sink:
            sink.write(f"--- start #{self.starts} {env or ''}\n".encode())
            sink.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.worker_main", "--config", str(self.config)],
                cwd=ROOT,
                env=environment,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, no drain, no commit, no LeaveGroup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM: the drain; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"{self.name} did not drain within {timeout:g}s") from None

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def crash_at(self, hook: str, count: int = 1, timeout: float = 120.0) -> None:
        """Restart with the crash point ``hook`` armed (a ``SKUFLOW_CHAOS_KILL_AFTER_...``
        variable of :mod:`tests.chaos.worker_main`) and wait until it has killed itself."""
        self.kill()
        self.start(**{hook: str(count)})
        assert self.wait_exit(timeout) == -9, self.tail()

    def readyz(self) -> int | None:
        """The /readyz status, or None when the process does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=3) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.readyz() == 200 or not self.alive, timeout, f"{self.name} ready")
        if not self.alive:
            raise AssertionError(f"{self.name} exited: {self.tail()}")

    def count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)

    def tail(self, limit: int = 4000) -> str:
        """The log's end, led by its first traceback: when a worker dies, the first error is
        the cause and what follows is often only the shutdown it set off."""
        text = self.log.read_text(errors="replace")
        first = text.find("Traceback (most recent call last)")
        if first < 0 or first >= len(text) - limit:
            return text[-limit:]
        return f"{text[first : first + limit]}\n[...]\n{text[-limit:]}"


# --------------------------------------------------------------------------------------------
# The ledger of what was produced
# --------------------------------------------------------------------------------------------

INVALID_KINDS = ("undecodable", "schema", "unmapped", "unknown_sku")
#: Invalid kinds that the worker can refuse without asking the ERP.
ERP_FREE_INVALID = ("undecodable", "schema", "unmapped")


@dataclass
class Ledger:
    items: list[str]
    seed: int = 0
    rng: random.Random = field(init=False)
    expected: defaultdict[tuple[str, str], int] = field(
        default_factory=lambda: defaultdict(int), init=False
    )
    valid: int = 0
    invalid: set[bytes] = field(default_factory=set, init=False)
    orders: dict[str, datetime] = field(default_factory=dict, init=False)
    _n: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def events(self) -> int:
        return self.valid + len(self.invalid) + len(self.orders)

    def _next(self) -> int:
        self._n += 1
        return self._n

    def stock(
        self,
        count: int,
        *,
        invalid_share: float = 0.02,
        invalid_kinds: tuple[str, ...] = INVALID_KINDS,
        items: list[str] | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """``count`` stock adjustments, about ``invalid_share`` of them invalid."""
        records = []
        pool = items or self.items
        for _ in range(count):
            n = self._next()
            if self.rng.random() < invalid_share:
                records.append(self._invalid(n, self.rng.choice(invalid_kinds)))
                continue
            sku, location = self.rng.choice(pool), self.rng.choice(list(WAREHOUSES))
            quantity = self.rng.choice([-3, -2, -1, 1, 2, 5])
            self.expected[(sku, WAREHOUSES[location])] += quantity
            self.valid += 1
            records.append((sku.encode(), _adjustment(n, sku, location, quantity)))
        return records

    def _invalid(self, n: int, kind: str) -> tuple[bytes, bytes]:
        if kind == "undecodable":
            value = b"\xff\xfe not json #" + str(n).encode()
            key = b"garbage"
        elif kind == "schema":  # a zero quantity
            body = json.loads(_adjustment(n, self.items[0], "LOC-01", 1))
            value, key = json.dumps({**body, "quantity": 0}).encode(), self.items[0].encode()
        elif kind == "unmapped":
            value, key = _adjustment(n, self.items[0], "LOC-99", 1), self.items[0].encode()
        else:
            sku = f"GHOST-{n}"
            value, key = _adjustment(n, sku, "LOC-01", 1), sku.encode()
        self.invalid.add(value)
        return key, value

    def dispatches(
        self, count: int, sims: Simulators, *, at_risk_share: float = 0.2
    ) -> list[tuple[bytes, bytes]]:
        """``count`` dispatch confirmations; their orders are registered with Amazon first.
        About ``at_risk_share`` are due within the at-risk window (alerts, still confirmed)."""
        now = datetime.now(UTC)
        made = []
        for _ in range(count):
            n = self._next()
            order_id = f"171-{n:07d}-{self.seed % 10_000_000:07d}"
            hours = 1.0 if self.rng.random() < at_risk_share else 6.0
            made.append((order_id, now + timedelta(hours=hours, minutes=self.rng.random() * 30)))
        sims.add_orders(made)
        self.orders.update(made)
        return [
            (order.encode(), dispatch_payload(order, ship_by, sku="SKU")) for order, ship_by in made
        ]


def _adjustment(n: int, sku: str, location: str, quantity: int) -> bytes:
    event = StockAdjusted(
        event_id=f"chaos-adj-{n}",
        occurred_at=datetime.now(UTC),
        source="ims",
        source_ref=f"IMS-{n}",
        sku=sku,
        warehouse=location,
        quantity=Decimal(quantity),
        reason="count",
    )
    return msgspec.json.encode(event)


# --------------------------------------------------------------------------------------------
# The independent final check
# --------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    stock_wrong: list[tuple[str, str, Decimal, Decimal]]  # item, warehouse, want, have
    duplicate_documents: int
    documents: int
    missing_orders: list[str]
    duplicate_orders: list[str]
    edits: int  # re-sent confirmations Amazon applied as edits of the same package
    missing_exceptions: int  # invalid messages without an exception record
    unexpected_exceptions: list[tuple[str, str]]  # (kind, reason) of open records for valid events
    exceptions: int  # exception records of invalid messages
    retried: int  # records for valid events, resolved by `skuflow exceptions retry`
    open_alerts: int  # deadline_at_risk alerts not resolved

    @property
    def lost(self) -> int:
        return (
            len(self.stock_wrong)
            + len(self.missing_orders)
            + self.missing_exceptions
            + len(self.unexpected_exceptions)
        )

    @property
    def duplicated(self) -> int:
        return self.duplicate_documents + len(self.duplicate_orders)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.open_alerts == 0

    def summary(self) -> str:
        return (
            f"stock wrong at {len(self.stock_wrong)} places {self.stock_wrong[:3]}; "
            f"{self.duplicate_documents} duplicate documents of {self.documents}; "
            f"orders missing {self.missing_orders[:3]} ({len(self.missing_orders)}), "
            f"duplicated {self.duplicate_orders[:3]}; {self.edits} edits; "
            f"{self.missing_exceptions} invalid messages without exception; unexpected "
            f"exceptions {self.unexpected_exceptions[:3]} ({len(self.unexpected_exceptions)}); "
            f"{self.open_alerts} open at-risk alerts"
        )


class Checked(Protocol):
    """What a scenario's independent check found (:class:`Verdict`, or a scenario's own)."""

    @property
    def lost(self) -> int: ...

    @property
    def duplicated(self) -> int: ...

    @property
    def exceptions(self) -> int: ...

    @property
    def ok(self) -> bool: ...


async def _exception_rows(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        exists = await conn.fetchval("SELECT to_regclass('skuflow_exceptions') IS NOT NULL")
        if not exists:
            return []
        sql = """SELECT id, kind, reason, payload, status, topic, partition, "offset"
                 FROM skuflow_exceptions ORDER BY id"""
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def exception_rows(database_url: str) -> list[asyncpg.Record]:
    """Every exception record: id, kind, reason, payload, status, topic, partition, offset."""
    return run_sync(lambda: _exception_rows(database_url))


async def _read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, int]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        records: list[tuple[bytes, int]] = []
        with anyio.fail_after(60):
            while not consumer.assignment():  # every partition, once the metadata is in
                await anyio.sleep(0.05)
            ends = await consumer.end_offsets(list(consumer.assignment()))
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=200)
                    for part in batch.values():
                        records += [(r.value, r.timestamp) for r in part if r.value is not None]
        return records
    finally:
        await stop_client(consumer, 10)  # never raising aiokafka's CancelledError (#647)


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, int]]:
    """Every record of ``topic`` up to its end now (value, timestamp ms), as a consumer of
    it reads them."""
    return run_sync(lambda: _read_topic(bootstrap, topic))


def check(ledger: Ledger, sims: Simulators, database_url: str) -> Verdict:
    stock = sims.erp_stock()
    wrong = []
    for item in ledger.items:
        for code in WAREHOUSES.values():
            want = Decimal(OPENING + ledger.expected.get((item, code), 0))
            have = stock.get((item, code), Decimal(0))
            if want != have:
                wrong.append((item, code, want, have))
    keys = Counter(sims.erp_document_keys())
    shipments: Counter[str] = Counter()
    edits = 0
    for confirmation in sims.confirmations():
        if confirmation["edit"]:
            edits += 1
        else:
            shipments[confirmation["order_id"]] += 1
    rows = exception_rows(database_url)
    records = [r for r in rows if r["kind"] not in ALERT_KINDS]
    payloads = {bytes(r["payload"]) for r in records}
    others = [r for r in records if bytes(r["payload"]) not in ledger.invalid]
    unexpected = [(r["kind"], r["reason"]) for r in others if r["status"] != "resolved"]
    return Verdict(
        stock_wrong=wrong,
        duplicate_documents=sum(count - 1 for count in keys.values()),
        documents=sum(keys.values()),
        missing_orders=sorted(o for o in ledger.orders if shipments[o] == 0),
        duplicate_orders=sorted(o for o, count in shipments.items() if count > 1),
        edits=edits,
        missing_exceptions=len(ledger.invalid - payloads),
        unexpected_exceptions=unexpected,
        exceptions=sum(1 for r in records if bytes(r["payload"]) in ledger.invalid),
        retried=sum(1 for r in others if r["status"] == "resolved"),
        open_alerts=sum(
            1 for r in rows if r["kind"] == "deadline_at_risk" and r["status"] != "resolved"
        ),
    )


# --------------------------------------------------------------------------------------------
# One scenario run
# --------------------------------------------------------------------------------------------


class ChaosRun:
    """Topics, simulators, a settings file, workers and the ledger of one scenario."""

    def __init__(
        self,
        *,
        bootstrap: str,
        database_url: str,
        unique: str,
        items: int = 40,
        seed: int = 1,
        b1_faults: dict[str, Any] | None = None,
        b1_timeout: float = 5.0,
        engine: dict[str, Any] | None = None,
        worker_bootstrap: str | None = None,
        spapi_rate: float = 20.0,
        erp: str = "b1",
        overrides: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.unique = unique
        self.items = [f"CH{i:04d}" for i in range(items)]
        self.sims = Simulators(self.items, b1_faults=b1_faults, erp=erp)
        self.ledger = Ledger(self.items, seed=seed)
        self.topics = (f"{unique}.stock", f"{unique}.dispatch", f"{unique}.dlq")
        #: The order flow's topics: orders in, returns in, released (to the warehouse) out.
        self.order_topics = (f"{unique}.orders", f"{unique}.returns", f"{unique}.released")
        self.workers: list[WorkerProcess] = []
        self._b1_timeout = b1_timeout
        self._engine = engine
        self._worker_bootstrap = worker_bootstrap or bootstrap
        self._spapi_rate = spapi_rate
        self._overrides = overrides
        self.config = LOGS / f"{unique}.toml"
        self.fault_ended = time.monotonic()

    def __enter__(self) -> ChaosRun:
        self.sims.start()
        write_config(
            self.config,
            bootstrap=self._worker_bootstrap,
            database_url=self.database_url,
            unique=self.unique,
            sims=self.sims,
            b1_timeout=self._b1_timeout,
            engine=self._engine,
            spapi_rate=self._spapi_rate,
            overrides=self._overrides,
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        failed = exc_info[0] is not None
        for worker in self.workers:
            if failed:
                print(f"===== {worker.name} log tail =====\n{worker.tail()}")
            worker.kill()
        self.sims.stop()

    def worker(self, name: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(name, self.config, env)
        self.workers.append(worker)
        return worker

    def produce_stock(self, count: int, **options: Any) -> None:
        records = self.ledger.stock(count, **options)
        run_sync(lambda: produce(self.bootstrap, self.topics[0], records))

    def produce_dispatches(self, count: int, **options: Any) -> None:
        records = self.ledger.dispatches(count, self.sims, **options)
        run_sync(lambda: produce(self.bootstrap, self.topics[1], records))

    def fault_over(self) -> None:
        """Mark the end of the last fault: recovery time counts from here."""
        self.fault_ended = time.monotonic()

    def check(self) -> Verdict:
        return check(self.ledger, self.sims, self.database_url)

    def settle(self, timeout: float) -> tuple[Verdict, float]:
        """Poll the independent check until it passes (or ``timeout``); the verdict and the
        recovery time (seconds from the end of the last fault until it passed)."""
        deadline = time.monotonic() + timeout
        while True:
            verdict = self.check()
            if verdict.ok or time.monotonic() > deadline:
                return verdict, time.monotonic() - self.fault_ended
            time.sleep(0.5)

    def finish(
        self, report: ChaosReport, scenario: str, faults: str, timeout: float = 180.0
    ) -> Verdict:
        """The final check (waiting up to ``timeout`` for it to pass), a drained stop of every
        worker still running, the report row; fails the test if anything was lost or doubled."""
        verdict, recovery = self.settle(timeout)
        for worker in self.workers:
            if worker.alive:
                assert worker.terminate() == 0, f"{worker.name} did not drain cleanly"
        self.report(report, scenario, faults, verdict, recovery)
        print(f"{scenario}: {faults}; recovery {recovery:.1f}s; {verdict.summary()}")
        assert verdict.ok, verdict.summary()
        return verdict

    def report(
        self,
        report: ChaosReport,
        scenario: str,
        faults: str,
        verdict: Checked,
        recovery: float,
        events: int | None = None,
    ) -> ChaosRow:
        """The scenario's row; ``events``: how many it produced (default: the ledger's)."""
        row = ChaosRow(
            scenario=scenario,
            erp=self.sims.erp,
            events=self.ledger.events if events is None else events,
            faults=faults,
            lost=verdict.lost,
            duplicated=verdict.duplicated,
            exceptions=verdict.exceptions,
            recovery_s=recovery if verdict.ok else None,
        )
        report.add(row)
        return row


@contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        print(f"{label}: {time.monotonic() - started:.1f}s")
