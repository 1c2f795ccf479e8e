"""``skuflow dev``: broker, PostgreSQL, sample traffic, the worker and a live view, in one process.

Startup is synchronous and printed step by step: the broker (Apache Kafka on the JDK, Tansu
without one) and an embedded PostgreSQL under ``<cache>/dev/<pid>/``. Then one anyio task group
runs the sample producer, the :class:`~skuflow.app.Worker` and the view (a status line every 5 s
with ``--no-view``). The first Ctrl-C/SIGTERM (or ``--duration``) stops the traffic and drains
the worker; a second one exits at once. Broker and PostgreSQL are stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import logging.handlers
import math
import os
import shutil
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, NoReturn

import anyio
import asyncpg
from msgspec.structs import replace
from rich.console import Console, RenderableType
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

__all__ = ["run_dev"]

_REPO_ROOT = Path(__file__).resolve().parents[1]
_EXCEPTIONS_SQL = "SELECT kind, count(*) AS n FROM skuflow_exceptions GROUP BY kind"
_LAG_METRIC = "messaging_kafka_consumer_lag"
NOTE = "no handler yet: stock.adjusted and dispatch.confirmed are recorded as exceptions"
Say = Callable[[str], None]


def run_dev(settings: Settings, args: argparse.Namespace) -> int:
    """The ``skuflow dev`` command; returns the exit status (0 after a clean stop)."""
    rate, skus, duration = float(args.rate), int(args.skus), args.duration
    if not (rate > 0 and math.isfinite(rate)):
        raise SkuflowError("--rate must be a number > 0")
    if skus < 1:
        raise SkuflowError("--skus must be >= 1")
    if duration is not None and not duration > 0:
        raise SkuflowError("--duration must be > 0")
    console = Console(highlight=False)
    view = not args.no_view and console.is_terminal
    workdir = _workdir()

    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True)

    signal.signal(signal.SIGTERM, _interrupt)  # until the event loop takes over: like Ctrl-C
    broker: KafkaBroker | TansuBroker | None = None
    postgres: EmbeddedPostgres | None = None
    handlers: list[logging.Handler] = []
    began = time.monotonic()
    say(f"skuflow dev: starting the embedded stack in {workdir}")
    try:
        step = time.monotonic()
        broker = start_broker(workdir / "kafka", prefer=args.broker)
        kind = f"Apache Kafka {KAFKA_VERSION}" if isinstance(broker, KafkaBroker) else "Tansu"
        say(f"  kafka       {kind} at {broker.bootstrap} (pid {broker.pid}) {_took(step)}")
        if isinstance(broker, TansuBroker) and args.broker == "tansu":
            say(f"  warning     {TANSU_LIMITS}")
        step = time.monotonic()
        postgres = EmbeddedPostgres(workdir / "pgdata", keep_data=False)
        postgres.start()
        db_url = create_database(postgres.url, "skuflow")
        say(f"  postgresql  {db_url} (pid {postgres.pid}) {_took(step)}")
        dev = _dev_settings(settings, broker.bootstrap, db_url)
        log_file = workdir / "worker.log"
        logs = str(log_file) if view else f"stderr (repeats thinned out), all in {log_file}"
        handlers, throttle = _configure_logging(dev.log.level, log_file, to_stderr=not view)
        say(f"  worker      group {dev.kafka.group}, logs to {logs}")
        say(f"  traffic     {rate:g} events/s over {skus} SKUs, {', '.join(WAREHOUSES)}")
        say(f"  note        {NOTE} (kind no_handler)")
        facts = (f"{kind} {broker.bootstrap} · PostgreSQL pid {postgres.pid}", logs)
        say(f"stack up in {time.monotonic() - began:.1f}s; Ctrl-C to stop")

        async def main() -> int:
            app = _DevApp(dev, say, rate=rate, skus=skus, duration=duration, throttle=throttle)
            app.facts = facts
            return await app.run(console if view else None)

        options = {"use_uvloop": True} if install_uvloop() is not None else {}
        return int(anyio.run(main, backend_options=options))
    except Exception as exc:
        logging.getLogger("skuflow.dev").exception("skuflow dev failed")
        say(f"skuflow: error: {exc}\n  (logs of this run: {workdir})")
        return 1
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
        signal.signal(signal.SIGTERM, _interrupt)
        _stop_stack(broker, postgres, workdir, say)


class Figures(NamedTuple):
    """One sample of everything the view and the status line show."""

    state: str
    uptime: float
    traffic: TrafficStats
    produced_rate: float
    processed: int
    processed_rate: float
    lag: int | None
    buffered: int
    in_flight: int
    paused: int
    assigned: int
    exceptions: dict[str, int]
    health: str
    suppressed_logs: int


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
        self.facts = ("", "")  # (stack, logs)
        self.exceptions: dict[str, int] = {}
        self.state = "starting"
        self.forced = False
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=11)  # 5 s at 2 Hz
        self._traffic_scope = anyio.CancelScope()
        self._began = time.monotonic()

    async def run(self, console: Console | None) -> int:
        topics, step = self.settings.topics, time.monotonic()
        wanted = {topics.stock: 6, topics.dispatch: 6, topics.dead_letter: 1}
        await _create_topics(self.settings.kafka.bootstrap, wanted)
        listed = ", ".join(f"{name} x{count}" for name, count in wanted.items())
        self.say(f"  topics      {listed} {_took(step)}")
        self._began = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signals, tg.cancel_scope)
            tg.start_soon(self._produce)
            tg.start_soon(self._poll_exceptions)
            if self.duration is not None:
                tg.start_soon(self._stop_after, self.duration)
            tg.start_soon(self._live if console is not None else self._status_lines, console)
            await self.worker.run()
            tg.cancel_scope.cancel()
        figures = self.figures()
        self.say(f"stopped after {figures.uptime:.1f}s: {status_line(figures)}")
        return 130 if self.forced else 0

    def stop(self, why: str) -> None:
        if self.state != "draining":
            self.state = "draining"
            self.say(f"stopping ({why}): traffic stopped, worker draining")
            self._traffic_scope.cancel()
            self.worker.request_stop()

    async def _signals(self, everything: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self.state == "draining":
                    self.say(f"{signum.name} again: exiting without waiting for the drain")
                    self.forced = True
                    everything.cancel()
                    return
                self.stop(signum.name)

    async def _stop_after(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self.stop(f"--duration {seconds:g}s elapsed")

    async def _produce(self) -> None:
        topics = self.settings.topics
        with self._traffic_scope:
            await produce_sample_traffic(
                self.settings.kafka.bootstrap,
                topics.stock,
                topics.dispatch,
                rate=self.rate,
                skus=self.skus,
                stats=self.traffic,
            )

    async def _poll_exceptions(self) -> None:
        while True:
            pool = self.worker.pool
            if pool is not None:
                try:
                    rows = await pool.fetch(_EXCEPTIONS_SQL, timeout=2)
                    self.exceptions = {row["kind"]: int(row["n"]) for row in rows}
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pass  # starting or closing: keep the last counts
            await anyio.sleep(2)

    async def _live(self, console: Console | None) -> None:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            try:
                while True:
                    live.update(self.render(), refresh=True)
                    await anyio.sleep(0.5)
            finally:
                live.update(self.render(), refresh=True)

    async def _status_lines(self, _console: Console | None) -> None:
        while True:
            await anyio.sleep(5)
            self.say(f"[{time.monotonic() - self._began:4.0f}s] {status_line(self.figures())}")

    def figures(self) -> Figures:
        now, engine, health = time.monotonic(), self.worker.engine, self.worker.health
        processed = engine.processed if engine is not None else 0
        self._samples.append((now, self.traffic.produced, processed))
        then, produced_then, processed_then = self._samples[0]
        span = max(now - then, 1e-9)
        if self.state == "starting" and engine is not None and engine.joined:
            self.state = "running"
        host = self.settings.health.host
        port = health.port if health is not None else 0
        return Figures(
            state=self.state,
            uptime=now - self._began,
            traffic=dataclasses.replace(self.traffic),
            produced_rate=(self.traffic.produced - produced_then) / span,
            processed=processed,
            processed_rate=(processed - processed_then) / span,
            lag=self._lag(),
            buffered=engine.buffered if engine else 0,
            in_flight=engine.in_flight if engine else 0,
            paused=engine.paused_partitions if engine else 0,
            assigned=len(engine.assignment()) if engine else 0,
            exceptions=dict(self.exceptions),
            health=f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}" if port else "",
            suppressed_logs=self.throttle.suppressed if self.throttle else 0,
        )

    def _lag(self) -> int | None:
        """Sum of high watermark - committed watermark over owned partitions (the engine's
        ``messaging.kafka.consumer.lag`` gauge, read from the worker's metrics registry)."""
        engine = self.worker.engine
        if engine is None or not engine.joined:
            return None
        lags = [
            sample.value
            for family in self.worker.registry.collect()
            if family.name == _LAG_METRIC
            for sample in family.samples
        ]
        return int(sum(lags))

    def render(self) -> RenderableType:
        f = self.figures()
        t = f.traffic
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column()
        grid.add_row(
            "traffic",
            f"produced  {t.produced:>10,}  {f.produced_rate:7.1f}/s   "
            f"stock {t.stock:,} · dispatch {t.dispatch:,} · bad input {t.bad:,}"
            + (f" · [red]send failures {t.failed:,}[/]" if t.failed else ""),
        )
        lag = "—" if f.lag is None else f"{f.lag:,}"
        grid.add_row(
            "worker", f"processed {f.processed:>10,}  {f.processed_rate:7.1f}/s   lag {lag}"
        )
        grid.add_row(
            "",
            f"buffered {f.buffered:,} · in flight {f.in_flight:,} · "
            f"partitions {f.assigned} assigned, {f.paused} paused",
        )
        kinds = sorted(f.exceptions.items(), key=lambda item: -item[1])
        listed = " · ".join(f"{kind} {count:,}" for kind, count in kinds) or "none yet"
        grid.add_row("exceptions", listed)
        grid.add_row("", f"[yellow]{NOTE}[/]")
        grid.add_row("stack", escape(self.facts[0]))
        grid.add_row("health", f"{f.health}/livez · /readyz · /metrics" if f.health else "—")
        grid.add_row("logs", escape(self.facts[1]))
        footer = "Ctrl-C to stop"
        if f.state == "draining":
            footer = "draining the worker… Ctrl-C again to exit at once"
        grid.add_row("", "")
        grid.add_row("", f"[bold]{footer}[/]")
        uptime = time.strftime("%H:%M:%S", time.gmtime(f.uptime))
        return Panel(grid, title=f"skuflow dev · {f.state} · up {uptime}", title_align="left")


def status_line(f: Figures) -> str:
    """The ``--no-view`` status line (also the final summary): ``key value`` pairs."""
    lag = "-" if f.lag is None else str(f.lag)
    kinds = " ".join(f"{kind}={n}" for kind, n in sorted(f.exceptions.items())) or "none"
    line = (
        f"{f.state}: produced {f.traffic.produced} ({f.produced_rate:.0f}/s) "
        f"processed {f.processed} ({f.processed_rate:.0f}/s) lag {lag} "
        f"buffered {f.buffered} in_flight {f.in_flight} partitions {f.assigned} "
        f"paused {f.paused} exceptions {kinds}"
    )
    if f.traffic.failed:
        line += f" send_failures {f.traffic.failed} ({f.traffic.last_error})"
    if f.suppressed_logs:
        line += f" (log repeats thinned out: {f.suppressed_logs})"
    return line


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
    return f"in {time.monotonic() - since:.1f}s"


def _free(host: str, port: int) -> bool:
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
        sasl_mechanism=None,
        sasl_username=None,
        sasl_password=None,
        ssl_cafile=None,
    )
    health = settings.health
    if health.port and not _free(health.host, health.port):
        health = replace(health, port=0)  # the configured port is taken: any free one
    return replace(
        settings,
        kafka=kafka,
        database=replace(settings.database, url=Secret(db_url)),
        health=health,
        log=replace(settings.log, format="console"),
    )


async def _create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create the topics (existing ones are fine) and wait until every partition has a leader."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

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
                    and t["partitions"]
                    and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
                    for t in described
                ):
                    return
                await anyio.sleep(0.05)
    finally:
        await admin.close()


def _stop_stack(
    broker: KafkaBroker | TansuBroker | None,
    postgres: EmbeddedPostgres | None,
    workdir: Path,
    say: Say,
) -> None:
    step = time.monotonic()
    try:
        if broker is not None:
            broker.stop()
            shutil.rmtree(workdir / "kafka" / "data", ignore_errors=True)
    finally:
        if postgres is not None:
            postgres.stop()  # keep_data=False: deletes the data directory
    if broker is not None or postgres is not None:
        say(f"broker and PostgreSQL stopped {_took(step)}; logs kept in {workdir}")


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
    formatter = ConsoleFormatter()
    to_file = logging.handlers.RotatingFileHandler(log_file, maxBytes=20 << 20, backupCount=2)
    handlers: list[logging.Handler] = [to_file]
    throttle = None
    if to_stderr:
        throttle = _Throttle()
        console = logging.StreamHandler()
        console.addFilter(throttle)
        handlers.append(console)
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    return handlers, throttle
