"""The urgent path under a stock backlog: produce→handler latency of dispatch confirmations.

Four runs, one after the other, each with fresh consumer groups and a dispatch topic of its
own; the three compared ones read the same stock backlog from its beginning:

- **idle** (reference): the priority wiring below on an empty stock topic: the floor set by the
  producer, the broker and the consumer client.
- **priority**: two engines in one process, wired as :class:`skuflow.app.Worker` wires them
  (``urgent_options`` / ``engine_options``): the urgent engine on the dispatch topic (its own
  group, its own 32 runners, earliest deadline first) and the normal engine on the stock
  backlog with ``yield_to=urgent.pressure``.
- **split**: the two classes as two deployments (``skuflow run --class normal`` and
  ``--class urgent``): the normal engine alone in this process on the stock backlog (nothing to
  yield to, as ``Worker`` wires it without an urgent class), the urgent engine in a process of
  its own (:mod:`bench.split`), which reports its latencies as JSON when the stream is over.
- **fifo**: the same engine class without priority: ONE engine consuming both topics with a
  FIFO ready queue and no yield, so dispatch events queue behind the backlog in the same lanes
  and runners.

Each run's engines share one OpenTelemetry SDK meter, as in ``skuflow run``. The stock handler
awaits ``stock_seconds`` of simulated ERP I/O. Once the engines have joined and the backlog has been
worked for a warm-up, a separate process (``python -m bench.urgent '<Stream as JSON>'``, so the
producer is not slowed by the worker's event loop) sends ``dispatch.confirmed`` events at a
fixed rate, each stamped (``occurred_at``, µs) just before it is handed to the producer. The
dispatch handler records ``time.time() - occurred_at`` and returns ``DONE`` at once: the
latency from produce to handler, which by construction contains no SP-API simulator latency
and no rate limit.
"""

from __future__ import annotations

import bisect
import math
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import anyio
import msgspec
from aiokafka import AIOKafkaProducer

from bench.cases import Measurement
from bench.split import Report, Spec, UrgentProcess
from bench.stack import (
    Stack,
    fresh_group,
    outcome_sinks,
    started_consumer,
    worker_metrics,
    worker_settings,
)
from config.settings import EngineSettings
from handlers.common.router import DomainRouter
from handlers.dispatch.events import DispatchConfirmed, DispatchLine
from handlers.flows import default_families
from handlers.stock.events import StockAdjusted
from skuflow.app import engine_options, tune_gc, urgent_options
from worker.engine import Engine
from worker.messages import Message
from worker.outcomes import DONE, Outcome
from worker.slicing import LoopSlice

Mode = Literal["idle", "priority", "split", "fifo"]

_REPO = Path(__file__).resolve().parents[1]
#: Dispatch confirmations per second (the issue's example: 20/s for 60 s).
RATE = 20.0
#: Seconds the backlog is worked before the dispatch stream starts (buffers full, steady state).
WARMUP_SECONDS = 3.0
#: How long the last dispatch events may take to arrive after the stream ended.
SETTLE_SECONDS = 30.0
#: How often the split run samples the stock progress of its normal engine.
SAMPLE_SECONDS = 0.05
_CARRIERS = (("Royal Mail", "Tracked 24"), ("DPD", "Next Day"), ("Evri", "Standard"))
_MARKETPLACES = ("A1F83G8C2ARO7P", "A1PA6795UKMFR9", "A13V1IB3VIYZZH")


class Stream(msgspec.Struct, frozen=True):
    """What the producer process sends (passed to it as JSON)."""

    bootstrap: str
    topic: str
    rate: float
    count: int
    seed: int


class UrgentRun(msgspec.Struct, frozen=True):
    mode: str
    sent: int
    latencies: list[float]  # seconds, produce→handler, in handling order
    stock: Measurement  # stock events completed from the first to the last dispatch handled
    backlog_left: int  # stock events not yet completed when the last dispatch was handled

    @property
    def handled(self) -> int:
        return len(self.latencies)

    def percentile_ms(self, q: float) -> float:
        """Exact nearest-rank percentile (``q`` in (0, 1]) over every event sent, in ms; an event
        never handled counts as infinitely late."""
        ordered = sorted(self.latencies) + [math.inf] * (self.sent - self.handled)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    @property
    def max_ms(self) -> float:
        return self.percentile_ms(1.0)


