"""An SRE follows one dispatch confirmation and one stock adjustment through their traces.

The real worker runs against the real broker, PostgreSQL, the SP-API and the B1 simulators with
the SDK's in-memory exporter. The producer's span is injected into the Kafka headers as a
W3C ``traceparent``; the test then walks the exported trace trees:

* dispatch: producer ``send`` → ``process <topic>`` (CONSUMER) → SP-API ``POST`` (CLIENT);
* adjustment: producer ``send`` → ``process <topic>`` ← linked from ``post stock entry`` →
  B1 ``POST`` (CLIENT), with PostgreSQL statements as children along the way.

``/metrics`` is scraped during the same run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from config.settings import (
    B1Settings,
    MappingsSettings,
    Secret,
    SpApiSettings,
    StockSettings,
)
from devstack.sims.b1.server import B1Simulator
from devstack.sims.spapi.server import SpApiSimulator
from handlers.stock.events import StockAdjusted
from skuflow.app import Worker
from tests.support.events import MARKETPLACE, dispatch_payload
from tests.support.stack import produce, read_all, settings_for, wait_for
from worker.tracing import UntracedDatabaseRoots, instrument_database, uninstrument_database

pytestmark = [pytest.mark.scenario]

ORDER = "206-1111111-1111111"
CLIENT_ID, CLIENT_SECRET, REFRESH = "amzn1.application-oa2-client.sim", "sim-secret", "Atzr|sim"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.sampler = UntracedDatabaseRoots(provider.sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_database(provider)
    try:
        yield provider, exporter
    finally:
        uninstrument_database()
        provider.shutdown()


def _adjustment(n: int, sku: str, quantity: int) -> bytes:
    return msgspec.json.encode(
        StockAdjusted(
            event_id=f"adj-{n}", occurred_at=datetime.now(UTC), source="ims",
            source_ref=f"IMS-{n}", sku=sku, warehouse="LOC-01", quantity=Decimal(quantity),
            reason="count",
        )
    )  # fmt: skip


def _sent(provider: TracerProvider, topic: str) -> tuple[trace.Span, list[tuple[str, bytes]]]:
    """A producer's ``send`` span and the headers that carry it."""
    span = provider.get_tracer("test.producer").start_span(f"send {topic}", kind=SpanKind.PRODUCER)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    span.end()
    return span, [(k, v.encode()) for k, v in carrier.items()]


def _one(spans: Sequence[ReadableSpan], **where: Any) -> ReadableSpan:
    found = [s for s in spans if all(_get(s, k) == v for k, v in where.items())]
    assert len(found) == 1, (where, [(s.name, s.kind) for s in spans])
    return found[0]


def _get(span: ReadableSpan, key: str) -> Any:
    if key == "name":
        return span.name
    if key == "kind":
        return span.kind
    if key == "parent":
        return span.parent.span_id if span.parent else None
    if key == "trace":
        return span.context.trace_id
    return (span.attributes or {}).get(key)


def _children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _posted(exporter: InMemorySpanExporter) -> bool:
    return any(s.name.startswith("post stock") for s in exporter.get_finished_spans())


async def _scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        return await response.text()


