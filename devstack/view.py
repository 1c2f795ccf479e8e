"""What ``skuflow dev`` shows while it runs, and where the worker's log lines go meanwhile.

:class:`DevStats` gathers the numbers (engine counters, rates over the last ~5 s, consumer lag,
exception records by kind, the dispatch flow: Amazon's answers as the SP-API simulator recorded
them, the shipment ledger, parked events, deadline slack; the stock flow: staged lines by
state, postings by status, documents at the SAP B1 simulator — or, with ``--erp ecc``, the
IDocs at the SAP ECC simulator by status and the last few with their posting key; the order
pipeline, :mod:`devstack.order_view`) and freezes them into a
:class:`Snapshot`. :func:`render` turns one
into the rich panel (redrawn every 0.5 s by :func:`live_view`), :func:`status_line` into the
``--no-view`` line (printed every 5 s by :func:`status_lines`). With the panel on screen the
worker logs only to a file; otherwise a thinned-out copy goes to stderr (:func:`configure_logging`).
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from config.settings import Settings
from devstack.order_traffic import OrderTrafficStats
from devstack.order_view import (
    Pipeline,
    pipeline_rows,
    pipeline_status,
    pipeline_summary,
    read_pipeline,
)
from devstack.sims.b1.server import B1Simulator
from devstack.sims.ecc.server import EccSimulator
from devstack.sims.spapi.server import SpApiSimulator
from devstack.traffic import TrafficStats
from skuflow.app import Worker
from worker.logs import ConsoleFormatter

__all__ = [
    "DevStats",
    "Snapshot",
    "Throttle",
    "configure_logging",
    "live_view",
    "render",
    "status_line",
    "status_lines",
]

_EXCEPTIONS_SQL = "SELECT kind, count(*) AS n FROM skuflow_exceptions GROUP BY kind"
_LEDGER_SQL = "SELECT status AS kind, count(*) AS n FROM skuflow_shipments GROUP BY status"
#: Parked events, and the slack (hours) of the last 50 confirmations: ship-by - confirmed at.
_NUMBERS_SQL = """
    WITH recent AS (SELECT extract(epoch FROM ship_by - confirmed_at)::float8 / 3600 AS h
                    FROM skuflow_shipments WHERE confirmed_at IS NOT NULL
                    ORDER BY confirmed_at DESC LIMIT 50)
    SELECT (SELECT count(*) FROM skuflow_parked) AS parked, min(h) AS low,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY h) AS median FROM recent"""
_LINES_SQL = "SELECT state AS kind, count(*) AS n FROM skuflow_stock_lines GROUP BY state"
_POSTINGS_SQL = "SELECT status AS kind, count(*) AS n FROM skuflow_postings GROUP BY status"
_LAG_METRIC = "messaging_kafka_consumer_lag"  # the engine's messaging.kafka.consumer.lag gauge
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
_STATUSES = ("confirmed", "sending", "retrying", "rejected")
_LINE_STATES = ("staged", "batched", "posted", "settled", "rejected")
_POSTING_STATUSES = ("pending", "posted", "settled", "failed")
#: IDoc statuses the view counts: 64 waiting, 53 posted, 51 application error, 56 partner
#: profile / syntax; any other (50, 62, 60, ...) is counted as "other".
_IDOC_STATUSES = ("64", "53", "51", "56")
_RECENT_IDOCS = 5


@dataclass(slots=True)
class Dispatch:
    """The dispatch flow: Amazon's answers to ``confirmShipment`` (the simulator's records)
    and the database's view (shipment ledger, parked events, slack)."""

    accepted: int = 0  # answered 204: the simulator's confirmations
    rejected: int = 0  # answered 400, e.g. an order item the order does not have
    throttled: int = 0  # answered 429
    ledger: dict[str, int] = field(default_factory=dict)  # skuflow_shipments rows by status
    parked: int = 0  # skuflow_parked rows, both classes
    slack: tuple[float, float] | None = None  # hours: min and median of the last 50 confirmed


