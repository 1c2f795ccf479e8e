"""Engine metrics through the OpenTelemetry metrics API (exported by OTLP and on /metrics).

Instruments are created once per meter. Names follow the OpenTelemetry messaging semantic
conventions where one exists (``messaging.client.consumed.messages``,
``messaging.process.duration``); skuflow's own are prefixed ``skuflow.``.

The per-message pair (``messaging.process.duration`` and ``skuflow.outcomes``) is pre-aggregated
locally: a measurement through the SDK costs ~10 µs (its attributes are cleaned, copied, hashed
and sorted every time), a local tally ~0.5 µs. The tallies are handed to the SDK's own
aggregations before every collection, by any reader (``flush``, run from an observable
callback), so every reader exports exactly what per-message ``record``/``add`` calls would have
given it: the same instruments, names, units, buckets, attributes and temporality. See
:class:`_Tally` for what is relied on inside the SDK and when it falls back to plain calls.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
from opentelemetry.sdk.metrics._internal.aggregation import _ExplicitBucketHistogramAggregation
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

log = logging.getLogger(__name__)


class _Tally:
    """One ``(topic, outcome)``'s measurements since the last flush, and the SDK's aggregations
    of that attribute set (one per reader and view) they are merged into.

    Relied on inside the SDK (1.45; it has no ``MetricProducer`` yet): an instrument's
    ``_measurement_consumer._reader_storages``, each storage's
    ``_instrument_view_instrument_matches``, a match's ``_attributes_aggregation`` keyed by
    ``_hash_attributes``, and an ``_ExplicitBucketHistogramAggregation``'s ``_lock``,
    ``_value`` (bucket counts or None), ``_sum``, ``_min``, ``_max``, ``_boundaries``,
    ``_record_min_max``, ``_attributes``, ``_get_empty_bucket_counts``. Merged
    only where that is exactly equivalent to per-measurement ``record`` calls: the aggregation
    is that class with this instrument's buckets and min/max on, the attributes are the
    measurement's, and exemplars are off (``meter_provider``). Otherwise, and for a no-op or
    proxy meter, every measurement goes through the SDK as before (``direct``).
    """

    __slots__ = ("attributes", "counts", "direct", "high", "low", "outcomes", "storages",
                 "targets", "total")  # fmt: skip

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes
        self.outcomes = 0
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf
        #: The SDK's aggregations to merge into; None: not resolved (yet), measure directly.
        self.targets: list[Any] | None = None
        #: The consumer's reader storages the targets were found in (replaced when a reader
        #: is added or removed: the targets are then resolved again).
        self.storages: object = None
        #: Never pre-aggregated (the SDK set-up is not one merging is exact for).
        self.direct = False

    def resolve(self, instrument: Any) -> None:
        """Find the aggregations of this attribute set (after one measurement created them)."""
        try:
            consumer = instrument._measurement_consumer
            storages = consumer._reader_storages
            exemplars_off = isinstance(
                consumer._sdk_config.exemplar_filter, AlwaysOffExemplarFilter
            )
            key = _hash_attributes(self.attributes)
            targets = [
                match._attributes_aggregation.get(key)
                for storage in storages.values()
                for match in storage._instrument_view_instrument_matches.get(instrument, ())
            ]
        except AttributeError:  # a no-op or proxy instrument, or an SDK laid out otherwise
            self.direct = True
            return
        if exemplars_off and targets and all(_mergeable(target, self) for target in targets):
            self.targets, self.storages = targets, storages
        else:
            self.direct = True

    def merge(self) -> None:
        """Add the observations since the last merge to every target, as ``record`` would."""
        if self.targets is None or self.high < 0.0:  # nothing observed since the last merge
            return
        counts, total, low, high = self.counts, self.total, self.low, self.high
        for target in self.targets:
            with target._lock:
                if target._value is None:
                    target._value = target._get_empty_bucket_counts()
                value = target._value
                for index, count in enumerate(counts):
                    if count:
                        value[index] += count
                target._sum += total
                target._min = min(target._min, low)
                target._max = max(target._max, high)
        self.counts = [0] * len(counts)
        self.total, self.low, self.high = 0.0, math.inf, -math.inf


def _mergeable(target: Any, tally: _Tally) -> bool:
    return (
        type(target) is _ExplicitBucketHistogramAggregation
        and target._boundaries == DURATION_BUCKETS
        and target._record_min_max is True
        and target._attributes == tally.attributes
    )


class EngineMetrics:
    """The engine's instruments; gauges read live engine state through callbacks."""

    def __init__(self, meter: metrics.Meter | None = None, *, pre_aggregate: bool = True) -> None:
        """``pre_aggregate=False``: every measurement goes through the SDK (the reference the
        pre-aggregated path is tested against)."""
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
        #: Taken per outcome and by ``flush``, which a reader's collection may run on its own
        #: thread (the OTLP reader's). Held while merging into the SDK's aggregations, which
        #: take their own locks inside it; the SDK never calls into this class holding one
        #: of its locks but the consumer's (at collection), which this class never takes.
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._pre_aggregate = pre_aggregate
        #: The SDK's measurement consumer (None: not an SDK meter; nothing is pre-aggregated).
        self._consumer: Any = getattr(self.process_duration, "_measurement_consumer", None)
        # Collection hook: an observable instrument's callbacks run at the start of every
        # collection, for every reader, before the SDK reads its aggregations. It observes
        # nothing, so it is exported nowhere.
        meter.create_observable_gauge(
            "skuflow.metrics.flush",
            [self._before_collection],
            description="Not exported: hands local tallies to the SDK before each collection.",
        )

    def outcome(self, topic: str, kind: str, seconds: float) -> None:
        """One processed message (hot path: tallied locally, handed to the SDK by ``flush``)."""
        key = (topic, kind)
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = _Tally(
                    {"messaging.destination.name": topic, "skuflow.outcome": kind}
                )
                tally.direct = not self._pre_aggregate
            tally.outcomes += 1
            if tally.targets is not None and tally.storages is not self._consumer._reader_storages:
                # A reader was added or removed: what was measured so far goes to the readers
                # there were; this measurement goes through the SDK (so a new reader's
                # aggregation exists) and the targets are found again.
                tally.merge()
                tally.targets = tally.storages = None
            if tally.targets is not None and 0.0 <= seconds < math.inf:
                tally.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
                tally.total += seconds
                if seconds < tally.low:
                    tally.low = seconds
                if seconds > tally.high:
                    tally.high = seconds
                return
        # Through the SDK: directly, or the first measurement of this attribute set (it creates
        # the aggregations the next ones are merged into), or one the SDK drops with a warning.
        self.process_duration.record(seconds, tally.attributes)
        if tally.targets is None and not tally.direct:
            with self._lock:
                tally.resolve(self.process_duration)

    def flush(self) -> None:
        """Hand the local tallies to the SDK (before every collection; and per commit
        interval, at the end of a run)."""
        with self._lock:
            for tally in self._tallies.values():
                if tally.outcomes:
                    self.outcomes.add(tally.outcomes, tally.attributes)
                    tally.outcomes = 0
                tally.merge()

    def _before_collection(self, _options: CallbackOptions) -> Iterable[Observation]:
        try:
            self.flush()
        except Exception:  # a collection must not fail for it; the tallies wait for the next
            log.exception("could not hand metric tallies to the SDK")
        return ()

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