class Marks:
    """Dispatch latencies, and stock progress (``time.time()``, stock events completed) at the
    first and last dispatch handled."""

    def __init__(self, expected: int, stock_count: Callable[[], int]) -> None:
        self.expected = expected
        self.latencies: list[float] = []
        self.all_handled = anyio.Event()
        self._stock_count = stock_count
        self.first: tuple[float, int] = (0.0, 0)
        self.last: tuple[float, int] = (0.0, 0)
        self.samples: list[tuple[float, int]] = []  # split run: the stock progress over time

    def handled(self, produced_at: float) -> None:
        now = time.time()
        self.latencies.append(now - produced_at)
        self.last = (now, self._stock_count())
        if len(self.latencies) == 1:
            self.first = self.last
        if len(self.latencies) >= self.expected:
            self.all_handled.set()

    async def sample(self) -> None:
        """Record the stock progress every :data:`SAMPLE_SECONDS` (until cancelled)."""
        while True:
            self.samples.append((time.time(), self._stock_count()))
            await anyio.sleep(SAMPLE_SECONDS)

    def adopt(self, report: Report) -> None:
        """Take the latencies of the urgent process, and the stock progress sampled here when
        it handled its first and last event (the last sample at or before each)."""
        self.latencies = report.latencies
        if not report.latencies:
            return
        self.samples.append((time.time(), self._stock_count()))
        times = [at for at, _ in self.samples]

        def stock_at(at: float) -> tuple[float, int]:
            return at, self.samples[max(0, bisect.bisect_right(times, at) - 1)][1]

        self.first, self.last = stock_at(report.first_at), stock_at(report.last_at)

    def stock(self) -> Measurement:
        (t0, n0), (t1, n1) = self.first, self.last
        return Measurement(n1 - n0, max(t1 - t0, 1e-9))


async def urgent_run(
    stack: Stack,
    mode: Mode,
    *,
    stock_topic: str,
    dispatch_topic: str,
    backlog: int,
    stream_seconds: float,
    stock_seconds: float,
) -> UrgentRun:
    """Work the stock backlog, send the dispatch stream, return its latencies (see module).

    ``backlog``: records in ``stock_topic`` (0 for an empty topic: no warm-up wait).
    """
    stock_done = 0
    stock_started = anyio.Event()
    marks = Marks(round(RATE * stream_seconds), lambda: stock_done)

    async def stock(_event: StockAdjusted, _message: Message) -> Outcome:
        nonlocal stock_done
        if not stock_started.is_set():
            stock_started.set()
        await anyio.sleep(stock_seconds)
        stock_done += 1
        return DONE

    async def dispatch(event: DispatchConfirmed, _message: Message) -> Outcome:
        marks.handled(event.occurred_at.timestamp())
        return DONE  # no SP-API call: no simulator latency, no rate limit

    settings = worker_settings(
        stack,
        fresh_group(f"urgent-{mode}"),
        stock_topic=stock_topic,
        dispatch_topic=dispatch_topic,
    )
    router = DomainRouter(
        default_families({"stock.adjusted": stock, "dispatch.confirmed": dispatch})
    )
    metrics = worker_metrics()
    normal = engine_options(settings)
    stock_working = stock_started if backlog else None
    async with outcome_sinks(stack, settings.topics.dead_letter) as sinks:
        if mode == "split":
            # The normal deployment here; the urgent one, in its own process, joins first.
            spec = Spec(stack, settings.kafka.group, stock_topic, dispatch_topic, marks.expected)
            async with (
                UrgentProcess(spec) as urgent_process,
                started_consumer(stack, normal.group) as consumer,
            ):
                with anyio.fail_after(60):
                    await urgent_process.ready()
                engines = [Engine(consumer, router, sinks, normal, metrics=metrics)]
                await _measure(stack, engines, stock_working, marks, dispatch_topic, urgent_process)
        elif mode != "fifo":
            urgent = urgent_options(settings)
            async with (
                started_consumer(stack, urgent.group) as urgent_consumer,
                started_consumer(stack, normal.group) as consumer,
            ):
                # As Worker.run: the normal class pauses its partitions under urgent pressure.
                first = Engine(urgent_consumer, router, sinks, urgent, metrics=metrics)
                then = Engine(
                    consumer,
                    router,
                    sinks,
                    normal,
                    metrics=metrics,
                    yield_to=first.pressure,
                    loop_slice=_loop_slice(),
                )
                await _measure(stack, [first, then], stock_working, marks, dispatch_topic)
        else:
            both = msgspec.structs.replace(normal, topics=(stock_topic, dispatch_topic))
            async with started_consumer(stack, both.group) as consumer:
                engines = [Engine(consumer, router, sinks, both, metrics=metrics)]
                await _measure(stack, engines, stock_working, marks, dispatch_topic)
    return UrgentRun(
        mode=mode,
        sent=marks.expected,
        latencies=marks.latencies,
        stock=marks.stock(),
        backlog_left=backlog - marks.last[1],
    )