@dataclass(slots=True)
class Stock:
    """The stock flow: ``skuflow_stock_lines`` by state, ``skuflow_postings`` by status and the
    documents the SAP B1 simulator holds."""

    lines: dict[str, int] = field(default_factory=dict)
    postings: dict[str, int] = field(default_factory=dict)
    documents: int = 0  # B1 documents, or ECC material documents
    #: ``--erp ecc``: IDocs at the simulator per current status (None: B1), and the last few:
    #: (ECC IDoc number, status, posting key).
    idocs: dict[str, int] | None = None
    recent: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one frame of the view (or one status line) shows."""

    state: str
    uptime: float  # seconds since the stack was up
    traffic: TrafficStats  # a copy
    rates: tuple[float, float]  # produced/s, processed/s over the last ~5 s
    processed: int
    buffered: int
    in_flight: int
    paused: int  # partitions
    assigned: int  # partitions
    lag: int | None  # None until the worker has joined, and once it has stopped
    health: str  # the health server's base URL, "" until it listens
    exceptions: dict[str, int]
    dispatch: Dispatch  # a copy
    stock: Stock  # a copy
    suppressed: int  # log lines the stderr throttle held back
    pipeline: Pipeline = field(default_factory=Pipeline)  # the order flow (a copy)
    orders: OrderTrafficStats | None = None  # the order traffic (a copy), if any


class DevStats:
    """Gathers the numbers from the worker, the producer's counters, the SP-API simulator and
    the database."""

    def __init__(
        self,
        settings: Settings,
        worker: Worker,
        traffic: TrafficStats,
        throttle: Throttle | None,
        sim: SpApiSimulator | None = None,
        b1: B1Simulator | None = None,
        ecc: EccSimulator | None = None,
        orders: OrderTrafficStats | None = None,
    ) -> None:
        self.settings, self.worker, self.traffic = settings, worker, traffic
        self.throttle, self.sim, self.b1, self.ecc = throttle, sim, b1, ecc
        self.orders = orders
        self.exceptions: dict[str, int] = {}
        self.dispatch, self.stock, self.pipeline = Dispatch(), Stock(), Pipeline()
        self.began = time.monotonic()
        self._rates = (0.0, 0.0)
        self._samples: deque[tuple[float, int, int]] = deque()

    def start(self) -> None:
        """Uptime and rates count from now."""
        self.began = time.monotonic()
        self._samples.append((self.began, 0, 0))

    def snapshot(self, state: str) -> Snapshot:
        now = time.monotonic()
        processed, buffered, in_flight, paused, assigned = self._numbers()
        self._sample(now, processed)
        self._count_answers()
        return Snapshot(
            state=state,
            uptime=now - self.began,
            traffic=replace(self.traffic, scenarios=self.traffic.scenarios.copy()),
            rates=self._rates,
            processed=processed,
            buffered=buffered,
            in_flight=in_flight,
            paused=paused,
            assigned=assigned,
            lag=self._lag(state),
            health=self._health(),
            exceptions=dict(self.exceptions),
            dispatch=replace(self.dispatch),
            stock=replace(self.stock),
            suppressed=self.throttle.suppressed if self.throttle is not None else 0,
            pipeline=replace(self.pipeline),
            orders=self.orders.copy() if self.orders is not None else None,
        )

    def summary(self, state: str) -> str:
        """The closing lines: totals since :meth:`start` and exception records by kind."""
        produced, processed = self.traffic.produced, self._numbers()[0]
        left = produced - processed  # (the worker also processes the orders it captured)
        kinds = " · ".join(f"{kind} {n}" for kind, n in sorted(self.exceptions.items()))
        self._count_answers()
        d = self.dispatch
        return (
            f"{state} after {time.monotonic() - self.began:.1f}s: produced {produced}, "
            f"processed {processed}"
            + (f" ({left} left unprocessed in Kafka)" if left > 0 else "")
            + f"\n  exceptions: {kinds or 'none'}"
            + f"\n  dispatch: Amazon accepted {d.accepted}, rejected {d.rejected}; "
            + f"ledger {_pairs(d.ledger, ' ') or 'empty'}; parked {d.parked}"
            + f"\n  stock: lines {_pairs(self.stock.lines, ' ') or 'none'}; postings "
            + f"{_pairs(self.stock.postings, ' ') or 'none'}; ERP documents {self.stock.documents}"
            + (f"; IDocs {_idoc_pairs(self.stock, ' ')}" if self.stock.idocs is not None else "")
            + pipeline_summary(self.pipeline, self.orders)
        )

    async def count_final(self) -> bool:
        """Final counts, on a connection of its own (the worker's pool is closed by now)."""
        with contextlib.suppress(*_DB_ERRORS):
            conn = await asyncpg.connect(self.settings.database.url.reveal(), timeout=5)
            try:
                await self._read(conn)
            finally:
                await conn.close()
            return True
        return False

    async def poll(self) -> None:
        """Exception records, the dispatch and the stock numbers from the database, every 2 s."""
        while True:
            if self.worker.pool is not None:
                with contextlib.suppress(*_DB_ERRORS):
                    async with self.worker.pool.acquire(timeout=2) as conn:
                        await self._read(conn)
            await anyio.sleep(2)

    async def _read(self, conn: Any) -> None:
        exceptions = await conn.fetch(_EXCEPTIONS_SQL, timeout=2)
        ledger = await conn.fetch(_LEDGER_SQL, timeout=2)
        numbers = await conn.fetchrow(_NUMBERS_SQL, timeout=2)
        lines = await conn.fetch(_LINES_SQL, timeout=2)
        postings = await conn.fetch(_POSTINGS_SQL, timeout=2)
        self.stock.lines = {row["kind"]: int(row["n"]) for row in lines}
        self.stock.postings = {row["kind"]: int(row["n"]) for row in postings}
        self.exceptions = {row["kind"]: int(row["n"]) for row in exceptions}
        self.dispatch.ledger = {row["kind"]: int(row["n"]) for row in ledger}
        self.dispatch.parked = int(numbers["parked"])
        low, median = numbers["low"], numbers["median"]
        self.dispatch.slack = None if low is None else (float(low), float(median))
        self.pipeline = await read_pipeline(conn, self.settings.topics)

    def _count_answers(self) -> None:
        """Count the simulators' new records, then drop them (they would grow without end;
        the B1 simulator's documents stay: it searches them for posting keys)."""
        if self.b1 is not None:
            self.stock.documents = len(self.b1.documents)
            self.b1.requests.clear()
        if self.ecc is not None:
            self._count_idocs(self.ecc)
        if self.sim is None:
            return
        d, confirmations, requests = self.dispatch, self.sim.confirmations, self.sim.requests
        d.accepted += len(confirmations)
        for request in requests:
            if request.operation == "confirmShipment":
                d.rejected += request.status == 400
                d.throttled += request.status == 429
        confirmations.clear()
        requests.clear()

    def _count_idocs(self, ecc: EccSimulator) -> None:
        """IDocs per status and the last few (the simulator keeps its IDocs: the connector
        reads them back through EDIDC; its request records are dropped)."""
        by_status = ecc.idocs_by_status()
        self.stock.idocs = {status: len(numbers) for status, numbers in by_status.items()}
        self.stock.documents = len(ecc.documents)
        latest = sorted(ecc.idocs.values(), key=lambda i: i.sequence)[-_RECENT_IDOCS:]
        self.stock.recent = tuple(
            (i.docnum, i.status, i.arckey.rpartition("#")[0] or i.arckey) for i in reversed(latest)
        )
        ecc.requests.clear()

    def _numbers(self) -> tuple[int, int, int, int, int]:
        """Processed, buffered, in flight, paused and assigned partitions of both classes."""
        engines = self.worker.engines
        return (
            sum(e.processed for e in engines),
            sum(e.buffered for e in engines),
            sum(e.in_flight for e in engines),
            sum(e.paused_partitions for e in engines),
            sum(len(e.assignment()) for e in engines),
        )

    def _sample(self, now: float, processed: int) -> None:
        """Update the rates (over the last ~5 s)."""
        samples = self._samples
        samples.append((now, self.traffic.produced, processed))
        while len(samples) > 2 and samples[1][0] <= now - 5:
            samples.popleft()
        then, produced_then, processed_then = samples[0]
        span = now - then
        if span > 0:
            self._rates = (
                (self.traffic.produced - produced_then) / span,
                (processed - processed_then) / span,
            )

    def _lag(self, state: str) -> int | None:
        """High watermark minus committed watermark, summed over owned partitions."""
        engines = self.worker.engines
        if not engines or not all(e.joined for e in engines) or state == "stopped":
            return None
        families = self.worker.registry.collect()
        return int(sum(s.value for f in families if f.name == _LAG_METRIC for s in f.samples))

    def _health(self) -> str:
        host, health = self.settings.health.host, self.worker.health
        port = health.port if health is not None else 0
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}" if port else ""


