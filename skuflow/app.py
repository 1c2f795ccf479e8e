"""Wiring: settings → PostgreSQL, Kafka clients, router, engine, health server.

The lifecycle reads top to bottom in :meth:`Worker.run`: health server up, PostgreSQL reached
and migrated, clients started, engine joined; then it runs until asked to stop, drains, commits
and closes everything in reverse order. Every task lives in one task group.
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import anyio
import asyncpg
import msgspec
from anyio.abc import TaskStatus
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from config.settings import Settings
from handlers.common.telemetry import DomainTelemetry
from handlers.domain import build_domain
from handlers.flows import migrations as domain_migrations
from worker.backoff import Backoff
from worker.engine import Engine, EngineOptions
from worker.errors import InfrastructureError, SkuflowError
from worker.health import HealthServer
from worker.kafka import build_consumer, build_producer, group_instance_id, stop_client
from worker.membership import InstanceFenced
from worker.messages import Router
from worker.pacing import DeadlinePacer
from worker.parking import ParkedRetrier, ParkedTarget
from worker.sinks import OutcomeSinks
from worker.slicing import LoopSlice
from worker.store import create_pool, migrate, package_migrations, ping
from worker.telemetry import EngineMetrics, meter_provider, metric_readers_from_env
from worker.topics import TopicWatch
from worker.tracing import http_trace_configs, resource

log = logging.getLogger("skuflow.app")

T = TypeVar("T")

VERSION = "0.1.0"

#: The event classes a worker process can run.
CLASSES = frozenset({"urgent", "normal"})

#: Each shutdown step (closing a Kafka client, the pool, the health server) gets this long.
CLOSE_SECONDS = 10.0

#: Exit status when another process took this one's group instance id (Kafka fenced it).
EXIT_FENCED = 3


def engine_options(settings: Settings) -> EngineOptions:
    """The normal class: stock movements (and the topics of the other normal flows that run,
    added by the wiring); FIFO, ``[engine]`` tuning."""
    return EngineOptions(
        topics=(settings.topics.stock,),
        group=settings.kafka.group,
        tuning=settings.engine,
    )


def urgent_options(settings: Settings) -> EngineOptions:
    """The urgent class: dispatch confirmations, earliest deadline first, its own consumer
    group (its own fetch path) and its own reserved runners."""
    return EngineOptions(
        topics=(settings.topics.dispatch,),
        group=settings.dispatch.group or f"{settings.kafka.group}.urgent",
        tuning=msgspec.structs.replace(
            settings.engine, max_in_flight=settings.dispatch.max_in_flight
        ),
        deadline_first=True,
        at_risk_seconds=settings.dispatch.at_risk_seconds,
    )


async def connect_database(settings: Settings, *, attempts: int | None = None) -> asyncpg.Pool:
    """Connect (retrying with backoff while PostgreSQL is unreachable) and migrate."""
    backoff = Backoff(0.5, 10.0)
    attempt = 0
    while True:
        try:
            pool = await create_pool(
                settings.database.url.reveal(),
                min_size=settings.database.min_pool,
                max_size=settings.database.max_pool,
            )
            break
        except InfrastructureError as exc:
            attempt += 1
            if attempts is not None and attempt >= attempts:
                raise
            log.warning("PostgreSQL not reachable yet", extra={"error": str(exc)})
            await anyio.sleep(backoff.delay(attempt))
    await migrate(pool, [*package_migrations("worker", "engine"), *domain_migrations()])
    return pool


class Worker:
    """The daemon of ``skuflow run``: an urgent and a normal engine, the park retrier, health."""

    def __init__(
        self,
        settings: Settings,
        *,
        router: Router | None = None,
        options: EngineOptions | None = None,
        urgent: EngineOptions | None = None,
        erp: object | None = None,
        classes: frozenset[str] = CLASSES,
        tracer_provider: TracerProvider | None = None,
        pacer: DeadlinePacer | None = None,
    ) -> None:
        unknown = set(classes) - CLASSES
        if unknown or not classes:
            raise SkuflowError(f"classes must be a non-empty subset of {sorted(CLASSES)}")
        #: Which classes this process runs: both (default), or one — e.g. the urgent class in
        #: its own deployment, so no stock backlog shares its event loop.
        self.classes = frozenset(classes)
        self.settings = settings
        self.router = router
        #: The urgent class's rate limiter (with an injected router; else the domain's).
        self.pacer = pacer
        self.erp = erp
        self.options = options or engine_options(settings)
        #: Options given by the caller are used as they are; else the flows add their topics.
        self._own_options = options is None
        self.urgent_options = urgent or urgent_options(settings)
        self.registry = CollectorRegistry()
        self.meter_provider = meter_provider(
            [PrometheusMetricReader(registry=self.registry), *metric_readers_from_env()],
            tracer_provider.resource if tracer_provider else resource(VERSION),
        )
        self.metrics = EngineMetrics(self.meter_provider.get_meter("skuflow.worker", VERSION))
        #: None: tracing off (no exporter configured) and no tracing code runs per message.
        self.tracer_provider = tracer_provider
        tracer = tracer_provider.get_tracer("skuflow", VERSION) if tracer_provider else None
        self.tracer = tracer
        self.telemetry = DomainTelemetry(
            self.meter_provider.get_meter("skuflow.handlers", VERSION), tracer
        )
        #: The normal class (stock movements) and the urgent class (dispatch confirmations).
        self.engine: Engine | None = None
        self.urgent: Engine | None = None
        self.retrier: ParkedRetrier | None = None
        self.pool: asyncpg.Pool | None = None
        self.health: HealthServer | None = None
        #: Subscribed topics missing from the cluster, per consumer (``/readyz`` details).
        self.topic_watches: list[TopicWatch] = []
        #: Set when Kafka fenced this process's group instance id: it stops, exit EXIT_FENCED.
        self.fenced: InstanceFenced | None = None
        self._stop = anyio.Event()
        self._ping_cache: tuple[float, bool] = (0.0, False)

    @property
    def engines(self) -> list[Engine]:
        return [e for e in (self.urgent, self.engine) if e is not None]

    # -- probes ----------------------------------------------------------------------------------
    def _heartbeat(self) -> float:
        # Before the engines exist (start-up, waiting for PostgreSQL) the process counts as alive.
        engines = self.engines
        return min(e.fetch_heartbeat for e in engines) if engines else time.monotonic()

    async def _readiness(self) -> tuple[bool, str]:
        engines = self.engines
        if self._stop.is_set() or any(e.draining for e in engines):
            return False, "draining"
        if self.pool is None:
            return False, "waiting for PostgreSQL"
        now = time.monotonic()
        checked_at, ok = self._ping_cache
        if now - checked_at > 2.0:
            ok = await ping(self.pool)
            self._ping_cache = (now, ok)
        if not ok:
            return False, "PostgreSQL unreachable"
        if len(engines) < len(self.classes) or not all(e.joined for e in engines):
            return False, "joining consumer groups"
        return True, "ready"

    def _details(self) -> dict[str, object]:
        """``/readyz`` details. A missing topic does not make the worker unready: it is a
        healthy process that consumes the topic once it exists."""
        return {"missing_topics": sorted(t for w in self.topic_watches for t in w.missing)}

    @property
    def exit_status(self) -> int:
        """0, or EXIT_FENCED when Kafka fenced this process (another one took its id)."""
        return EXIT_FENCED if self.fenced is not None else 0

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()
        for engine in self.engines:
            engine.request_stop()

    # -- lifecycle -------------------------------------------------------------------------------
    async def _unless_stopped(self, start: Callable[..., Awaitable[T]], *args: Any) -> T | None:
        """Await a start-up step that may wait a long time; None if a stop arrives first."""
        result: T | None = None
        async with anyio.create_task_group() as tg:

            async def cancel_on_stop() -> None:
                await self._stop.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_on_stop)
            result = await start(*args)
            tg.cancel_scope.cancel()
        return result

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        settings = self.settings
        self.health = HealthServer(
            heartbeat=self._heartbeat,
            readiness=self._readiness,
            stall_seconds=settings.health.stall_seconds,
            registry=self.registry,
            details=self._details,
        )
        await self.health.start(settings.health.host, settings.health.port)
        try:
            self.pool = await self._unless_stopped(connect_database, settings)
            if self.pool is None:
                return  # asked to stop before PostgreSQL was reachable
            async with AsyncExitStack() as clients:
                session = await clients.enter_async_context(
                    aiohttp.ClientSession(
                        trace_configs=http_trace_configs(self.tracer_provider, self.meter_provider)
                    )
                )
                producer = await clients.enter_async_context(
                    _started(build_producer(settings.kafka))
                )
                domain = build_domain(
                    settings,
                    self.pool,
                    session,
                    erp=self.erp,
                    telemetry=self.telemetry,
                    producer=producer,
                )
                if self._own_options and self.router is None:
                    more = [t for t in domain.topics if t not in self.options.topics]
                    self.options = msgspec.structs.replace(
                        self.options, topics=(*self.options.topics, *more)
                    )
                router = self.router or domain.router
                pacer = self.pacer if self.router is not None else domain.pacer
                if "urgent" not in self.classes:
                    pacer = None
                sinks = OutcomeSinks(self.pool, producer, settings.topics.dead_letter)
                if "urgent" in self.classes:
                    urgent_consumer = await clients.enter_async_context(
                        _started(self._consumer("urgent", self.urgent_options))
                    )
                    self.urgent = Engine(
                        urgent_consumer,
                        router,
                        sinks,
                        self.urgent_options,
                        metrics=self.metrics,
                        tracer=self.tracer,
                        pacer=pacer,
                    )
                if "normal" in self.classes:
                    consumer = await clients.enter_async_context(
                        _started(self._consumer("normal", self.options))
                    )
                    self.engine = Engine(
                        consumer,
                        router,
                        sinks,
                        self.options,
                        metrics=self.metrics,
                        yield_to=self.urgent.pressure if self.urgent is not None else None,
                        tracer=self.tracer,
                        loop_slice=_loop_slice(self.options) if self.urgent is not None else None,
                    )
                self.retrier = ParkedRetrier(self.pool, [_parked_target(e) for e in self.engines])
                if self._stop.is_set():
                    self.request_stop()
                log.info(
                    "worker started",
                    extra={
                        "classes": ",".join(sorted(self.classes)),
                        "topics": ",".join(t for e in self.engines for t in e.topics),
                        "group_instance_id": settings.kafka.group_instance_id or "(dynamic)",
                        "health_port": self.health.port,
                    },
                )
                task_status.started()
                # The stock window flusher belongs to the normal class's processes.
                extra = [*domain.services, *(domain.background if self.engine else [])]
                watches = [w.run for w in self.topic_watches]
                await self._run_engines(self.engines, [self.retrier.run, *extra, *watches], pacer)
        finally:
            with anyio.move_on_after(CLOSE_SECONDS, shield=True) as closing:
                if self.pool is not None:
                    await self.pool.close()
            if closing.cancelled_caught and self.pool is not None:
                self.pool.terminate()
            with anyio.move_on_after(CLOSE_SECONDS, shield=True):
                await self.health.stop()
            self.meter_provider.shutdown()
            log.info("worker stopped")

    async def _run_engines(
        self,
        engines: list[Engine],
        background: list[Callable[[], Coroutine[Any, Any, None]]],
        pacer: DeadlinePacer | None = None,
    ) -> None:
        """The classes run until stopped; the retrier, the rate-limit pacer and the domain's
        background work (e.g. the stock window flusher) live exactly as long as they do."""
        async with anyio.create_task_group() as tg:
            if pacer is not None:
                await tg.start(pacer.run)  # granting before the urgent runners pick
            for task in background:
                tg.start_soon(task)
            async with anyio.create_task_group() as running:
                for engine in engines:
                    running.start_soon(self._run_engine, engine)
            tg.cancel_scope.cancel()

    def _consumer(self, worker_class: str, options: EngineOptions) -> Any:
        """One class's consumer (static member ``<kafka.group_instance_id>-<class>`` when the
        id is set) and the watch over its subscribed topics."""
        kafka = self.settings.kafka
        consumer = build_consumer(
            kafka, group=options.group, instance_id=group_instance_id(kafka, worker_class)
        )
        watch = TopicWatch(
            consumer,
            options.topics,
            worker_class=worker_class,
            refresh_seconds=kafka.metadata_refresh_seconds,
        )
        self.topic_watches.append(watch)
        self.metrics.observe(
            "skuflow.topics.missing",
            "Subscribed topics the cluster does not have (yet): 1 per topic.",
            "{topic}",
            lambda: [(1, {"messaging.destination.name": t}) for t in watch.missing],
        )
        return consumer

    async def _run_engine(self, engine: Engine) -> None:
        """Run one class. Fenced (another process joined the group with this process's
        instance id and Kafka gave it our partitions) the whole process stops: the other class
        drains, and ``skuflow run`` exits EXIT_FENCED so the orchestrator can restart it."""
        try:
            await engine.run()
        except* InstanceFenced as group:
            fenced = group.exceptions[0]
            assert isinstance(fenced, InstanceFenced)
            self.fenced = fenced
            log.error(  # noqa: TRY400  # one clear line: a traceback would say nothing more
                "fenced: another process joined the consumer group with this process's group "
                "instance id; stopping",
                extra={
                    "group": fenced.group,
                    "group_instance_id": fenced.instance_id,
                    "exit_status": EXIT_FENCED,
                },
            )
            self.request_stop()


def _loop_slice(options: EngineOptions) -> LoopSlice | None:
    """Beside the urgent class, the normal class takes a bounded share of each event-loop
    iteration, so an urgent record's trip from the socket to a runner is not held up by a
    stock backlog's long iterations (worker/slicing.py)."""
    seconds = options.tuning.loop_slice_seconds
    return LoopSlice(seconds) if seconds > 0 else None


