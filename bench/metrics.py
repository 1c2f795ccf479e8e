"""``python -m bench.metrics``: the per-message cost of the engine's metrics path, in-process.

``EngineMetrics.outcome`` (the call the engine makes once per message: the duration histogram
and the outcome counter) timed over a stream of (topic, outcome, seconds) like a worker's, on
providers wired as ``skuflow run`` wires them (``meter_provider``, exemplars off): the API's
no-op meter (the engine without metrics), pre-aggregated (the default) and every measurement
through the SDK (``pre_aggregate=False``, as before issue 14), each with the Prometheus reader
only and with an OTLP push reader too. Rounds alternate the contenders; a collection (as a
scrape would) ends each timed stretch, so the merge is in the figure. Prints µs per message:
the median over rounds and each round's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from prometheus_client import CollectorRegistry, generate_latest

from skuflow.app import VERSION
from worker.telemetry import EngineMetrics, meter_provider

TOPICS = ("bench.stock", "bench.dispatch")
KINDS = ("done", "done", "done", "done", "done", "done", "park", "reject")


class _Discard(MetricExporter):
    """An OTLP push reader's exporter that drops what it is given (the encoding is not timed)."""

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **_kwargs: object
    ) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **_kwargs: object) -> None:
        pass


def _contender(pre_aggregate: bool | None, otlp: bool) -> tuple[EngineMetrics, Callable[[], None]]:
    """``pre_aggregate`` None: the API's no-op meter. Returns the metrics and a scrape."""
    if pre_aggregate is None:
        return EngineMetrics(), lambda: None
    registry = CollectorRegistry()
    readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
    if otlp:  # the interval is never reached: only the reader's cost per measurement counts
        readers.append(PeriodicExportingMetricReader(_Discard(), export_interval_millis=3.6e6))
    provider = meter_provider(readers)
    metrics = EngineMetrics(
        provider.get_meter("skuflow.worker", VERSION), pre_aggregate=pre_aggregate
    )

    def scrape() -> None:
        generate_latest(registry)

    return metrics, scrape


def _time(metrics: EngineMetrics, scrape: Callable[[], None], n: int) -> float:
    outcome = metrics.outcome
    stream = [
        (TOPICS[i % 7 == 0], KINDS[i % len(KINDS)], (i % 97) / 1000) for i in range(n)
    ]  # fmt: skip
    started = time.perf_counter()
    for topic, kind, seconds in stream:
        outcome(topic, kind, seconds)
    metrics.flush()  # as the engine's commit loop does
    scrape()
    return (time.perf_counter() - started) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000, help="per round (200k)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    args = parser.parse_args(argv)
    contenders = {
        "no-op meter (engine without metrics)": (None, False),
        "pre-aggregated, Prometheus reader": (True, False),
        "pre-aggregated, Prometheus + OTLP readers": (True, True),
        "every measurement through the SDK, Prometheus reader": (False, False),
        "every measurement through the SDK, Prometheus + OTLP readers": (False, True),
    }
    built = {name: _contender(*spec) for name, spec in contenders.items()}
    for metrics, scrape in built.values():  # warm: attribute sets resolved, caches filled
        _time(metrics, scrape, 1_000)
    rounds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, (metrics, scrape) in built.items():
            rounds[name].append(_time(metrics, scrape, args.messages))
    print("| metrics path, `EngineMetrics.outcome` | µs per message (median) | rounds |")
    print("|---|---:|---|")
    for name, figures in rounds.items():
        median = sorted(figures)[(len(figures) - 1) // 2]
        print(f"| {name} | {median:.2f} | {'/'.join(f'{f:.2f}' for f in figures)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