def _pairs(counts: Mapping[str, int], sep: str = ",") -> str:
    return sep.join(f"{kind}={n}" for kind, n in sorted(counts.items()))


def _idoc_counts(s: Stock) -> list[tuple[str, int]]:
    """(status, IDocs) for 64/53/51/56, then "other" for every other status."""
    idocs = s.idocs or {}
    other = sum(n for status, n in idocs.items() if status not in _IDOC_STATUSES)
    return [*((status, idocs.get(status, 0)) for status in _IDOC_STATUSES), ("other", other)]


def _idoc_pairs(s: Stock, sep: str = ",") -> str:
    return sep.join(f"{status}={n}" for status, n in _idoc_counts(s))


# -- the view ------------------------------------------------------------------------------------


async def live_view(
    console: Console, snapshot: Callable[[], Snapshot], facts: Mapping[str, str]
) -> None:
    """The panel, redrawn every 0.5 s until cancelled, and once more then."""
    with Live(console=console, auto_refresh=False) as live:
        try:
            while True:
                live.update(render(snapshot(), facts), refresh=True)
                await anyio.sleep(0.5)
        finally:
            live.update(render(snapshot(), facts), refresh=True)


async def status_lines(say: Callable[[str], None], snapshot: Callable[[], Snapshot]) -> None:
    """The ``--no-view`` status line every 5 s, until cancelled."""
    while True:
        await anyio.sleep(5)
        snap = snapshot()
        say(f"[{snap.uptime:4.0f}s] {status_line(snap)}")