def _parked_target(engine: Engine) -> ParkedTarget:
    return ParkedTarget(engine.topics, engine.submit_parked, lambda: engine.parked_in_flight)


@asynccontextmanager
async def _started(client: Any) -> AsyncIterator[Any]:
    """An aiokafka client started for the block and stopped (shielded) after it."""
    await client.start()
    try:
        yield client
    finally:
        await stop_client(client, CLOSE_SECONDS)


async def run_until_signalled(worker: Worker) -> int:
    """Run ``worker``; the first SIGTERM/SIGINT drains (exit 0), a second exits at once (130);
    a process fenced by Kafka (another one took its group instance id) exits EXIT_FENCED."""
    forced = False
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            nonlocal forced
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    if not worker.stop_requested:
                        log.info("signal received: draining", extra={"signal": signum.name})
                        worker.request_stop()
                    else:
                        log.warning("second signal: exiting now", extra={"signal": signum.name})
                        forced = True
                        tg.cancel_scope.cancel()
                        return

        tg.start_soon(watch_signals)
        await worker.run()
        tg.cancel_scope.cancel()
    return 130 if forced else worker.exit_status


def tune_gc() -> None:
    """Fewer, cheaper cyclic GC passes for a process that buffers thousands of messages.

    Start-up objects (modules, settings, clients) are frozen out of collection; generation 0
    is collected every 50k allocations instead of 700, which cut GC time per message by ~3x in
    the benchmark while the buffer bounds keep memory flat.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def install_uvloop() -> Any:
    """The event loop policy to run with (uvloop where available)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return None
    return uvloop
