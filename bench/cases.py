"""The contenders. Each is one coroutine, run in a fresh uvloop loop, returning a measurement.

Timing: ``time.perf_counter`` from the first record delivered to the contender to the last one
completed (group join excluded), or, for the 5 ms cases, the completions inside a fixed window
that opens after a warm-up and closes early once 90 % of the topic is done (the last keys of a
topic cannot keep every runner busy).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.trace import Tracer

from bench.data import PARTITIONS
from bench.stack import Stack, engine_for, fresh_group, kafka_settings, worker_metrics
from handlers.stock.events import StockAdjusted
from worker.kafka import build_consumer
from worker.messages import Message
from worker.outcomes import DONE, Outcome

#: The engine's own fetch shape (``EngineOptions`` defaults), used by the raw consumers too.
FETCH_TIMEOUT_MS = 200
FETCH_MAX_RECORDS = 2000
HANDLER_SECONDS = 0.005
WINDOW_CUTOFF = 0.9


class Measurement(msgspec.Struct, frozen=True):
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


class Window(msgspec.Struct, frozen=True):
    warmup: float
    seconds: float


class Progress:
    """Completions of one contender, stamped with ``perf_counter``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.started_at = 0.0
        self.finished_at = 0.0
        self.started = anyio.Event()
        self.finished = anyio.Event()
        self._cutoff = int(target * WINDOW_CUTOFF)
        self._window_over = anyio.Event()

    def begin(self) -> None:
        """A record reached the contender (only the first call counts)."""
        if not self.started.is_set():
            self.started_at = time.perf_counter()
            self.started.set()

    def add(self, count: int = 1) -> None:
        self.count += count
        if self.count >= self._cutoff:
            self._window_over.set()
        if self.count >= self.target and not self.finished.is_set():
            self.finished_at = time.perf_counter()
            self.finished.set()

    def whole_run(self) -> Measurement:
        return Measurement(self.count, self.finished_at - self.started_at)

    async def over(self, window: Window) -> Measurement:
        """Completions within ``window`` (closing early near the end of the topic)."""
        await self.started.wait()
        await anyio.sleep(window.warmup)
        count, start = self.count, time.perf_counter()
        with anyio.move_on_after(window.seconds):
            await self._window_over.wait()
        return Measurement(self.count - count, time.perf_counter() - start)


# -- 1. the ceiling --------------------------------------------------------------------------------
async def ceiling(stack: Stack, topic: str, total: int) -> Measurement:
    """One consumer, ``getmany`` and a typed msgspec decode of every value; nothing else."""
    consumer = build_consumer(kafka_settings(stack), group=fresh_group("ceiling"))
    decode = msgspec.json.Decoder(StockAdjusted).decode
    progress = Progress(total)
    await consumer.start()
    try:
        consumer.subscribe([topic])
        while progress.count < total:
            batch = await consumer.getmany(
                timeout_ms=FETCH_TIMEOUT_MS, max_records=FETCH_MAX_RECORDS
            )
            if batch:
                progress.begin()
            for records in batch.values():
                for record in records:
                    decode(record.value)
                progress.add(len(records))
        await consumer.commit()
    finally:
        await consumer.stop()
    return progress.whole_run()


# -- 2./3. the engine ------------------------------------------------------------------------------
async def engine(
    stack: Stack,
    topic: str,
    total: int,
    *,
    handler_seconds: float,
    window: Window | None = None,
    telemetry: bool = False,
    pre_aggregate: bool = True,
    tracer: Tracer | None = None,
    max_in_flight: int = 256,
) -> Measurement:
    """The engine with a handler that sleeps ``handler_seconds`` (0: returns DONE at once).

    Without a window: from the beginning until ``engine.processed`` reaches ``total``.
    ``telemetry``: OpenTelemetry SDK metrics wired as ``skuflow run`` wires them (else the API's
    no-op meter, as with ``Engine(..., metrics=None)``); ``pre_aggregate=False``: every
    measurement through the SDK, as before issue 14.
    """
    progress = Progress(total)

    async def handle(_event: StockAdjusted, _message: Message) -> Outcome:
        progress.begin()
        if handler_seconds:
            await anyio.sleep(handler_seconds)
        progress.add()
        return DONE

    metrics = worker_metrics(pre_aggregate=pre_aggregate) if telemetry else None
    async with (
        engine_for(
            stack,
            topic,
            handle,
            group=fresh_group("engine"),
            metrics=metrics,
            tracer=tracer,
            max_in_flight=max_in_flight,
        ) as eng,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(eng.run)
        if window is None:
            await progress.finished.wait()
            measured = progress.whole_run()
            with anyio.fail_after(10):
                while eng.processed < total:  # noqa: ASYNC110  # not timed: a sanity check
                    await anyio.sleep(0.01)
        else:
            measured = await progress.over(window)
        eng.request_stop()
    return measured


# -- 3. the plain alternative: one sequential task per partition -----------------------------------
async def sequential(stack: Stack, topic: str, total: int, window: Window) -> Measurement:
    """One consumer, one task per partition handling its records strictly one by one."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.bootstrap, enable_auto_commit=False, group_id=None
    )
    decode = msgspec.json.Decoder(StockAdjusted).decode
    progress = Progress(total)

    async def partition(tp: TopicPartition) -> None:
        while True:
            batch: dict[Any, Any] = await consumer.getmany(
                tp, timeout_ms=FETCH_TIMEOUT_MS, max_records=100
            )
            for record in batch.get(tp, ()):
                progress.begin()
                decode(record.value)
                await anyio.sleep(HANDLER_SECONDS)
                progress.add()

    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with anyio.create_task_group() as tg:
            for tp in partitions:
                tg.start_soon(partition, tp)
            measured = await progress.over(window)
            tg.cancel_scope.cancel()
    finally:
        await consumer.stop()
    return measured
