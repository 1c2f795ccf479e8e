"""Engine metrics through the OpenTelemetry metrics API (exported by OTLP and on /metrics).

Instruments are created once per meter. Names follow the OpenTelemetry messaging semantic
conventions where one exists (``messaging.client.consumed.messages``,
``messaging.process.duration``); skuflow's own are prefixed ``skuflow.``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

#: The messaging conventions' advisory buckets for messaging.process.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

#: Deadline slack buckets (seconds): minutes, hours. (Histograms take no negative values:
#: a missed deadline's lateness has a histogram of its own.)
SLACK_BUCKETS = (
    0.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
)

Gauges = Callable[[], Iterable[tuple[float, dict[str, str | int]]]]


class EngineMetrics:
    """The engine's instruments; gauges read live engine state through callbacks."""

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter("skuflow.worker")
        self.meter = meter
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Messages delivered to the worker by the consumer.",
        )
        self.process_duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Duration of processing one message, outcome included.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.outcomes = meter.create_counter(
            "skuflow.outcomes", unit="{message}", description="Handler outcomes by kind."
        )
        self.exceptions = meter.create_counter(
            "skuflow.exceptions", unit="{exception}", description="Exception records by kind."
        )
        self.retries = meter.create_counter(
            "skuflow.retries", unit="{retry}", description="In-place retries (key blocked)."
        )
        self.skipped = meter.create_counter(
            "skuflow.offsets.skipped",
            unit="{message}",
            description="Messages skipped because the offset map shows them done.",
        )
        self.commits = meter.create_counter(
            "skuflow.commits", unit="{commit}", description="Offset commits by result."
        )

        self.deadline_slack = meter.create_histogram(
            "skuflow.deadline.slack",
            unit="s",
            description="Time left before the deadline when an urgent event is attempted.",
            explicit_bucket_boundaries_advisory=SLACK_BUCKETS,
        )
        self.deadline_lateness = meter.create_histogram(
            "skuflow.deadline.lateness",
            unit="s",
            description="How long past its deadline an urgent event is attempted (missed only).",
            explicit_bucket_boundaries_advisory=SLACK_BUCKETS,
        )
        self.deadline_alerts = meter.create_counter(
            "skuflow.deadline.alerts",
            unit="{event}",
            description="Urgent events flagged deadline_at_risk or deadline_missed.",
        )
        self._gauges: dict[str, list[Gauges]] = {}
        self._tally: dict[tuple[str, str], int] = {}
        self._attributes: dict[tuple[str, str], dict[str, str]] = {}

    def outcome(self, topic: str, kind: str, seconds: float) -> None:
        """One processed message (hot path: the counter is tallied locally, see flush)."""
        key = (topic, kind)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = {
                "messaging.destination.name": topic,
                "skuflow.outcome": kind,
            }
        self._tally[key] = self._tally.get(key, 0) + 1
        self.process_duration.record(seconds, attributes)

    def flush(self) -> None:
        """Hand the locally tallied counts to the SDK (called once per commit interval)."""
        tally, self._tally = self._tally, {}
        for key, count in tally.items():
            self.outcomes.add(count, self._attributes[key])

    def observe(self, name: str, description: str, unit: str, read: Gauges) -> None:
        """Register a source of an observable gauge read from live state at collection time.

        Several sources (e.g. the urgent and the normal engine) may feed one gauge; they tell
        their observations apart by attributes.
        """
        sources = self._gauges.get(name)
        if sources is not None:
            sources.append(read)
            return
        sources = self._gauges[name] = [read]

        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, attrs) for source in sources for v, attrs in source()]

        self.meter.create_observable_gauge(name, [callback], unit=unit, description=description)


def sdk_disabled(env: Mapping[str, str]) -> bool:
    """``OTEL_SDK_DISABLED=true``: no traces and no OTLP metrics (``/metrics`` stays)."""
    return env.get("OTEL_SDK_DISABLED", "").lower() == "true"


def otlp_protocol(env: Mapping[str, str], signal: str) -> str:
    """The OTLP protocol of ``signal`` (``TRACES``, ``METRICS``): its own variable, else the
    common one, else ``http/protobuf``."""
    return env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )


def metric_readers_from_env(env: Mapping[str, str] | None = None) -> list[MetricReader]:
    """An OTLP push reader when ``OTEL_METRICS_EXPORTER`` names ``otlp`` (``/metrics`` always
    serves Prometheus; the interval is ``OTEL_METRIC_EXPORT_INTERVAL``)."""
    env = os.environ if env is None else env
    if sdk_disabled(env):
        return []
    names = {n.strip().lower() for n in env.get("OTEL_METRICS_EXPORTER", "").split(",")}
    if "otlp" not in names:
        return []
    if otlp_protocol(env, "METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        return [PeriodicExportingMetricReader(GrpcExporter())]
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return [PeriodicExportingMetricReader(OTLPMetricExporter())]


def meter_provider(
    readers: Iterable[MetricReader], resource: Resource | None = None
) -> MeterProvider:
    """The SDK meter provider of a worker process (the benchmarks build theirs here too).

    Exemplars are off: the default trace-based filter looks up the current span for every
    measurement, microseconds per message for a feature the Prometheus endpoint cannot show.
    """
    return MeterProvider(
        metric_readers=list(readers),
        resource=resource if resource is not None else Resource.create(),
        exemplar_filter=AlwaysOffExemplarFilter(),
    )