def status_line(snap: Snapshot) -> str:
    """The ``--no-view`` status line: ``name value`` pairs."""
    t, lag, d, s = snap.traffic, snap.lag, snap.dispatch, snap.stock
    kinds = _pairs(snap.exceptions, " ") or "none"
    slack = "-" if d.slack is None else f"min={d.slack[0]:.1f},median={d.slack[1]:.1f}"
    line = (
        f"{snap.state}: produced {t.produced} ({snap.rates[0]:.0f}/s) "
        f"processed {snap.processed} ({snap.rates[1]:.0f}/s) lag {'-' if lag is None else lag} "
        f"buffered {snap.buffered} in_flight {snap.in_flight} partitions {snap.assigned} "
        f"paused {snap.paused} exceptions {kinds} | amazon confirmed {d.accepted} "
        f"rejected {d.rejected} throttled {d.throttled} ledger {_pairs(d.ledger) or '-'} "
        f"parked {d.parked} slack_h {slack} | stock lines "
        + ",".join(f"{k}={s.lines.get(k, 0)}" for k in _LINE_STATES)
        + f" postings {_pairs(s.postings) or '-'} erp_documents {s.documents}"
    )
    if s.idocs is not None:
        line += f" | ecc idocs {_idoc_pairs(s)}"
    line += pipeline_status(snap.pipeline, snap.orders)
    failed, error = t.failed, t.last_error
    if snap.orders is not None and snap.orders.failed:
        failed, error = failed + snap.orders.failed, error or snap.orders.last_error
    if failed:
        line += f" send_failures {failed} ({error})"
    if snap.suppressed:
        line += f" [{snap.suppressed} repeated log lines thinned out]"
    return line


def render(snap: Snapshot, facts: Mapping[str, str]) -> Panel:
    """The live panel; ``facts`` has the ``stack`` and ``logs`` lines."""
    t, lag, health = snap.traffic, snap.lag, snap.health
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    failed = f" · [red]send failures {t.failed:,}[/]" if t.failed else ""
    grid.add_row(
        "traffic",
        f"produced  {t.produced:>9,}  {snap.rates[0]:7.1f}/s   "
        f"stock {t.stock:,} · dispatch {t.dispatch:,} · bad input {t.bad:,}{failed}",
    )
    lag_text = "—" if lag is None else f"{lag:,}"
    grid.add_row(
        "worker", f"processed {snap.processed:>9,}  {snap.rates[1]:7.1f}/s   lag {lag_text}"
    )
    grid.add_row(
        "",
        f"buffered {snap.buffered:,} · in flight {snap.in_flight:,} · "
        f"partitions {snap.assigned} assigned, {snap.paused} paused",
    )
    kinds = sorted(snap.exceptions.items(), key=lambda item: -item[1])
    grid.add_row("exceptions", " · ".join(f"{k} {n:,}" for k, n in kinds) or "none yet")
    _dispatch_rows(grid, snap, facts.get("amazon", ""))
    pipeline_rows(grid, snap.pipeline, snap.orders)
    _stock_rows(grid, snap.stock, facts.get("erp", ""))
    grid.add_row("stack", escape(facts.get("stack", "")))
    grid.add_row("health", f"{health}/livez · /readyz · /metrics" if health else "starting")
    grid.add_row("logs", escape(facts.get("logs", "")))
    footer = "Ctrl-C to stop" if snap.state in ("starting", "running") else "stopping…"
    if snap.state == "draining":
        footer = "draining the worker… Ctrl-C again to exit at once"
    grid.add_row("", "")
    grid.add_row("", f"[bold]{footer}[/]")
    uptime = time.strftime("%H:%M:%S", time.gmtime(snap.uptime))
    title = f"skuflow dev · {snap.state} · up {uptime}"
    return Panel(grid, title=title, title_align="left", expand=False)


