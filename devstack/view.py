"""What ``skuflow dev`` shows while it runs, and where the worker's log lines go meanwhile.

:class:`DevStats` gathers the numbers (engine counters, rates over the last ~5 s, consumer lag,
exception records by kind) and freezes them into a :class:`Snapshot`. :func:`render` turns one
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
from dataclasses import dataclass, replace
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
from devstack.traffic import TrafficStats
from skuflow.app import Worker
from worker.logs import ConsoleFormatter

__all__ = [
    "NOTE",
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
_LAG_METRIC = "messaging_kafka_consumer_lag"  # the engine's messaging.kafka.consumer.lag gauge
NOTE = "no handler yet: stock.adjusted and dispatch.confirmed are recorded as exceptions"


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
    suppressed: int  # log lines the stderr throttle held back


class DevStats:
    """Gathers the numbers from the worker, the producer's counters and the database."""

    def __init__(
        self,
        settings: Settings,
        worker: Worker,
        traffic: TrafficStats,
        throttle: Throttle | None,
    ) -> None:
        self.settings, self.worker, self.traffic, self.throttle = (
            settings,
            worker,
            traffic,
            throttle,
        )
        self.exceptions: dict[str, int] = {}
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
        return Snapshot(
            state=state,
            uptime=now - self.began,
            traffic=replace(self.traffic),
            rates=self._rates,
            processed=processed,
            buffered=buffered,
            in_flight=in_flight,
            paused=paused,
            assigned=assigned,
            lag=self._lag(state),
            health=self._health(),
            exceptions=dict(self.exceptions),
            suppressed=self.throttle.suppressed if self.throttle is not None else 0,
        )

    def summary(self, state: str) -> str:
        """The closing lines: totals since :meth:`start` and exception records by kind."""
        produced, processed = self.traffic.produced, self._numbers()[0]
        left = produced - processed
        kinds = " · ".join(f"{kind} {n}" for kind, n in sorted(self.exceptions.items()))
        return (
            f"{state} after {time.monotonic() - self.began:.1f}s: produced {produced}, "
            f"processed {processed}"
            + (f" ({left} left unprocessed in Kafka)" if left else "")
            + f"\n  exceptions: {kinds or 'none'}"
        )

    async def count_exceptions(self) -> bool:
        """Final counts, on a connection of its own (the worker's pool is closed by now)."""
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self.exceptions = await _exception_counts(self.settings.database.url.reveal())
            return True
        return False

    async def poll_exceptions(self) -> None:
        while True:
            if self.worker.pool is not None:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    self.exceptions = await _exception_counts(self.worker.pool)
            await anyio.sleep(2)

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


async def _exception_counts(db: Any) -> dict[str, int]:
    """Exception records by kind; ``db`` is an asyncpg pool or a database URL."""
    if isinstance(db, str):
        conn = await asyncpg.connect(db)
        try:
            return await _exception_counts(conn)
        finally:
            await conn.close()
    rows = await db.fetch(_EXCEPTIONS_SQL, timeout=2)
    return {row["kind"]: int(row["n"]) for row in rows}


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
    t, lag = snap.traffic, snap.lag
    kinds = " ".join(f"{kind}={n}" for kind, n in sorted(snap.exceptions.items())) or "none"
    line = (
        f"{snap.state}: produced {t.produced} ({snap.rates[0]:.0f}/s) "
        f"processed {snap.processed} ({snap.rates[1]:.0f}/s) lag {'-' if lag is None else lag} "
        f"buffered {snap.buffered} in_flight {snap.in_flight} partitions {snap.assigned} "
        f"paused {snap.paused} exceptions {kinds}"
    )
    if t.failed:
        line += f" send_failures {t.failed} ({t.last_error})"
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
    grid.add_row("", f"[yellow]{NOTE}[/]")
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
