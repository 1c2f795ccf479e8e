"""``skuflow dev``: broker, PostgreSQL, sample traffic, the worker and a live view, in one process.

Startup is synchronous and printed step by step: the broker (Apache Kafka on the JDK, Tansu
without one) and an embedded PostgreSQL under ``<cache>/dev/<pid>/``. Then one anyio task group
runs the sample producer, the :class:`~skuflow.app.Worker` and the view (a status line every 5 s
with ``--no-view``). The first Ctrl-C/SIGTERM (or ``--duration``) stops the traffic and drains
the worker; a second one exits at once. Broker and PostgreSQL are stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import logging.handlers
import math
import os
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import anyio
import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from msgspec.structs import replace
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from config.settings import Secret, Settings
from devstack.kafka import KAFKA_VERSION, TANSU_LIMITS, KafkaBroker, TansuBroker, start_broker
from devstack.postgres import EmbeddedPostgres, create_database
from devstack.traffic import WAREHOUSES, TrafficStats, produce_sample_traffic
from skuflow.app import Worker, install_uvloop
from worker.errors import SkuflowError
from worker.logs import ConsoleFormatter

__all__ = ["NOTE", "run_dev"]

_REPO_ROOT = Path(__file__).resolve().parents[1]
_EXCEPTIONS_SQL = "SELECT kind, count(*) AS n FROM skuflow_exceptions GROUP BY kind"
_LAG_METRIC = "messaging_kafka_consumer_lag"  # the engine's messaging.kafka.consumer.lag gauge
NOTE = "no handler yet: stock.adjusted and dispatch.confirmed are recorded as exceptions"
Say = Callable[[str], None]
Broker = KafkaBroker | TansuBroker


def run_dev(settings: Settings, args: argparse.Namespace) -> int:
    """The ``skuflow dev`` command; returns the exit status (0 after a clean stop)."""
    rate, skus, duration = float(args.rate), int(args.skus), args.duration
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
        dev = _dev_settings(settings, broker.bootstrap, db_url)
        log_file = workdir / "worker.log"
        logs = str(log_file) if view else f"stderr (repeats thinned out); all of them in {log_file}"
        handlers, throttle = _configure_logging(dev.log.level, log_file, to_stderr=not view)
        say(f"  worker      group {dev.kafka.group}; logs to {logs}")
        say(f"  traffic     {rate:g} events/s over {skus} SKUs at {', '.join(WAREHOUSES)}")
        say(f"  note        {NOTE}")
        stack = f"{kind} {broker.bootstrap} · PostgreSQL pid {postgres.pid}"

        async def main() -> int:
            app = _DevApp(dev, say, rate=rate, skus=skus, duration=duration, throttle=throttle)
            app.facts = {"stack": stack, "logs": logs}
            return await app.run(console if view else None, began)

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
        say: Say,
        *,
        rate: float,
        skus: int,
        duration: float | None,
        throttle: _Throttle | None,
    ) -> None:
        self.settings, self.say, self.throttle = settings, say, throttle
        self.rate, self.skus, self.duration = rate, skus, duration
        self.worker = Worker(settings)
        self.traffic = TrafficStats()
        self.facts: dict[str, str] = {}
        self.exceptions: dict[str, int] = {}
        self.state = "starting"
        self.view = False
        self.rates = (0.0, 0.0)  # produced/s, processed/s over the last ~5 s
        self._samples: deque[tuple[float, int, int]] = deque()
        self._traffic_scope = anyio.CancelScope()
        self._began = time.monotonic()

    async def run(self, console: Console | None, began: float) -> int:
        topics, step = self.settings.topics, time.monotonic()
        wanted = {topics.stock: 6, topics.dispatch: 6, topics.dead_letter: 1}
        await _create_topics(self.settings.kafka.bootstrap, wanted, self.settings.kafka.group)
        listed = ", ".join(f"{name} x{count}" for name, count in wanted.items())
        self.say(f"  topics      {_took(step)}: {listed}")
        self.say(f"stack up in {time.monotonic() - began:.1f}s. Ctrl-C to stop")
        self._began = time.monotonic()
        self._samples.append((self._began, 0, 0))
        self.view, counted = console is not None, False
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signals, tg.cancel_scope)
            tg.start_soon(self._produce)
            tg.start_soon(self._poll_exceptions)
            if self.duration is not None:
                tg.start_soon(self._stop_after, self.duration)
            if console is not None:
                tg.start_soon(self._live, console)
            else:
                tg.start_soon(self._status_lines)
            await self.worker.run()
            self.state = "stopped"
            counted = await self._count_exceptions()
            tg.cancel_scope.cancel()
        if self.state != "stopped":  # a second signal cut the drain short
            self.state = "exited without draining"
        if not counted:
            await self._count_exceptions()
        processed = self._numbers()[0]
        left = self.traffic.produced - processed
        kinds = " · ".join(f"{kind} {n}" for kind, n in sorted(self.exceptions.items()))
        self.say(
            f"{self.state} after {time.monotonic() - self._began:.1f}s: produced "
            f"{self.traffic.produced}, processed {processed}"
            + (f" ({left} left unprocessed in Kafka)" if left else "")
            + f"\n  exceptions: {kinds or 'none'}"
        )
        return 0 if self.state == "stopped" else 130

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
            await produce_sample_traffic(
                bootstrap,
                topics.stock,
                topics.dispatch,
                rate=self.rate,
                skus=self.skus,
                stats=self.traffic,
            )

    async def _count_exceptions(self) -> bool:
        """Final counts, on a connection of its own (the worker's pool is closed by now)."""
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self.exceptions = await _exception_counts(self.settings.database.url.reveal())
            return True
        return False

    async def _poll_exceptions(self) -> None:
        while True:
            if self.worker.pool is not None:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    self.exceptions = await _exception_counts(self.worker.pool)
            await anyio.sleep(2)

    async def _live(self, console: Console) -> None:
        with Live(console=console, auto_refresh=False) as live:
            try:
                while True:
                    live.update(self.render(), refresh=True)
                    await anyio.sleep(0.5)
            finally:
                live.update(self.render(), refresh=True)

    async def _status_lines(self) -> None:
        while True:
            await anyio.sleep(5)
            self.say(f"[{time.monotonic() - self._began:4.0f}s] {self.status_line()}")

    def _numbers(self) -> tuple[int, int, int, int, int]:
        """The engine's processed, buffered, in flight, paused and assigned partitions."""
        e = self.worker.engine
        if e is None:
            return 0, 0, 0, 0, 0
        return e.processed, e.buffered, e.in_flight, e.paused_partitions, len(e.assignment())

    def _sample(self) -> None:
        """Update state and the rates (over the last ~5 s)."""
        now, processed = time.monotonic(), self._numbers()[0]
        engine = self.worker.engine
        if self.state == "starting" and engine is not None and engine.joined:
            self.state = "running"
        samples = self._samples
        samples.append((now, self.traffic.produced, processed))
        while len(samples) > 2 and samples[1][0] <= now - 5:
            samples.popleft()
        then, produced_then, processed_then = samples[0]
        span = now - then
        if span > 0:
            self.rates = (
                (self.traffic.produced - produced_then) / span,
                (processed - processed_then) / span,
            )

    def _lag(self) -> int | None:
        """High watermark minus committed watermark, summed over owned partitions."""
        engine = self.worker.engine
        if engine is None or not engine.joined or self.state == "stopped":
            return None
        families = self.worker.registry.collect()
        return int(sum(s.value for f in families if f.name == _LAG_METRIC for s in f.samples))

    def _health(self) -> str:
        host, health = self.settings.health.host, self.worker.health
        port = health.port if health is not None else 0
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}" if port else ""

    def status_line(self) -> str:
        """The ``--no-view`` status line: ``name value`` pairs (also the final summary)."""
        self._sample()
        processed, buffered, in_flight, paused, assigned = self._numbers()
        t, lag = self.traffic, self._lag()
        kinds = " ".join(f"{kind}={n}" for kind, n in sorted(self.exceptions.items())) or "none"
        line = (
            f"{self.state}: produced {t.produced} ({self.rates[0]:.0f}/s) "
            f"processed {processed} ({self.rates[1]:.0f}/s) lag {'-' if lag is None else lag} "
            f"buffered {buffered} in_flight {in_flight} partitions {assigned} paused {paused} "
            f"exceptions {kinds}"
        )
        if t.failed:
            line += f" send_failures {t.failed} ({t.last_error})"
        if self.throttle is not None and self.throttle.suppressed:
            line += f" [{self.throttle.suppressed} repeated log lines thinned out]"
        return line

    def render(self) -> Panel:
        self._sample()
        processed, buffered, in_flight, paused, assigned = self._numbers()
        t, lag, health = self.traffic, self._lag(), self._health()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column()
        failed = f" · [red]send failures {t.failed:,}[/]" if t.failed else ""
        grid.add_row(
            "traffic",
            f"produced  {t.produced:>9,}  {self.rates[0]:7.1f}/s   "
            f"stock {t.stock:,} · dispatch {t.dispatch:,} · bad input {t.bad:,}{failed}",
        )
        lag_text = "—" if lag is None else f"{lag:,}"
        grid.add_row(
            "worker", f"processed {processed:>9,}  {self.rates[1]:7.1f}/s   lag {lag_text}"
        )
        grid.add_row(
            "",
            f"buffered {buffered:,} · in flight {in_flight:,} · "
            f"partitions {assigned} assigned, {paused} paused",
        )
        kinds = sorted(self.exceptions.items(), key=lambda item: -item[1])
        grid.add_row("exceptions", " · ".join(f"{k} {n:,}" for k, n in kinds) or "none yet")
        grid.add_row("", f"[yellow]{NOTE}[/]")
        grid.add_row("stack", escape(self.facts.get("stack", "")))
        grid.add_row("health", f"{health}/livez · /readyz · /metrics" if health else "starting")
        grid.add_row("logs", escape(self.facts.get("logs", "")))
        footer = "Ctrl-C to stop" if self.state in ("starting", "running") else "stopping…"
        if self.state == "draining":
            footer = "draining the worker… Ctrl-C again to exit at once"
        grid.add_row("", "")
        grid.add_row("", f"[bold]{footer}[/]")
        uptime = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - self._began))
        title = f"skuflow dev · {self.state} · up {uptime}"
        return Panel(grid, title=title, title_align="left", expand=False)


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


def _dev_settings(settings: Settings, bootstrap: str, db_url: str) -> Settings:
    """``settings`` pointed at the embedded broker and database (plaintext, no credentials)."""
    kafka = replace(
        settings.kafka,
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


# -- logging -------------------------------------------------------------------------------------


class _Throttle(logging.Filter):
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


def _configure_logging(
    level: str, log_file: Path, *, to_stderr: bool
) -> tuple[list[logging.Handler], _Throttle | None]:
    """Everything to ``log_file`` (rotated); with ``to_stderr`` a thinned-out copy on stderr."""
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(log_file, maxBytes=20 << 20, backupCount=2)
    ]
    throttle = _Throttle() if to_stderr else None
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
