"""Pre-aggregated engine metrics export exactly what per-measurement SDK calls export.

Each test feeds one known sequence of outcomes to two ``EngineMetrics`` on two providers wired
as ``skuflow run`` wires them (``meter_provider``): one pre-aggregating (the default), one with
every measurement through the SDK (``pre_aggregate=False``, the code before issue 14). The
Prometheus text and the OTLP data points (cumulative and delta, encoded as OTLP protobuf) must
be the same, timestamps aside. Durations are dyadic fractions, so sums are exact either way.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    Counter,
    Histogram,
    MeterProvider,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.telemetry import DURATION_BUCKETS, EngineMetrics, meter_provider

pytestmark = pytest.mark.timeout(60)

#: (topic, outcome, seconds): every outcome kind, two topics, bucket edges (a boundary value
#: belongs to its bucket, le), zero, beyond the last bucket, and one the SDK drops (negative).
SEQUENCE: list[tuple[str, str, float]] = [
    ("t.stock", "done", 0.0),
    ("t.stock", "done", 0.005),
    ("t.stock", "done", 0.0078125),
    ("t.stock", "done", 0.5),
    ("t.stock", "done", 12.0),
    ("t.stock", "park", 0.25),
    ("t.stock", "reject", 0.001953125),
    ("t.dispatch", "done", 10.0),
    ("t.dispatch", "cancelled", 0.125),
    ("t.dispatch", "done", -0.5),
] + [("t.stock", "done", (i % 64) / 256) for i in range(500)]

DOCUMENTED_BUCKETS = [
    "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0",
    "7.5", "10.0", "+Inf",
]  # fmt: skip


def _feed(metrics: EngineMetrics, sequence: Sequence[tuple[str, str, float]]) -> None:
    for topic, kind, seconds in sequence:
        metrics.outcome(topic, kind, seconds)


def _scrape(registry: CollectorRegistry) -> dict[str, tuple[str, str, str, list[Any]]]:
    """Prometheus families by name: type, help, unit and sorted samples (name, labels, value)."""
    text = generate_latest(registry).decode()
    return {
        family.name: (
            family.type,
            family.documentation,
            family.unit,
            sorted((s.name, sorted(s.labels.items()), s.value) for s in family.samples),
        )
        for family in text_string_to_metric_families(text)
    }


class Prometheus:
    """Two ``meter_provider`` set-ups with a Prometheus reader: pre-aggregated and direct."""

    def __init__(self) -> None:
        self.fast_registry, self.direct_registry = CollectorRegistry(), CollectorRegistry()
        self.fast = EngineMetrics(
            meter_provider([PrometheusMetricReader(registry=self.fast_registry)]).get_meter(
                "skuflow.worker", "1.2.3"
            )
        )
        self.direct = EngineMetrics(
            meter_provider([PrometheusMetricReader(registry=self.direct_registry)]).get_meter(
                "skuflow.worker", "1.2.3"
            ),
            pre_aggregate=False,
        )

    def feed(self, sequence: Sequence[tuple[str, str, float]]) -> None:
        _feed(self.fast, sequence)
        _feed(self.direct, sequence)

    def scrapes(self) -> tuple[dict[str, Any], dict[str, Any]]:
        # Only the direct set-up is flushed: its outcome counter is tallied until a flush (the
        # engine's commit interval), as before; the other one flushes before every collection.
        self.direct.flush()
        return _scrape(self.fast_registry), _scrape(self.direct_registry)


def test_a_scrape_shows_the_same_families_buckets_labels_and_values_as_per_measurement_calls() -> (
    None
):
    prom = Prometheus()
    prom.feed(SEQUENCE[:10])
    fast, direct = prom.scrapes()
    assert fast == direct
    prom.feed(SEQUENCE[10:])  # a second scrape: cumulative, and nothing counted twice
    fast, direct = prom.scrapes()
    assert fast == direct

    # The documented names, type, unit, buckets and labels (README, "Metrics").
    assert set(fast) == {"messaging_process_duration_seconds", "skuflow_outcomes", "target_info"}
    kind, _help, _unit, samples = fast["messaging_process_duration_seconds"]
    assert kind == "histogram"
    done = [s for s in samples if dict(s[1]).get("skuflow_outcome") == "done"]
    stock_done = [s for s in done if dict(s[1])["messaging_destination_name"] == "t.stock"]
    buckets = {
        dict(labels)["le"]: value for name, labels, value in stock_done if "le" in dict(labels)
    }
    assert sorted(buckets, key=lambda le: float(le)) == DOCUMENTED_BUCKETS
    assert buckets["0.005"] == 2 + 16  # 0.0 and 0.005 (le), and the 16 with i % 64 in (0, 1)
    assert buckets["+Inf"] == 505
    assert {k for _n, labels, _v in samples for k, _ in labels} == {
        "le", "messaging_destination_name", "skuflow_outcome",
        "otel_scope_name", "otel_scope_version", "otel_scope_schema_url",
    }  # fmt: skip
    kind, _help, _unit, samples = fast["skuflow_outcomes"]
    assert kind == "counter"
    totals = {
        (dict(labels)["messaging_destination_name"], dict(labels)["skuflow_outcome"]): value
        for name, labels, value in samples
        if name == "skuflow_outcomes_total"
    }
    # The negative duration is dropped by the histogram, as by the SDK; the outcome counts.
    assert totals == {
        ("t.stock", "done"): 505, ("t.stock", "park"): 1, ("t.stock", "reject"): 1,
        ("t.dispatch", "done"): 2, ("t.dispatch", "cancelled"): 1,
    }  # fmt: skip
    histogram = fast["messaging_process_duration_seconds"][3]
    dispatch_done = {
        name: value
        for name, labels, value in histogram
        if dict(labels)["messaging_destination_name"] == "t.dispatch"
        and dict(labels)["skuflow_outcome"] == "done"
        and name != "messaging_process_duration_seconds_bucket"
    }
    assert dispatch_done == {
        "messaging_process_duration_seconds_count": 1,
        "messaging_process_duration_seconds_sum": 10.0,
    }


def _points(data: MetricsData | None) -> list[tuple[Any, ...]]:
    """Every data point with its scope, metric and temporality; timestamps left out."""
    assert data is not None
    out: list[tuple[Any, ...]] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                temporality = getattr(metric.data, "aggregation_temporality", None)
                for point in metric.data.data_points:
                    fields: tuple[Any, ...] = (sorted((point.attributes or {}).items()),)
                    if isinstance(point, HistogramDataPoint):
                        fields += (point.count, point.sum, point.bucket_counts,
                                   point.explicit_bounds, point.min, point.max)  # fmt: skip
                    else:
                        fields += (getattr(point, "value", None),)
                    out.append((scope.scope.name, scope.scope.version, metric.name, metric.unit,
                                metric.description, temporality, *fields))  # fmt: skip
    return sorted(out, key=repr)


def _untimed_otlp(data: MetricsData | None) -> bytes:
    """The OTLP protobuf of ``data`` with every timestamp zeroed."""
    assert data is not None
    request = encode_metrics(data)
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for kind in ("sum", "histogram", "gauge"):
                    if metric.HasField(kind):
                        for point in getattr(metric, kind).data_points:
                            point.start_time_unix_nano = 0
                            point.time_unix_nano = 0
                            for exemplar in point.exemplars:
                                exemplar.time_unix_nano = 0
    return bytes(request.SerializeToString(deterministic=True))


DELTA: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
}


class InMemoryMetricExporter(MetricExporter):
    """Keeps what it is given to export (the SDK 1.45 has none of its own)."""

    def __init__(self, preferred_temporality: dict[type, AggregationTemporality]) -> None:
        super().__init__(preferred_temporality=preferred_temporality)
        self.exported: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **_kwargs: Any
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **_kwargs: Any) -> None:
        pass


class Otlp:
    """Both set-ups with an OTLP-style push reader (in-memory exporter, delta as configured by
    ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta``) and a cumulative pull reader.

    ``provider``: MeterProvider arguments instead of ``meter_provider``'s (views, exemplars).
    """

    def __init__(self, **provider: Any) -> None:
        self.exporters = (InMemoryMetricExporter(DELTA), InMemoryMetricExporter(DELTA))
        self.pushes: list[PeriodicExportingMetricReader] = []
        self.pulls = (InMemoryMetricReader(), InMemoryMetricReader())
        self.metrics: list[EngineMetrics] = []
        for exporter, pull, pre_aggregate in zip(
            self.exporters, self.pulls, (True, False), strict=True
        ):
            push = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
            self.pushes.append(push)
            readers: list[MetricReader] = [push, pull]
            sdk = MeterProvider(readers, **provider) if provider else meter_provider(readers)
            meter = sdk.get_meter("skuflow.worker", "1.2.3")
            self.metrics.append(EngineMetrics(meter, pre_aggregate=pre_aggregate))

    def feed(self, sequence: Sequence[tuple[str, str, float]]) -> None:
        for metrics in self.metrics:
            _feed(metrics, sequence)

    def export(self) -> tuple[MetricsData | None, MetricsData | None]:
        """One export of each push reader (``force_flush``, as at an export interval)."""
        self.metrics[1].flush()  # the direct set-up's counter tallies, as before, per flush
        datas = []
        for push, exporter in zip(self.pushes, self.exporters, strict=True):
            exporter.exported.clear()
            push.force_flush()
            (data,) = exporter.exported
            datas.append(data)
        return datas[0], datas[1]

    def pull(self) -> tuple[MetricsData | None, MetricsData | None]:
        self.metrics[1].flush()
        return self.pulls[0].get_metrics_data(), self.pulls[1].get_metrics_data()


def _histogram(data: MetricsData | None, topic: str, kind: str) -> HistogramDataPoint:
    """The ``messaging.process.duration`` point of ``(topic, kind)``."""
    assert data is not None
    (point,) = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "messaging.process.duration"
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
        and point.attributes == {"messaging.destination.name": topic, "skuflow.outcome": kind}
    ]
    return point


def _same(pair: tuple[MetricsData | None, MetricsData | None]) -> None:
    fast, direct = pair
    assert _points(fast) == _points(direct)
    assert _untimed_otlp(fast) == _untimed_otlp(direct)


def test_otlp_delta_exports_and_a_cumulative_reader_see_the_same_data_points() -> None:
    otlp = Otlp()
    otlp.feed(SEQUENCE[:10])
    first = otlp.export()
    _same(first)
    histograms = [p for p in _points(first[0]) if p[2] == "messaging.process.duration"]
    assert {p[5] for p in histograms} == {AggregationTemporality.DELTA}
    assert {p[3] for p in histograms} == {"s"}
    assert histograms[0][10] == DURATION_BUCKETS
    _same(otlp.pull())
    otlp.feed(SEQUENCE[10:])
    second = otlp.export()  # delta: only the second part, min and max of that interval
    _same(second)
    point = _histogram(second[0], "t.stock", "done")
    assert (point.count, point.min, point.max) == (500, 0.0, 63 / 256)
    _same(otlp.pull())  # cumulative: everything
    otlp.feed([("t.stock", "park", 0.25)])
    _same(otlp.export())  # an interval with one attribute set: the others report nothing
    _same(otlp.pull())


def test_where_merging_would_not_be_exact_every_measurement_goes_through_the_sdk() -> None:
    # A view with other buckets; exemplars sampled for every measurement.
    view = View(
        instrument_name="messaging.process.duration",
        aggregation=ExplicitBucketHistogramAggregation((0.1, 1.0)),
    )
    otlp = Otlp(views=[view], exemplar_filter=AlwaysOffExemplarFilter())
    otlp.feed(SEQUENCE)
    _same(otlp.export())
    _same(otlp.pull())
    points = [p for p in _points(otlp.pull()[0]) if p[2] == "messaging.process.duration"]
    assert {p[10] for p in points} == {(0.1, 1.0)}

    otlp = Otlp(exemplar_filter=AlwaysOnExemplarFilter())
    otlp.feed(SEQUENCE)
    fast, direct = otlp.export()
    _same((fast, direct))
    assert _exemplars(fast) == _exemplars(direct) > 0


def _exemplars(data: MetricsData | None) -> int:
    assert data is not None
    return sum(
        len(point.exemplars)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "messaging.process.duration"
        for point in metric.data.data_points
    )


def test_a_collection_on_another_thread_while_outcomes_are_recorded_loses_nothing() -> None:
    pull = InMemoryMetricReader()
    metrics = EngineMetrics(meter_provider([pull]).get_meter("skuflow.worker"))
    done = threading.Event()
    collections = []

    def collect() -> None:
        while not done.is_set():
            collections.append(pull.get_metrics_data())

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        for i in range(50_000):
            metrics.outcome("t.stock", "done", (i % 8) / 64)
    finally:
        done.set()
        collector.join(timeout=30)
    assert len(collections) > 1
    (point,) = [p for p in _points(pull.get_metrics_data()) if p[2] == "messaging.process.duration"]
    # (i % 8) / 64: 0 | 1/64 | 2/64, 3/64 | 4/64 | 5/64, 6/64 | 7/64 in the buckets up to 0.25
    buckets = (6250, 0, 6250, 12500, 6250, 12500, 6250) + (0,) * 8
    seconds = sum((i % 8) / 64 for i in range(50_000))
    assert point[7:13] == (50_000, seconds, buckets, DURATION_BUCKETS, 0.0, 7 / 64)
    (outcomes,) = [p for p in _points(pull.get_metrics_data()) if p[2] == "skuflow.outcomes"]
    assert outcomes[-1] == 50_000


def test_a_reader_added_later_sees_only_later_outcomes_as_with_per_measurement_calls() -> None:
    datas = []
    for pre_aggregate in (True, False):
        provider = meter_provider([InMemoryMetricReader()])
        metrics = EngineMetrics(provider.get_meter("skuflow.worker"), pre_aggregate=pre_aggregate)
        _feed(metrics, SEQUENCE[:10])
        metrics.flush()
        late = InMemoryMetricReader()
        provider.add_metric_reader(late)
        _feed(metrics, SEQUENCE[10:])
        metrics.flush()
        datas.append(late.get_metrics_data())
    _same((datas[0], datas[1]))
    (point,) = [p for p in _points(datas[0]) if p[2] == "messaging.process.duration"]
    assert point[7] == 500


def test_without_an_sdk_the_engine_metrics_are_no_ops_that_do_not_fail() -> None:
    metrics = EngineMetrics()  # the API's global (proxy, no-op) meter
    _feed(metrics, SEQUENCE)
    metrics.flush()
