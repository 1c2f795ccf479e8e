"""Deadline slack and lateness reach their histograms (an SDK histogram takes no negatives)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from worker.deadlines import MISSED, DeadlineWatch
from worker.messages import EventInfo, Message
from worker.telemetry import EngineMetrics


def _message() -> Message:
    return Message(
        topic="t.dispatch", partition=0, offset=1, key=b"o", value=b"{}", headers=(),
        timestamp_ms=0,
    )  # fmt: skip


def test_slack_and_lateness_are_recorded_and_a_missed_deadline_alerts_once() -> None:
    reader = InMemoryMetricReader()
    metrics = EngineMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    alerts: list[tuple[Any, ...]] = []

    async def durably(_what: str, _write: Any, *args: Any, **_kwargs: Any) -> None:
        alerts.append(args)

    sinks: Any = SimpleNamespace(alert="sinks.alert")  # only named: `durably` does the write
    watch = DeadlineWatch(sinks, metrics, durably, at_risk_seconds=7200, clock=lambda: 100_000.0)
    early = EventInfo("dispatch.confirmed", "e1", deadline=100_000.0 + 86_400)
    late = EventInfo("dispatch.confirmed", "e2", deadline=100_000.0 - 600)
    late_message = _message()

    async def main() -> None:
        await watch.check(_message(), early)
        await watch.check(late_message, late)
        await watch.check(late_message, late)  # a retry: no second alert

    anyio.run(main)
    points: dict[str, HistogramDataPoint] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    if isinstance(point, HistogramDataPoint):
                        points[metric.name] = point
    assert points["skuflow.deadline.slack"].count == 1
    assert points["skuflow.deadline.slack"].sum == 86_400
    assert points["skuflow.deadline.lateness"].count == 2
    assert points["skuflow.deadline.lateness"].sum == 1_200
    assert [args[1] for args in alerts] == [MISSED]
    assert late_message.alert == MISSED