async def _measure(
    stack: Stack,
    engines: list[Engine],
    stock_started: anyio.Event | None,
    marks: Marks,
    dispatch_topic: str,
    urgent_process: UrgentProcess | None = None,
) -> None:
    """Run ``engines``, send the stream, wait for it to be handled (here, or by
    ``urgent_process``: then its report is adopted into ``marks``)."""
    async with anyio.create_task_group() as tg:
        for engine in engines:
            tg.start_soon(engine.run)
        sampling = anyio.CancelScope()
        if urgent_process is not None:

            async def sample() -> None:
                with sampling:
                    await marks.sample()

            tg.start_soon(sample)
        with anyio.fail_after(60):
            while not all(e.joined for e in engines):  # noqa: ASYNC110  # join, not timed
                await anyio.sleep(0.05)
            if stock_started is not None:
                await stock_started.wait()
        await anyio.sleep(WARMUP_SECONDS)
        spec = Stream(stack.bootstrap, dispatch_topic, RATE, marks.expected, seed=7)
        done = await anyio.run_process(
            [sys.executable, "-m", "bench.urgent", msgspec.json.encode(spec).decode()],
            cwd=_REPO,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dispatch producer failed:\n{done.stderr.decode()[-4000:]}")
        sent = int(done.stdout.decode().split()[-1])
        if sent != marks.expected:
            raise RuntimeError(f"the producer sent {sent} of {marks.expected} events")
        if urgent_process is not None:
            marks.adopt(await urgent_process.report(SETTLE_SECONDS))
        else:
            with anyio.move_on_after(SETTLE_SECONDS):
                await marks.all_handled.wait()
        sampling.cancel()
        for engine in engines:
            engine.request_stop()


# -- the producer process --------------------------------------------------------------------------
def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def dispatch_event(rng: random.Random, n: int, now: datetime) -> DispatchConfirmed:
    """A realistic confirmation; ``ship_by`` 3 to 8 h ahead (above the 2 h at-risk threshold, so
    no alert is written and ``DONE`` stays free of database writes, as for most events)."""
    order_id = f"{rng.choice(('202', '203', '204', '205'))}-{_digits(rng, 7)}-{_digits(rng, 7)}"
    carrier, method = rng.choice(_CARRIERS)
    ship_by = (now + timedelta(hours=rng.randint(3, 8))).replace(minute=0, second=0, microsecond=0)
    lines = [
        DispatchLine(
            order_item_id=_digits(rng, 14),
            sku=f"SKU-{rng.randrange(10_000):06d}",
            quantity=Decimal(rng.choice((1, 1, 1, 2))),
        )
        for _ in range(rng.choices((1, 2, 3), (70, 22, 8))[0])
    ]
    return DispatchConfirmed(
        event_id=f"bench-dsp-{n:07d}",
        occurred_at=now,
        source="seko",
        source_ref=f"SEKO-DSP-{700 + n}",
        channel="amazon",
        order_id=order_id,
        marketplace_id=rng.choice(_MARKETPLACES),
        ship_by=ship_by,
        ship_date=now,
        carrier_code=carrier,
        shipping_method=method,
        tracking_number=_digits(rng, 14),
        package_reference_id="1",
        warehouse="LOC-01",
        lines=lines,
    )


async def stream(spec: Stream) -> int:
    """Send ``spec.count`` events at ``spec.rate`` on a fixed schedule, keyed by order id."""
    rng = random.Random(spec.seed)
    encoder = msgspec.json.Encoder()
    producer = AIOKafkaProducer(bootstrap_servers=spec.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        await producer.partitions_for(spec.topic)  # metadata before the clock starts
        sent: list[Any] = []  # asyncio futures of RecordMetadata
        start = time.monotonic()
        for n in range(spec.count):
            await anyio.sleep(max(0.0, start + n / spec.rate - time.monotonic()))
            event = dispatch_event(rng, n, datetime.now(UTC))
            value = encoder.encode(event)
            sent.append(await producer.send(spec.topic, value, key=event.order_id.encode()))
        for future in sent:
            await future
    finally:
        await producer.stop()
    return len(sent)


def main() -> None:
    spec = msgspec.json.decode(sys.argv[1], type=Stream)
    tune_gc()
    count = anyio.run(stream, spec, backend="asyncio", backend_options={"use_uvloop": True})
    print(count)


if __name__ == "__main__":
    main()


def _loop_slice() -> LoopSlice | None:
    """The normal class's loop slice, as ``Worker`` gives it beside an urgent class
    (``engine.loop_slice_seconds``; the environment variable is for trying other slices, in
    ms, 0 turning slicing off)."""
    default = EngineSettings().loop_slice_seconds * 1000
    seconds = float(os.environ.get("SKUFLOW_BENCH_LOOP_SLICE_MS", default)) / 1000
    return LoopSlice(seconds) if seconds > 0 else None
