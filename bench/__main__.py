"""``python -m bench`` (``make bench``): engine throughput and memory against plain aiokafka,
and the urgent path's latency under a stock backlog: priority on (one process, and the two
classes as two deployments) against FIFO; orders into each ERP simulator and their
order-to-release latency under a stock backlog (``bench.orders``).

One run on the embedded stack; every contender reads the same topic, produced once at the start.
Prints Markdown tables for the README. ``--quick`` runs the same cases on less data.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import TypeVar

import anyio
import msgspec

from bench import cases, deadlines, orders, staging, stock, tracing, urgent
from bench.cases import HANDLER_SECONDS, Measurement, Window
from bench.data import PARTITIONS, create_topics, events, produce, traced
from bench.rss import Probe, RssReport, run_probe
from bench.stack import Stack, embedded_stack
from bench.stock import StockReport
from bench.urgent import UrgentRun
from config.settings import EngineSettings, Settings
from devstack.kafka import KAFKA_VERSION
from skuflow.app import tune_gc

_T = TypeVar("_T")

TOPIC = "bench.stock"
BACKLOG_TOPIC = "bench.backlog"
RSS_HANDLER_SECONDS = 0.05
#: The urgent case: its own stock backlog (CPU-bound consumption must not exhaust it within the
#: stream), an empty stock topic for the reference run, one dispatch topic per run.
URGENT_BACKLOG_TOPIC = "bench.urgent-backlog"
TRACED_TOPIC = "bench.traced"
EMPTY_STOCK_TOPIC = "bench.stock-empty"
#: Stock adjustments → the B1 simulator, end to end (issue 5): its own topic, produced in the case.
B1_TOPIC = "bench.stock-b1"
URGENT_MODES: tuple[urgent.Mode, ...] = ("idle", "priority", "split", "fifo")
#: Simulated ERP I/O of the stock handler in the urgent case.
URGENT_STOCK_SECONDS = 0.002
#: The reference run (no backlog) needs no more than this many seconds of stream.
URGENT_IDLE_SECONDS = 10.0


class Plan:
    def __init__(self, args: argparse.Namespace) -> None:
        quick: bool = args.quick
        self.messages: int = args.messages or (250_000 if quick else 600_000)
        self.keys: int = args.keys
        self.backlog: int = args.backlog or (200_000 if quick else 1_000_000)
        self.rounds = 1 if quick else 3
        #: Tracing rows compare runs a few µs per message apart on a noisy machine: more rounds.
        self.tracing_rounds = 1 if quick else 5
        self.window = Window(warmup=1.5, seconds=5.0) if quick else Window(warmup=3.0, seconds=10.0)
        self.rss_slow_seconds = 8.0 if quick else 20.0
        #: The engine rows run 256 runners (``engine_for``'s default), not ``engine.max_in_flight``
        #: (1024 since the group-commit staging): the 5 ms row's ideal is min(keys, runners) / 5 ms.
        self.max_in_flight = 256
        self.urgent_seconds: float = args.urgent_seconds or (10.0 if quick else 60.0)
        self.urgent_backlog: int = args.urgent_backlog or (800_000 if quick else 3_000_000)
        self.adjustments: int = args.adjustments or (50_000 if quick else 250_000)
        self.only: str | None = args.only
        self.deadline_dispatches: int = 60 if quick else 200
        self.deadline_backlog: int = 20_000 if quick else 50_000
        self.traced: int = args.traced or (100_000 if quick else 300_000)
        small = quick or args.only == "staging"
        self.staging_backlog: int = args.staging_backlog or (200_000 if small else 1_000_000)
        self.orders: int = args.orders or (1_000 if quick else 5_000)
        self.order_skus: int = args.order_skus
        self.orders_backlog: int = args.orders_backlog or (50_000 if quick else 200_000)
        self.orders_seconds: float = args.orders_seconds or (30.0 if quick else 60.0)

    def stream_seconds(self, mode: urgent.Mode) -> float:
        return (
            min(self.urgent_seconds, URGENT_IDLE_SECONDS) if mode == "idle" else self.urgent_seconds
        )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, help="records in the main topic (600k; quick 250k)")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct SKUs (10k)")
    parser.add_argument("--backlog", type=int, help="records of the RSS backlog (1M; quick 200k)")
    parser.add_argument(
        "--urgent-seconds", type=float, help="seconds of the 20/s dispatch stream (60; quick 10)"
    )
    parser.add_argument(
        "--urgent-backlog", type=int, help="stock backlog of the urgent case (3M; quick 800k)"
    )
    parser.add_argument(
        "--adjustments",
        type=int,
        help="stock adjustments posted to the B1 simulator (250k; quick 50k)",
    )
    parser.add_argument(
        "--traced", type=int, help="records of the tracing-overhead topic (300k; quick 100k)"
    )
    parser.add_argument(
        "--orders", type=int, help="order.received events into each ERP (5k; quick 1k)"
    )
    parser.add_argument(
        "--order-skus", type=int, default=300, help="distinct SKUs of the orders (300)"
    )
    parser.add_argument(
        "--orders-backlog",
        type=int,
        help="stock adjustments worked while orders stream at 20/s (200k; quick 50k)",
    )
    parser.add_argument(
        "--orders-seconds", type=float, help="seconds of the 20/s order stream (60; quick 30)"
    )
    parser.add_argument(
        "--only",
        choices=("stock", "tracing", "deadlines", "metrics", "staging", "orders"),
        help="run only this case (stock: adjustments → B1 simulator; tracing: overhead; "
        "deadlines: dispatch order at Amazon's quota behind a stock backlog; metrics: the "
        "no-op engine with and without OTel SDK metrics, alternating rounds; staging: the "
        "stock flow's validation + group-commit staging against the no-op engine, a backlog; "
        "orders: orders into each ERP simulator, and order-to-release latency under a stock "
        "backlog)",
    )
    parser.add_argument(
        "--staging-backlog",
        type=int,
        help="adjustments of the staging backlog run (1M; quick and --only staging 200k)",
    )
    parser.add_argument("--quick", action="store_true", help="less data, shorter windows")
    return parser.parse_args(argv)


def _note(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def _on_uvloop(factory: Callable[[], Awaitable[_T]]) -> _T:
    """A fresh uvloop event loop per contender, so every one runs on the same kind of loop."""
    return anyio.run(factory, backend="asyncio", backend_options={"use_uvloop": True})


def _prepare(stack: Stack, plan: Plan) -> float:
    async def run() -> None:
        dispatch = [_dispatch_topic(mode) for mode in URGENT_MODES]
        await create_topics(
            stack.bootstrap,
            TOPIC,
            BACKLOG_TOPIC,
            URGENT_BACKLOG_TOPIC,
            EMPTY_STOCK_TOPIC,
            *dispatch,
        )
        await produce(stack.bootstrap, TOPIC, events(plan.messages, plan.keys, seed=1))
        await produce(stack.bootstrap, BACKLOG_TOPIC, events(plan.backlog, plan.keys, seed=2))
        await _produce_traced(stack, plan)
        urgent_backlog = events(plan.urgent_backlog, plan.keys, seed=3)
        await produce(stack.bootstrap, URGENT_BACKLOG_TOPIC, urgent_backlog)

    started = time.perf_counter()
    _on_uvloop(run)
    return time.perf_counter() - started


async def _produce_traced(stack: Stack, plan: Plan) -> None:
    for n, share in enumerate(tracing.PRODUCER_SAMPLED):
        await create_topics(stack.bootstrap, tracing.topic(share))
        records = traced(events(plan.traced, plan.keys, seed=4), share, seed=5 + n)
        await produce(stack.bootstrap, tracing.topic(share), records)


def _tracing(stack: Stack, plan: Plan) -> list[list[Measurement]]:
    """Alternating rounds of the engine with tracing off, default sampling and 100 %."""
    runs: list[list[Measurement]] = [[] for _ in tracing.CASES]
    with tracing.otlp_sink() as endpoint:
        for round_ in range(1, plan.tracing_rounds + 1):
            for case, measured in zip(tracing.CASES, runs, strict=True):
                provider = (
                    None if case.sampler is None else tracing.provider(endpoint, case.sampler)
                )
                run = functools.partial(
                    cases.engine, stack, tracing.topic(case.sampled), plan.traced,
                    handler_seconds=0, telemetry=True,
                    tracer=None if provider is None else provider.get_tracer("skuflow"),
                )  # fmt: skip
                measured.append(_on_uvloop(run))
                if provider is not None:
                    provider.shutdown()  # exports what is queued before the next contender
                _note(f"tracing round {round_}, {case.name}: {measured[-1].rate:,.0f} msg/s")
    return runs


def _paired(references: list[Measurement], runs: list[Measurement]) -> tuple[float, str]:
    """The median of the per-round ratios (each run against the reference run next to it in
    the same round: the machine's drift between rounds cancels out) and the rounds' ratios."""
    ratios = [x.rate / r.rate for r, x in zip(references, runs, strict=True)]
    return sorted(ratios)[(len(ratios) - 1) // 2], "/".join(f"{r:.2f}" for r in ratios)


def _tracing_table(runs: list[list[Measurement]]) -> list[str]:
    off_runs = runs[0]
    off = _median(off_runs)
    rows = [
        "| tracing overhead: engine, no-op handler, OTel metrics on | messages | seconds | msg/s "
        "| vs tracing off |",
        "|---|---:|---:|---:|---|",
        _row("tracing off (no `OTEL_*` exporter: no tracing code runs)", off, "1.00 (reference)"),
    ]
    for case, measured in zip(tracing.CASES[1:], runs[1:], strict=True):
        m = _median(measured)
        ratio, rounds = _paired(off_runs, measured)
        if case.name.startswith("default"):
            verdict = f"{ratio:.2f} (rounds {rounds}; target ≥ 0.8: {_check(ratio, 0.8)})"
            label = f"{case.name} (parent-based), OTLP/HTTP export"
        else:
            verdict = f"{ratio:.2f} (rounds {rounds})"
            label = "100 % sampling (`always_on`), OTLP/HTTP export (queue bounded: may drop)"
        rows.append(_row(label, m, verdict))
    return rows


def _median(runs: list[Measurement]) -> Measurement:
    return sorted(runs, key=lambda m: m.rate)[(len(runs) - 1) // 2]


def _row(case: str, m: Measurement, verdict: str) -> str:
    return f"| {case} | {m.messages:,} | {m.seconds:.1f} | {m.rate:,.0f} | {verdict} |"


def _metrics_row(noops: list[Measurement], telemetry: list[Measurement]) -> str:
    """The engine with OTel SDK metrics against the engine without, in the same rounds."""
    ratio, rounds = _paired(noops, telemetry)
    return _row(
        "engine, no-op handler, OTel SDK metrics as in `skuflow run`",
        _median(telemetry),
        f"{ratio:.2f} x engine without (rounds {rounds}; target ≥ 0.85: {_check(ratio, 0.85)})",
    )


def _metrics_only(stack: Stack, plan: Plan) -> list[str]:
    """``--only metrics``: alternating rounds of the no-op engine without metrics, with them, and
    with every measurement through the SDK (as before issue 14); each round in another order."""
    _on_uvloop(functools.partial(create_topics, stack.bootstrap, TOPIC))
    records = events(plan.messages, plan.keys, seed=1)
    _on_uvloop(functools.partial(produce, stack.bootstrap, TOPIC, records))
    contenders = (("off", False, True), ("on", True, True), ("per measurement", True, False))
    runs: list[list[Measurement]] = [[] for _ in contenders]
    for round_ in range(1, plan.tracing_rounds + 1):
        order = list(zip(contenders, runs, strict=True))
        shift = (round_ - 1) % len(order)  # each round starts with the next contender
        for (name, telemetry, pre_aggregate), measured in order[shift:] + order[:shift]:
            run = functools.partial(
                cases.engine, stack, TOPIC, plan.messages, handler_seconds=0,
                telemetry=telemetry, pre_aggregate=pre_aggregate,
            )  # fmt: skip
            measured.append(_on_uvloop(run))
            _note(f"round {round_}, metrics {name}: {measured[-1].rate:,.0f} msg/s")
    noops, telemetry_runs, direct = runs
    ratio, rounds = _paired(noops, direct)
    return [
        "| case | messages | seconds | msg/s | ratio / target |",
        "|---|---:|---:|---:|---|",
        _row("engine, no-op handler", _median(noops), "1.00 (reference)"),
        _metrics_row(noops, telemetry_runs),
        _row(
            "same, every measurement through the SDK (before issue 14)",
            _median(direct),
            f"{ratio:.2f} x engine without (rounds {rounds})",
        ),
    ]


def _check(value: float, target: float, *, below: bool = False) -> str:
    met = value < target if below else value >= target
    return "met" if met else "**missed**"


class Results(msgspec.Struct, frozen=True):
    ceilings: list[Measurement]  # one per round, alternating with ``noops`` and ``telemetry``
    noops: list[Measurement]
    telemetry: list[Measurement]
    slow: Measurement
    plain: Measurement
    rss: RssReport
    urgent: list[UrgentRun]  # one per URGENT_MODES entry, in that order
    stock: list[StockReport]
    tracing: list[list[Measurement]]

    def table(self, plan: Plan) -> list[str]:
        ceiling, noop = _median(self.ceilings), _median(self.noops)
        ratio, rounds = _paired(self.ceilings, self.noops)
        ideal = min(plan.keys, plan.max_in_flight) / HANDLER_SECONDS
        fraction = self.slow.rate / ideal
        plain_ideal = PARTITIONS / HANDLER_SECONDS
        ms = f"{HANDLER_SECONDS * 1000:g} ms"
        rss = self.rss
        slow_ms = f"{RSS_HANDLER_SECONDS * 1000:g} ms"
        return [
            "| case | messages | seconds | msg/s | ratio / target |",
            "|---|---:|---:|---:|---|",
            _row("ceiling: raw aiokafka `getmany` + msgspec decode", ceiling, "1.00 (reference)"),
            _row(
                "engine, no-op handler",
                noop,
                f"{ratio:.2f} x ceiling (rounds {rounds}; target ≥ 0.6: {_check(ratio, 0.6)})",
            ),
            _metrics_row(self.noops, self.telemetry),
            _row(
                f"engine, {ms} handler, {plan.max_in_flight} in flight (window)",
                self.slow,
                f"{fraction:.2f} x ideal {ideal:,.0f}/s (target ≥ 0.5: {_check(fraction, 0.5)})",
            ),
            _row(
                f"plain aiokafka, one sequential task per partition, {ms} handler (window)",
                self.plain,
                f"{self.plain.rate / plain_ideal:.2f} x its ideal {plain_ideal:,.0f}/s; "
                f"engine {self.slow.rate / self.plain.rate:.1f}x faster",
            ),
            _row(
                f"peak RSS: fresh engine, {plan.backlog:,} backlog, {slow_ms} handler",
                Measurement(rss.backlog_processed, plan.rss_slow_seconds),
                f"{rss.backlog_peak_mb:.0f} MB (start-up {rss.startup_mb:.0f} MB, "
                f"{rss.backlog_buffered:,} buffered; "
                f"target < 300 MB: {_check(rss.backlog_peak_mb, 300, below=True)})",
            ),
            _row(
                "peak RSS: same engine, rest of the backlog, no-op handler",
                Measurement(rss.finish_messages, rss.finish_seconds),
                f"{rss.final_peak_mb:.0f} MB after all {plan.backlog:,} "
                f"(target < 300 MB: {_check(rss.final_peak_mb, 300, below=True)})",
            ),
        ]

    def urgent_table(self, plan: Plan) -> list[str]:
        idle, priority, split, fifo = self.urgent
        backlog = f"{plan.urgent_backlog:,} backlog"
        return [
            "| urgent path: `dispatch.confirmed` at 20/s, produce→handler | events "
            "| p50 ms | p95 ms | p99 ms | max ms | stock msg/s meanwhile | targets: p99 < 250 ms; "
            "FIFO p99 / this p99 ≥ 100x |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
            _latency_row(
                "reference: urgent + normal engine, empty stock topic",
                idle,
                "no stock",
                "the producer + broker + client floor",
            ),
            _latency_row(
                "priority on, one process (`skuflow run`): urgent engine (own group, EDF, "
                f"{Settings().dispatch.max_in_flight} runners) beside the normal engine "
                f"(`yield_to`), {backlog}",
                priority,
                _stock_cell(priority),
                _targets(priority, fifo),
            ),
            _latency_row(
                "priority on, split deployment (`skuflow run --class urgent` + `--class normal`):"
                " the urgent engine in a process of its own with a CPU of its own (as its "
                "deployment's CPU request gives it), the normal engine alone on the "
                f"other CPU(s), same {backlog}",
                split,
                _stock_cell(split),
                _targets(split, fifo),
            ),
            _latency_row(
                f"FIFO: one engine on both topics, FIFO lanes, no yield, same {backlog}",
                fifo,
                _stock_cell(fifo),
                "the baseline of both ratios",
            ),
        ]


def _targets(run: UrgentRun, fifo: UrgentRun) -> str:
    p99 = run.percentile_ms(0.99)
    ratio = fifo.percentile_ms(0.99) / p99
    return (
        f"p99 < 250 ms: {_check(p99, 250, below=True)}; "
        f"FIFO p99 / this p99 = {ratio:,.1f}x: {_check(ratio, 100)}"
    )


def _ms(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:,.1f}"


def _latency_row(case: str, run: UrgentRun, stock: str, verdict: str) -> str:
    events = f"{run.sent:,}"
    if run.handled < run.sent:
        events = f"{run.handled:,} of {run.sent:,}"
    cells = " | ".join(_ms(run.percentile_ms(q)) for q in (0.5, 0.95, 0.99, 1.0))
    return f"| {case} | {events} | {cells} | {stock} | {verdict} |"


def _stock_cell(run: UrgentRun) -> str:
    rate = f"{run.stock.rate:,.0f}"
    if run.backlog_left < EngineSettings().max_buffered_messages:
        return f"{rate} (**backlog ran out**)"
    return f"{rate} ({run.backlog_left:,} left)"


def _dispatch_topic(mode: urgent.Mode) -> str:
    return f"bench.dispatch-{mode}"


def _urgent(stack: Stack, plan: Plan) -> list[UrgentRun]:
    runs: list[UrgentRun] = []
    for mode in URGENT_MODES:
        seconds = plan.stream_seconds(mode)
        _note(f"urgent path, {mode}: dispatch events at 20/s for {seconds:g} s")
        run = _on_uvloop(
            functools.partial(
                urgent.urgent_run,
                stack,
                mode,
                stock_topic=EMPTY_STOCK_TOPIC if mode == "idle" else URGENT_BACKLOG_TOPIC,
                dispatch_topic=_dispatch_topic(mode),
                backlog=0 if mode == "idle" else plan.urgent_backlog,
                stream_seconds=seconds,
                stock_seconds=URGENT_STOCK_SECONDS,
            )
        )
        _note(
            f"p50 {_ms(run.percentile_ms(0.5))} ms, p99 {_ms(run.percentile_ms(0.99))} ms; "
            f"stock {run.stock.rate:,.0f} msg/s"
        )
        runs.append(run)
    return runs


def _measure(stack: Stack, plan: Plan) -> Results:
    n = plan.messages
    ceilings: list[Measurement] = []
    noops: list[Measurement] = []
    telemetry: list[Measurement] = []
    for round_ in range(1, plan.rounds + 1):
        _note(f"round {round_}/{plan.rounds}: ceiling")
        ceilings.append(_on_uvloop(functools.partial(cases.ceiling, stack, TOPIC, n)))
        _note(f"{ceilings[-1].rate:,.0f} msg/s; engine, no-op handler")
        noops.append(
            _on_uvloop(functools.partial(cases.engine, stack, TOPIC, n, handler_seconds=0))
        )
        _note(f"{noops[-1].rate:,.0f} msg/s; engine, no-op handler, OTel SDK metrics")
        telemetry.append(
            _on_uvloop(
                functools.partial(cases.engine, stack, TOPIC, n, handler_seconds=0, telemetry=True)
            )
        )
        _note(f"{telemetry[-1].rate:,.0f} msg/s")
    _note("engine, 5 ms handler")
    slow = _on_uvloop(
        functools.partial(
            cases.engine, stack, TOPIC, n, handler_seconds=HANDLER_SECONDS, window=plan.window
        )
    )
    _note(f"{slow.rate:,.0f} msg/s; sequential per-partition consumer, 5 ms handler")
    plain = _on_uvloop(functools.partial(cases.sequential, stack, TOPIC, n, plan.window))
    _note(f"{plain.rate:,.0f} msg/s; peak RSS of a fresh engine (subprocess)")
    spec = Probe(stack, BACKLOG_TOPIC, plan.backlog, RSS_HANDLER_SECONDS, plan.rss_slow_seconds)
    rss = run_probe(spec, timeout=900)
    _note(f"peak {rss.final_peak_mb:.0f} MB")
    traced_runs = _tracing(stack, plan)
    urgent_runs = _urgent(stack, plan)
    return Results(
        ceilings, noops, telemetry, slow, plain, rss, urgent_runs, _stock(stack, plan), traced_runs
    )


#: The share of postings the simulator refuses as locked in the lock-storm run.
LOCK_STORM = 0.25


def _stock(stack: Stack, plan: Plan) -> list[StockReport]:
    """The stock → B1 run, then a smaller one through a lock storm."""
    reports = []
    runs = (
        (B1_TOPIC, plan.adjustments, 0.0),
        (f"{B1_TOPIC}.storm", plan.adjustments // 5, LOCK_STORM),
    )
    for topic, count, storm in runs:
        _note(
            f"stock adjustments → B1 simulator: {count:,} over {plan.keys:,} SKUs, "
            f"{storm:.0%} of postings refused as locked"
        )
        report = _on_uvloop(
            functools.partial(stock.stock_run, stack, topic, count, plan.keys, lock_storm=storm)
        )
        _note(
            f"{report.rate:,.0f} adjustments/s, {report.erp_writes:,} ERP writes, "
            f"{report.lost} lost, peak {report.peak_mb:.0f} MB"
        )
        reports.append(report)
    # SAP ECC, side by side: the same traffic as IDocs to a simulator applying them out of order.
    # (The ECC simulator answers RFC_READ_TABLE by scanning its tables, as no real ECC does:
    # with 10,000 materials every master-data read costs it ~50 ms. The ECC run has fewer SKUs.)
    ecc_skus = max(100, plan.keys // 20)
    for topic, count, _storm in runs[:1]:
        _note(f"stock adjustments → ECC simulator: {count:,} over {ecc_skus:,} SKUs")
        report = _on_uvloop(
            functools.partial(stock.stock_run, stack, f"{topic}.ecc", count, ecc_skus, erp="ecc")
        )
        _note(
            f"{report.rate:,.0f} adjustments/s, {report.erp_writes:,} ERP writes, "
            f"{report.lost} lost, peak {report.peak_mb:.0f} MB"
        )
        reports.append(report)
    return reports


def _stock_table(reports: list[StockReport]) -> list[str]:
    rows = [
        "| stock adjustments → SAP B1 / SAP ECC (simulators), end to end | adjustments | seconds "
        "| adjustments/s | ERP write calls | adjustments per write call (target ≥ 100x) "
        "| lost (item, warehouse) | worker peak RSS |",
        "|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for report in reports:
        ratio = report.ratio
        writes = f"{report.erp_writes:,}"
        if report.failed_writes:
            writes += f" ({report.documents:,} documents + {report.failed_writes:,} refused)"
        lost = f"{report.lost:,} of {report.places:,} (target 0: {_check(-report.lost, 0)})"
        storm = (
            f", lock storm: {report.lock_storm:.0%} of postings refused (-2039)"
            if report.lock_storm
            else ""
        )
        if report.erp == "ecc":
            writes = f"{report.erp_writes:,} IDocs ({report.documents:,} posted)"
            storm = "; **SAP ECC**: one IDoc per document, applied out of sequence"
        rows.append(
            f"| real worker (normal class), {report.skus:,} SKUs x {report.warehouses} "
            f"warehouses, windows {stock.WINDOW_SECONDS:g} s / {stock.WINDOW_MAX_LINES} lines"
            f"{storm} | {report.adjustments:,} | {report.seconds:.1f} | {report.rate:,.0f} "
            f"| {writes} | {ratio:,.0f}x: {_check(ratio, 100)} | {lost} | {report.peak_mb:.0f} MB |"
        )
    return rows


def _stock_note(report: StockReport) -> str:
    exceptions = f", {report.exceptions:,} became exceptions" if report.exceptions else ""
    return (
        f"{report.adjustments:,} `stock.adjusted` events (quantities {stock.QUANTITIES}, never "
        f"below zero from {stock.OPENING:,} opening stock per item and warehouse) over "
        f"{report.skus:,} SKUs and {report.warehouses} locations mapped to B1 warehouses, "
        f"produced first ({report.produce_seconds:.0f} s, not in the time); seconds: worker "
        "process spawned → every staged line posted/settled/rejected in PostgreSQL "
        f"({report.lines_done:,} lines{exceptions}). ERP write calls: POSTs to "
        "InventoryGenEntries/InventoryGenExits at the simulator (documents created + refused). "
        "Lost: places whose simulator stock differs from opening + every adjustment. Peak RSS: "
        "VmHWM of the worker process (`Worker(settings, classes={normal})`, as `skuflow run "
        "--class normal`); the simulator runs in the benchmark process."
    )


def main(argv: list[str] | None = None) -> int:
    plan = Plan(_parse(argv))
    tune_gc()  # as `skuflow run` does; every contender runs in this process with it
    started = time.perf_counter()
    _note("starting Apache Kafka and PostgreSQL")
    with embedded_stack() as stack:
        if plan.only == "tracing":
            _on_uvloop(functools.partial(_produce_traced, stack, plan))
            print()
            print("\n".join(_tracing_table(_tracing(stack, plan))))
            print(f"Run time {time.perf_counter() - started:.0f} s.")
            return 0
        if plan.only == "deadlines":
            print()
            _print_deadlines(_deadlines(stack, plan))
            print(f"Run time {time.perf_counter() - started:.0f} s.")
            return 0
        if plan.only == "metrics":
            print()
            print("\n".join(_metrics_only(stack, plan)))
            print(f"Run time {time.perf_counter() - started:.0f} s.")
            return 0
        if plan.only == "staging":
            _on_uvloop(functools.partial(create_topics, stack.bootstrap, TOPIC))
            _on_uvloop(functools.partial(produce, stack.bootstrap, TOPIC,
                                         events(plan.messages, plan.keys, seed=1)))  # fmt: skip
            print()
            print("\n".join(_staging(stack, plan)))
            print(f"Run time {time.perf_counter() - started:.0f} s.")
            return 0
        if plan.only == "orders":
            order_results = _orders(stack, plan)
            print()
            _print_orders(order_results)
            print(f"Run time {time.perf_counter() - started:.0f} s.")
            return 0
        if plan.only == "stock":
            reports = _stock(stack, plan)
            print()
            print("\n".join(_stock_table(reports)))
            print()
            print(_stock_note(reports[0]))
            print(f"Run time {time.perf_counter() - started:.0f} s.")
            return 0
        _note(
            f"producing {plan.messages:,} + {plan.backlog:,} + {plan.urgent_backlog:,} records, "
            f"{plan.keys:,} keys"
        )
        produced_in = _prepare(stack, plan)
        _note(f"produced in {produced_in:.1f} s")
        results = _measure(stack, plan)
        deadline_reports = _deadlines(stack, plan)
        staging_table = _staging(stack, plan)
        order_results = _orders(stack, plan)
    elapsed = time.perf_counter() - started
    window = plan.window
    print()
    print("\n".join(results.table(plan)))
    print()
    print(
        f"{plan.messages:,} `stock.adjusted` JSON events (~300 B) over {plan.keys:,} SKUs, "
        f"{PARTITIONS} partitions, produced once and read by every contender; all on uvloop. "
        "Whole-topic rows: first record delivered to last completed"
        + (
            f", median of {plan.rounds} alternating rounds (ratio: the median of the rounds' "
            "ratios, each against the reference run of its own round)"
            if plan.rounds > 1
            else ""
        )
        + f". *(window)* rows: completions in up to {window.seconds:g} s after a "
        f"{window.warmup:g} s warm-up. Engine: `EngineOptions` defaults "
        f"but max_in_flight={plan.max_in_flight}. Peak RSS: VmHWM of a separate process."
    )
    print()
    print("\n".join(_tracing_table(results.tracing)))
    print()
    print(
        f"Tracing rows: {plan.traced:,} records with a producer `traceparent` each "
        "(1 % or 10 % of them sampled by the producer), alternating rounds (ratio: the median of "
        "the rounds' ratios against the tracing-off run of the same round); spans exported by a "
        "`BatchSpanProcessor` + OTLP/HTTP exporter to a sink process, as `skuflow run` exports."
    )
    print()
    print("\n".join(results.urgent_table(plan)))
    print()
    print(
        "Latency: `time.time()` in the dispatch handler minus the event's `occurred_at`, stamped "
        "by a separate producer process just before `send` (acks=all, linger 0, keyed by order "
        f"id, {PARTITIONS} partitions); the handler returns `DONE` at once, so neither the SP-API "
        "simulator's latency nor its rate limit is in these numbers. Percentiles: exact nearest "
        "rank over every event sent (never handled = infinitely late). Engines wired as "
        "`skuflow run` wires them (`urgent_options` / `engine_options`, one OTel SDK meter); "
        f"stock handler awaits {URGENT_STOCK_SECONDS * 1000:g} ms of simulated ERP I/O; the "
        "priority, split and FIFO runs read the same backlog from its start with fresh groups; "
        f"the stream starts {urgent.WARMUP_SECONDS:g} s after the backlog is being worked. "
        "Split deployment: the urgent engine runs in a child process (`python -m bench.split`, "
        "wired as `skuflow run --class urgent`, reporting its latencies as JSON), the normal "
        "engine in the benchmark process without `yield_to` (as `--class normal`); the same "
        "host's cores are shared by both, the producer and the broker. Stock msg/s: "
        "completions between the first and the last dispatch handled."
    )
    print(
        f"Machine: nproc={os.cpu_count()}, {_cpu_model()}, Python {platform.python_version()}, "
        f"aiokafka {version('aiokafka')}, uvloop {version('uvloop')}, "
        f"msgspec {version('msgspec')}, Apache Kafka {KAFKA_VERSION} on the same host. "
        f"Run time {elapsed:.0f} s (producing {produced_in:.0f} s)."
    )
    print()
    _print_deadlines(deadline_reports)
    print()
    print("\n".join(staging_table))
    print()
    print("\n".join(_stock_table(results.stock)))
    print()
    print(_stock_note(results.stock[0]))
    print()
    _print_orders(order_results)
    return 0


def _staging(stack: Stack, plan: Plan) -> list[str]:
    """Issue 14: the stock flow (validate + group-commit staging) against the no-op engine
    with metrics, alternating rounds on the main topic; then a backlog in a fresh process."""
    noops, runs = staging.rounds(stack, TOPIC, plan.messages, plan.rounds, _on_uvloop)
    topic = f"{TOPIC}.staging-backlog"
    _note(f"staging backlog: producing {plan.staging_backlog:,}")

    async def prepare() -> None:
        await create_topics(stack.bootstrap, topic)
        await produce(stack.bootstrap, topic, events(plan.staging_backlog, plan.keys, seed=7))

    _on_uvloop(prepare)
    spec = staging.BacklogSpec(stack, topic, plan.staging_backlog)
    report = staging.backlog(spec)
    _note(f"backlog staged in {report.measurement.seconds:.1f} s, peak {report.peak_mb:.0f} MB")
    return staging.table(noops, runs, report)


#: The orders case: one topic per contender and per latency run.
ORDERS_TOPIC = "bench.orders"
#: Orders per second of the latency runs.
ORDER_RATE = 20.0


class OrderResults(msgspec.Struct, frozen=True):
    into_erps: list[orders.OrdersReport]  # one per orders.CONTENDERS entry
    reference: orders.LatencyRun  # no stock backlog
    loaded: orders.LatencyRun  # plan.orders_backlog stock adjustments being worked


def _orders(stack: Stack, plan: Plan) -> OrderResults:
    """Issue 16: orders into each ERP simulator side by side, then order-to-release latency
    without and with a stock backlog."""
    reports = []
    for contender in orders.CONTENDERS:
        _note(f"orders → ERP, {contender}: {plan.orders:,} orders over {plan.order_skus} SKUs")
        topic = f"{ORDERS_TOPIC}-{contender}"
        run = functools.partial(
            orders.orders_run, stack, topic, contender, plan.orders, plan.order_skus
        )
        reports.append(_on_uvloop(run))
        r = reports[-1]
        _note(f"{r.rate:,.0f} orders/s, {r.create_calls:,} creating calls, {r.lost} lost")
    latency = []
    for backlog in (0, plan.orders_backlog):
        _note(
            f"order-to-release latency: {ORDER_RATE:g}/s for {plan.orders_seconds:g} s, "
            f"{backlog:,} stock adjustments being worked"
        )
        latency_run = functools.partial(
            orders.latency_run, stack, f"{ORDERS_TOPIC}-latency-{backlog}",
            backlog=backlog, keys=plan.keys, skus=plan.order_skus, rate=ORDER_RATE,
            seconds=plan.orders_seconds,
        )  # fmt: skip
        latency.append(_on_uvloop(latency_run))
        stream = latency[-1].run
        _note(f"p50 {_ms(stream.percentile_ms(0.5))} ms, p99 {_ms(stream.percentile_ms(0.99))} ms")
    return OrderResults(reports, *latency)


def _print_orders(results: OrderResults) -> None:
    print("\n".join(orders.orders_table(results.into_erps)))
    print()
    print(orders.orders_note(results.into_erps))
    print()
    print("\n".join(orders.latency_table(results.reference, results.loaded)))
    print()
    print(orders.latency_note(results.loaded, ORDER_RATE))


def _deadlines(stack: Stack, plan: Plan) -> list[deadlines.DeadlineReport]:
    reports = []
    for mode in deadlines.MODES:
        _note(
            f"deadline order at 2/s: {plan.deadline_dispatches} dispatches behind "
            f"{plan.deadline_backlog:,} stock adjustments, {mode}"
        )
        report = _on_uvloop(
            functools.partial(
                deadlines.deadline_run,
                stack,
                mode,
                dispatches=plan.deadline_dispatches,
                stock_backlog=plan.deadline_backlog,
            )
        )
        _note(f"{report.inversions:,} inverted pairs, at-risk positions {report.at_risk_positions}")
        reports.append(report)
    return reports


def _print_deadlines(reports: list[deadlines.DeadlineReport]) -> None:
    print("\n".join(deadlines.table(reports)))
    print()
    first = reports[0]
    print(
        f"{first.dispatches} `dispatch.confirmed` ({deadlines.AT_RISK} due in under 2 h, the rest "
        f"in 3-24 h, in random order) and {first.stock_backlog:,} `stock.adjusted` are waiting "
        "when the worker starts (`Worker`, both classes, 32 urgent runners; the stock handler "
        f"awaits {deadlines.STOCK_SECONDS * 1000:g} ms); the SP-API simulator's confirmShipment "
        "plan is Amazon's (2/s, burst 10). Order: the simulator's accepted confirmations. Each "
        "run has its own topics, groups and simulator."
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
