"""``python -m bench`` (``make bench``): engine throughput and memory against plain aiokafka.

One run on the embedded stack; every contender reads the same topic, produced once at the start.
Prints a Markdown table for the README. ``--quick`` runs the same cases on less data.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import TypeVar

import anyio
import msgspec

from bench import cases
from bench.cases import HANDLER_SECONDS, Measurement, Window
from bench.data import PARTITIONS, create_topics, events, produce
from bench.rss import Probe, RssReport, run_probe
from bench.stack import Stack, embedded_stack
from config.settings import EngineSettings
from devstack.kafka import KAFKA_VERSION
from skuflow.app import tune_gc

_T = TypeVar("_T")

TOPIC = "bench.stock"
BACKLOG_TOPIC = "bench.backlog"
RSS_HANDLER_SECONDS = 0.05


class Plan:
    def __init__(self, args: argparse.Namespace) -> None:
        quick: bool = args.quick
        self.messages: int = args.messages or (250_000 if quick else 600_000)
        self.keys: int = args.keys
        self.backlog: int = args.backlog or (200_000 if quick else 1_000_000)
        self.rounds = 1 if quick else 3
        self.window = Window(warmup=1.5, seconds=5.0) if quick else Window(warmup=3.0, seconds=10.0)
        self.rss_slow_seconds = 8.0 if quick else 20.0
        self.max_in_flight = EngineSettings().max_in_flight


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, help="records in the main topic (600k; quick 250k)")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct SKUs (10k)")
    parser.add_argument("--backlog", type=int, help="records of the RSS backlog (1M; quick 200k)")
    parser.add_argument("--quick", action="store_true", help="less data, shorter windows")
    return parser.parse_args(argv)


def _note(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def _on_uvloop(factory: Callable[[], Awaitable[_T]]) -> _T:
    """A fresh uvloop event loop per contender, so every one runs on the same kind of loop."""
    return anyio.run(factory, backend="asyncio", backend_options={"use_uvloop": True})


def _prepare(stack: Stack, plan: Plan) -> float:
    async def run() -> None:
        await create_topics(stack.bootstrap, TOPIC, BACKLOG_TOPIC)
        await produce(stack.bootstrap, TOPIC, events(plan.messages, plan.keys, seed=1))
        await produce(stack.bootstrap, BACKLOG_TOPIC, events(plan.backlog, plan.keys, seed=2))

    started = time.perf_counter()
    _on_uvloop(run)
    return time.perf_counter() - started


def _median(runs: list[Measurement]) -> Measurement:
    return sorted(runs, key=lambda m: m.rate)[(len(runs) - 1) // 2]


def _row(case: str, m: Measurement, verdict: str) -> str:
    return f"| {case} | {m.messages:,} | {m.seconds:.1f} | {m.rate:,.0f} | {verdict} |"


def _check(value: float, target: float, *, below: bool = False) -> str:
    met = value < target if below else value >= target
    return "met" if met else "**missed**"


class Results(msgspec.Struct, frozen=True):
    ceilings: list[Measurement]  # one per round, alternating with ``noops``
    noops: list[Measurement]
    telemetry: Measurement
    slow: Measurement
    plain: Measurement
    rss: RssReport

    def table(self, plan: Plan) -> list[str]:
        ceiling, noop = _median(self.ceilings), _median(self.noops)
        ratio = noop.rate / ceiling.rate
        pairs = zip(self.ceilings, self.noops, strict=True)
        rounds = "/".join(f"{n.rate / c.rate:.2f}" for c, n in pairs)
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
            _row(
                "engine, no-op handler, OTel SDK metrics as in `skuflow run`",
                self.telemetry,
                f"{self.telemetry.rate / ceiling.rate:.2f} x ceiling",
            ),
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


def _measure(stack: Stack, plan: Plan) -> Results:
    n = plan.messages
    ceilings: list[Measurement] = []
    noops: list[Measurement] = []
    for round_ in range(1, plan.rounds + 1):
        _note(f"round {round_}/{plan.rounds}: ceiling")
        ceilings.append(_on_uvloop(functools.partial(cases.ceiling, stack, TOPIC, n)))
        _note(f"{ceilings[-1].rate:,.0f} msg/s; engine, no-op handler")
        noops.append(
            _on_uvloop(functools.partial(cases.engine, stack, TOPIC, n, handler_seconds=0))
        )
        _note(f"{noops[-1].rate:,.0f} msg/s")
    _note("engine, no-op handler, OTel SDK metrics")
    telemetry = _on_uvloop(
        functools.partial(cases.engine, stack, TOPIC, n, handler_seconds=0, telemetry=True)
    )
    _note(f"{telemetry.rate:,.0f} msg/s; engine, 5 ms handler")
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
    return Results(ceilings, noops, telemetry, slow, plain, rss)


def main(argv: list[str] | None = None) -> int:
    plan = Plan(_parse(argv))
    tune_gc()  # as `skuflow run` does; every contender runs in this process with it
    started = time.perf_counter()
    _note("starting Apache Kafka and PostgreSQL")
    with embedded_stack() as stack:
        _note(f"producing {plan.messages:,} + {plan.backlog:,} records, {plan.keys:,} keys")
        produced_in = _prepare(stack, plan)
        _note(f"produced in {produced_in:.1f} s")
        results = _measure(stack, plan)
    elapsed = time.perf_counter() - started
    window = plan.window
    print()
    print("\n".join(results.table(plan)))
    print()
    print(
        f"{plan.messages:,} `stock.adjusted` JSON events (~300 B) over {plan.keys:,} SKUs, "
        f"{PARTITIONS} partitions, produced once and read by every contender; all on uvloop. "
        "Whole-topic rows: first record delivered to last completed"
        + (f", median of {plan.rounds} alternating rounds" if plan.rounds > 1 else "")
        + f". *(window)* rows: completions in up to {window.seconds:g} s after a "
        f"{window.warmup:g} s warm-up. Engine: `EngineOptions` defaults "
        f"(max_in_flight={plan.max_in_flight}). Peak RSS: VmHWM of a separate process."
    )
    print(
        f"Machine: nproc={os.cpu_count()}, {_cpu_model()}, Python {platform.python_version()}, "
        f"aiokafka {version('aiokafka')}, uvloop {version('uvloop')}, "
        f"msgspec {version('msgspec')}, Apache Kafka {KAFKA_VERSION} on the same host. "
        f"Run time {elapsed:.0f} s (producing {produced_in:.0f} s)."
    )
    return 0


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
