"""The embedded stack of a benchmark run, and an engine wired the way ``skuflow run`` wires it."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import msgspec
from aiokafka import AIOKafkaConsumer
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from config.settings import EngineSettings, KafkaSettings, Settings, TopicsSettings
from devstack.kafka import KafkaBroker
from devstack.postgres import EmbeddedPostgres, create_database
from handlers.common.router import DomainRouter
from handlers.flows import default_families
from skuflow.app import VERSION
from worker.engine import Engine, EngineOptions
from worker.kafka import build_consumer, build_producer
from worker.messages import Handler
from worker.sinks import OutcomeSinks
from worker.store import create_pool, migrate, package_migrations
from worker.telemetry import EngineMetrics, meter_provider


class Stack(msgspec.Struct, frozen=True):
    """Where the benchmark's broker and database are (passed to the RSS subprocess as JSON)."""

    bootstrap: str
    database_url: str


@contextmanager
def embedded_stack() -> Iterator[Stack]:
    """Apache Kafka (full JIT, 1 GiB heap) and PostgreSQL, started side by side; removed after."""
    root = Path(tempfile.mkdtemp(prefix="skuflow-bench-"))
    # C2 on: the devstack default stops at C1, which would make the broker the bottleneck.
    broker = KafkaBroker(root / "kafka", heap="1g", jvm_args=["-XX:TieredStopAtLevel=4"])
    postgres = EmbeddedPostgres(root / "pgdata", keep_data=False)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            started = pool.submit(broker.start)
            postgres.start()
            started.result()
        database_url = create_database(postgres.url, "bench")
        anyio.run(_migrate, database_url)
        yield Stack(broker.bootstrap, database_url)
    finally:
        postgres.stop()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _migrate(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        await migrate(pool, package_migrations("worker", "engine"))
    finally:
        await pool.close()


def kafka_settings(stack: Stack) -> KafkaSettings:
    return KafkaSettings(bootstrap=stack.bootstrap, client_id="skuflow-bench")


def fresh_group(name: str) -> str:
    return f"bench-{name}-{time.time_ns()}"


def worker_settings(stack: Stack, group: str, *, stock_topic: str, dispatch_topic: str) -> Settings:
    """``Settings`` as a worker of the urgent benchmark has them: ``group`` is ``kafka.group``
    (the normal class's group; the urgent class's is derived from it, as in ``skuflow run``)."""
    return Settings(
        kafka=KafkaSettings(bootstrap=stack.bootstrap, group=group, client_id="bench"),
        topics=TopicsSettings(
            stock=stock_topic, dispatch=dispatch_topic, dead_letter="bench.dead-letter"
        ),
    )


def worker_metrics(*, pre_aggregate: bool = True) -> EngineMetrics:
    """Engine metrics on an OpenTelemetry SDK meter with a Prometheus reader, as in ``Worker``."""
    provider = meter_provider([PrometheusMetricReader(registry=CollectorRegistry())])
    return EngineMetrics(provider.get_meter("skuflow.worker", VERSION), pre_aggregate=pre_aggregate)


@asynccontextmanager
async def outcome_sinks(stack: Stack, dead_letter_topic: str) -> AsyncIterator[OutcomeSinks]:
    """:class:`OutcomeSinks` on a small pool and the production producer, as ``Worker`` builds
    them (a ``Done`` outcome of a first delivery without headers writes nothing)."""
    async with AsyncExitStack() as stack_:
        pool = await create_pool(stack.database_url, min_size=1, max_size=2)
        stack_.push_async_callback(pool.close)
        producer = build_producer(kafka_settings(stack))
        await producer.start()
        stack_.push_async_callback(producer.stop)
        yield OutcomeSinks(pool, producer, dead_letter_topic)


@asynccontextmanager
async def started_consumer(stack: Stack, group: str) -> AsyncIterator[AIOKafkaConsumer]:
    """The production consumer (``build_consumer``) in ``group``, started for the block."""
    consumer = build_consumer(kafka_settings(stack), group=group)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def engine_for(
    stack: Stack,
    topic: str,
    handler: Handler,
    *,
    group: str,
    max_in_flight: int = 256,
    metrics: EngineMetrics | None = None,
    tracer: Tracer | None = None,
) -> AsyncIterator[Engine]:
    """An :class:`Engine` on ``topic`` with the production clients, router and sinks.

    Everything but ``max_in_flight`` is an :class:`EngineOptions` default (256: the main
    table's engine rows; the staging case passes ``engine.max_in_flight``). The pool only backs
    :class:`OutcomeSinks` (a ``Done`` outcome of a first delivery writes nothing).
    """
    async with (
        outcome_sinks(stack, f"{topic}.dlq") as sinks,
        started_consumer(stack, group) as consumer,
    ):
        router = DomainRouter(default_families({"stock.adjusted": handler}))
        options = EngineOptions(
            topics=(topic,), group=group, tuning=EngineSettings(max_in_flight=max_in_flight)
        )
        yield Engine(consumer, router, sinks, options, metrics=metrics, tracer=tracer)