def _dispatch_rows(grid: Table, snap: Snapshot, amazon: str) -> None:
    d, sent, exc = snap.dispatch, snap.traffic.scenarios, snap.exceptions
    grid.add_row(
        "dispatch",
        f"amazon    confirmed [green]{d.accepted:,}[/] · rejected {d.rejected:,} · "
        f"throttled {d.throttled:,}   [dim]{escape(amazon)}[/]",
    )
    ledger = " · ".join(f"{k} {d.ledger.get(k, 0):,}" for k in _STATUSES)
    grid.add_row("", f"ledger    {ledger} · parked {d.parked:,}")
    slack = "—" if d.slack is None else f"min {d.slack[0]:.1f} h · median {d.slack[1]:.1f} h"
    at_risk, missed = exc.get("deadline_at_risk", 0), exc.get("deadline_missed", 0)
    grid.add_row(
        "",
        f"deadline  [yellow]at risk {at_risk:,}[/] · [red]missed {missed:,}[/] · slack {slack} "
        f"[dim](last 50)[/]",
    )
    grid.add_row(
        "",
        f"[dim]traffic   sent {sent['at_risk']} due in < 2 h · {sent['missed']} late · "
        f"{sent['unknown_item']} with an unknown order item[/]",
    )


def _stock_rows(grid: Table, s: Stock, erp: str) -> None:
    lines = " · ".join(f"{k} {s.lines.get(k, 0):,}" for k in _LINE_STATES)
    grid.add_row("stock", f"lines     {lines}")
    postings = " · ".join(f"{k} {s.postings.get(k, 0):,}" for k in _POSTING_STATUSES)
    if s.idocs is None:
        grid.add_row(
            "",
            f"postings  {postings}   ERP documents [green]{s.documents:,}[/]  "
            f"[dim]{escape(erp)}[/]",
        )
        return
    grid.add_row("", f"postings  {postings}   material documents [green]{s.documents:,}[/]")
    styles = {"53": "green", "51": "red", "56": "red", "64": "yellow"}
    counts = " · ".join(
        f"[{styles[k]}]{k} {n:,}[/]" if k in styles and n else f"{k} {n:,}"
        for k, n in _idoc_counts(s)
    )
    grid.add_row("", f"idocs     {counts}   [dim]{escape(erp)}[/]")
    for n, (docnum, status, key) in enumerate(s.recent):
        label = "last idocs" if n == 0 else ""
        style = styles.get(status, "white")
        grid.add_row("", f"{label:<10}[dim]{docnum}[/] [{style}]{status}[/] {escape(key)}")


# -- logging -------------------------------------------------------------------------------------


class Throttle(logging.Filter):
    """Lets ``burst`` records of one message through per ``window`` seconds; counts the rest."""

    def __init__(self, burst: int = 3, window: float = 10.0) -> None:
        super().__init__()
        self.burst, self.window, self.suppressed = burst, window, 0
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.name, str(record.msg)), time.monotonic()
        start, count = self._seen.get(key, (now, 0))
        if now - start > self.window:
            start, count = now, 0
        self._seen[key] = (start, count + 1)
        if count < self.burst:
            return True
        self.suppressed += 1
        return False


def configure_logging(
    level: str, log_file: Path, *, to_stderr: bool
) -> tuple[list[logging.Handler], Throttle | None]:
    """Everything to ``log_file`` (rotated); with ``to_stderr`` a thinned-out copy on stderr."""
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(log_file, maxBytes=20 << 20, backupCount=2)
    ]
    throttle = Throttle() if to_stderr else None
    if throttle is not None:
        handlers.append(logging.StreamHandler())
        handlers[-1].addFilter(throttle)
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(ConsoleFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    return handlers, throttle
