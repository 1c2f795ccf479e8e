"""Domain instruments: ERP postings and writes, lock retries, marketplace calls and throttles.

Created once per worker from its meter (``build_domain``); the default is the global meter, so
connectors and handlers built on their own (tests, the bench) still count somewhere.
"""

from __future__ import annotations

from opentelemetry import metrics, trace

#: Lines per ERP document / source events per posting: from one to a full window.
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)


class DomainTelemetry:
    """The domain's tracer (None: tracing off) and instruments."""

    def __init__(
        self, meter: metrics.Meter | None = None, tracer: trace.Tracer | None = None
    ) -> None:
        meter = meter or metrics.get_meter("skuflow.handlers")
        self.meter = meter  # (the group-commit writer's instruments)
        self.tracer = tracer
        self.postings = meter.create_counter(
            "skuflow.erp.postings",
            unit="{posting}",
            description="Summarised stock postings finished, by kind and result.",
        )
        self.batch_lines = meter.create_histogram(
            "skuflow.erp.batch.lines",
            unit="{line}",
            description="Lines per ERP stock document sent.",
            explicit_bucket_boundaries_advisory=BATCH_BUCKETS,
        )
        self.batch_events = meter.create_histogram(
            "skuflow.erp.batch.events",
            unit="{event}",
            description="Source stock adjustments summarised by one posting.",
            explicit_bucket_boundaries_advisory=BATCH_BUCKETS,
        )
        self.erp_writes = meter.create_counter(
            "skuflow.erp.writes",
            unit="{call}",
            description="ERP document write calls, by document kind and result.",
        )
        self.lock_retries = meter.create_counter(
            "skuflow.erp.lock_retries",
            unit="{retry}",
            description="Postings rescheduled because the ERP reported a lock or was down.",
        )
        self.rejected_movements = meter.create_counter(
            "skuflow.erp.rejected_movements",
            unit="{event}",
            description="Stock movements the ERP refused after posting (erp_rejected exceptions).",
        )
        self.spapi_calls = meter.create_counter(
            "skuflow.spapi.calls",
            unit="{call}",
            description="SP-API requests, by operation and result.",
        )
        self.spapi_throttles = meter.create_counter(
            "skuflow.spapi.throttles",
            unit="{response}",
            description="SP-API 429 QuotaExceeded answers, by operation.",
        )