def _value(metrics: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus series' samples matching the labels."""
    total, seen = 0.0, False
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    assert seen, (name, labels)
    return total


@pytest.mark.timeout(180)
def test_one_confirmation_and_one_adjustment_are_followable_end_to_end(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: Any,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    settings = settings_for(kafka_bootstrap, database_url, f"{unique}.group", f"{unique}.stock")
    topics = settings.topics
    create_topics(topics.stock, topics.dispatch, topics.dead_letter)

    async def main() -> tuple[trace.Span, trace.Span, str, list[Any], dict[str, str]]:
        amazon = SpApiSimulator(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH
        )
        b1 = B1Simulator(password="b1-secret")
        await amazon.start()
        await b1.start()
        b1.set_faults(conflict_window_ms=0)
        b1.add_item("A0001", stock={"01": 100})
        amazon.add_order(
            "206-1111111-1111111", MARKETPLACE, datetime.now(UTC) + timedelta(hours=1),
            [("206-1111111-1111111-1", "ABC-123", 1)],
        )  # fmt: skip
        configured = msgspec.structs.replace(
            settings,
            spapi=SpApiSettings(
                endpoint=amazon.endpoint, lwa_endpoint=amazon.lwa_endpoint, client_id=CLIENT_ID,
                client_secret=Secret(CLIENT_SECRET), refresh_token=Secret(REFRESH),
            ),
            b1=B1Settings(url=b1.url, password=Secret("b1-secret")),
            mappings=MappingsSettings(warehouses={"LOC-01": "01"}),
            stock=StockSettings(window_seconds=0.5, window_max_lines=100),
        )  # fmt: skip
        worker = Worker(configured, tracer_provider=provider)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                dispatch_sent, headers = _sent(provider, topics.dispatch)
                soon = datetime.now(UTC) + timedelta(hours=1)
                await produce(
                    kafka_bootstrap, topics.dispatch,
                    [(b"206-1111111-1111111", dispatch_payload(ORDER, soon))], headers,
                )  # fmt: skip
                stock_sent, headers = _sent(provider, topics.stock)
                await produce(
                    kafka_bootstrap, topics.stock, [(b"A0001", _adjustment(1, "A0001", 5))], headers
                )
                # a message without trace context starts a trace of its own
                await produce(
                    kafka_bootstrap, topics.stock, [(b"A0001", _adjustment(2, "A0001", -2))]
                )
                await produce(kafka_bootstrap, topics.stock, [(b"X", b"{broken json")])
                await wait_for(lambda: len(amazon.confirmations) == 1, 30, "confirmed")
                await wait_for(lambda: b1.stock("A0001", "01") == 103, 30, "posted")
                assert worker.health is not None
                await wait_for(lambda: _posted(exporter), 10, "posting span")
                metrics = await _scrape(worker.health.port)
                assert worker.pool is not None
                trace_ids = await worker.pool.fetch("SELECT kind, trace_id FROM skuflow_exceptions")
                worker.request_stop()
        finally:
            await amazon.stop()
            await b1.stop()
        dead = await read_all(kafka_bootstrap, topics.dead_letter, 1)
        return dispatch_sent, stock_sent, metrics, dead, dict(trace_ids)

    dispatch_sent, stock_sent, metrics, dead, trace_ids = anyio.run(main)
    finished = exporter.get_finished_spans()

    # -- dispatch: producer → process → SP-API HTTP call --------------------------------------
    process = _one(finished, name=f"process {topics.dispatch}")
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == dispatch_sent.get_span_context().trace_id
    assert process.parent is not None
    assert process.parent.span_id == dispatch_sent.get_span_context().span_id
    attributes = process.attributes or {}
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.operation.name"] == "process"
    assert attributes["messaging.destination.name"] == topics.dispatch
    assert isinstance(attributes["messaging.destination.partition.id"], str)
    assert attributes["messaging.consumer.group.name"] == f"{unique}.group.urgent"
    assert attributes["messaging.kafka.message.key"] == "206-1111111-1111111"
    assert isinstance(attributes["messaging.kafka.offset"], int)
    assert attributes["messaging.message.id"] == "dsp-206-1111111-1111111"
    assert attributes["skuflow.order_id"] == "206-1111111-1111111"
    assert attributes["skuflow.priority"] == "urgent"
    assert 3000 < float(attributes["skuflow.deadline_slack_s"]) <= 3600  # type: ignore[arg-type]
    assert attributes["skuflow.outcome"] == "done"
    http = [s for s in _children(finished, process) if s.kind is SpanKind.CLIENT]
    confirm = [
        s for s in http if "shipmentConfirmation" in str((s.attributes or {}).get("url.full"))
    ]
    assert len(confirm) == 1, [(s.name, s.attributes) for s in http]
    assert (confirm[0].attributes or {})["http.response.status_code"] == 204
    assert any("/auth/o2/token" in str((s.attributes or {}).get("url.full")) for s in http)
    assert any(
        (s.attributes or {}).get("db.system") == "postgresql" for s in _children(finished, process)
    )

    # -- adjustment: producer → process ← linked from the posting → B1 HTTP call -------------
    stock_process = _one(
        finished, name=f"process {topics.stock}", **{"messaging.message.id": "adj-1"}
    )
    assert stock_process.parent is not None
    assert stock_process.parent.span_id == stock_sent.get_span_context().span_id
    assert (stock_process.attributes or {})["skuflow.sku"] == "A0001"
    untraced = _one(finished, name=f"process {topics.stock}", **{"messaging.message.id": "adj-2"})
    assert untraced.parent is None  # no traceparent header: a new trace
    posting = _one(finished, **{"skuflow.posting.kind": "entry"})
    assert posting.parent is None
    linked = {link.context.span_id for link in posting.links}
    assert linked == {stock_process.context.span_id, untraced.context.span_id}
    assert (posting.attributes or {})["skuflow.posting.events"] == 2
    b1_calls = [s for s in _children(finished, posting) if s.kind is SpanKind.CLIENT]
    documents = [
        s for s in b1_calls if "InventoryGenEntries" in str((s.attributes or {}).get("url.full"))
    ]
    assert len(documents) == 1, [(s.name, s.attributes) for s in b1_calls]
    assert (documents[0].attributes or {})["http.request.method"] == "POST"

    # -- a broken payload: process span in error with error.type ------------------------------
    broken = _one(finished, name=f"process {topics.stock}", **{"messaging.kafka.message.key": "X"})
    assert broken.status.status_code is StatusCode.ERROR
    assert (broken.attributes or {})["error.type"] == "undecodable"
    headers = dead[0][2]  # the dead letter carries the context onward
    assert headers["traceparent"].decode().split("-")[1:3] == [
        f"{broken.context.trace_id:032x}",
        f"{broken.context.span_id:016x}",
    ]
    assert trace_ids["undecodable"] == f"{broken.context.trace_id:032x}"

    # -- commits, and no database span without a parent ---------------------------------------
    commits = [s for s in finished if s.name == f"commit {topics.stock}"]
    assert commits
    assert all(s.kind is SpanKind.CLIENT for s in commits)
    assert (commits[0].attributes or {})["messaging.operation.type"] == "settle"
    assert not [s for s in finished if s.parent is None and (s.attributes or {}).get("db.system")]

    # -- /metrics during the run ---------------------------------------------------------------
    assert (
        _value(
            metrics,
            "messaging_client_consumed_messages_total",
            messaging_destination_name=topics.stock,
        )
        == 3
    )
    assert (
        _value(
            metrics,
            "messaging_process_duration_seconds_count",
            messaging_destination_name=topics.dispatch,
        )
        == 1
    )
    assert _value(metrics, "skuflow_erp_postings_total", result="posted") >= 1
    assert _value(metrics, "skuflow_erp_writes_total", result="ok") >= 1
    assert _value(metrics, "skuflow_erp_batch_lines_count") >= 1
    assert _value(metrics, "skuflow_spapi_calls_total", result="ok") >= 1
    assert _value(metrics, "skuflow_exceptions_total", skuflow_exception_kind="undecodable") == 1
    assert (
        _value(metrics, "messaging_kafka_consumer_lag", messaging_destination_name=topics.stock)
        == 0
    )
    assert _value(metrics, "skuflow_deadline_slack_seconds_count") == 1
    assert _value(metrics, "skuflow_deadline_alerts_total", skuflow_alert="deadline_at_risk") == 1
    assert _value(metrics, "http_client_request_duration_seconds_count") >= 3  # LWA, SP-API, B1
    assert _value(metrics, "skuflow_in_flight", skuflow_class="urgent") == 0
