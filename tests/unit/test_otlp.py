"""The direct OTLP span encoder writes the message the official encoder builds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from worker.otlp import SpanEncoder, install

pytestmark = pytest.mark.timeout(120)

_text = st.text(max_size=12)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_float = st.floats(allow_nan=False)
_scalar = st.one_of(_text, st.booleans(), _int64, _float)
_value = st.one_of(
    _scalar,
    st.lists(_text, max_size=3).map(tuple),
    st.lists(_int64, max_size=3).map(tuple),
    st.lists(st.booleans(), max_size=3).map(tuple),
    st.lists(_float, max_size=3).map(tuple),
)
_attributes = st.dictionaries(st.text(min_size=1, max_size=10), _value, max_size=6)
_ids = st.tuples(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1))
_state = st.sampled_from([None, TraceState([("vendor", "1"), ("other", "two")])])


@st.composite
def _parent(draw: st.DrawFn) -> SpanContext | None:
    kind = draw(st.sampled_from(["none", "remote", "local"]))
    if kind == "none":
        return None
    trace_id, span_id = draw(_ids)
    return SpanContext(
        trace_id,
        span_id,
        is_remote=kind == "remote",
        trace_flags=TraceFlags(1),
        trace_state=draw(_state),
    )


@st.composite
def _plans(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What to record (drawn here; the spans are made in the test: the SDK's id generator
    uses ``random``, which a strategy must not)."""
    resources = draw(st.lists(_attributes, min_size=1, max_size=2))
    spans = []
    for _ in range(draw(st.integers(1, 5))):
        code = draw(st.sampled_from(list(StatusCode)))
        spans.append(
            {
                "resource": draw(st.integers(0, len(resources) - 1)),
                "scope": draw(st.sampled_from([("skuflow", "1.0"), ("aiohttp", None)])),
                "parent": draw(_parent()),
                "links": [
                    (SpanContext(t, s, is_remote=draw(st.booleans())), draw(_attributes))
                    for t, s in draw(st.lists(_ids, max_size=2))
                ],
                "name": draw(st.text(max_size=20)),
                "kind": draw(st.sampled_from(list(SpanKind))),
                "attributes": draw(_attributes),
                "events": draw(st.lists(st.tuples(_text, _attributes), max_size=2)),
                "status": Status(code, draw(_text) if code is StatusCode.ERROR else None),
            }
        )
    return [{"attributes": r} for r in resources], spans


def _record(plan: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> list[ReadableSpan]:
    resources, specs = plan
    exporter = InMemorySpanExporter()
    providers = []
    for resource in resources:
        provider = TracerProvider(resource=Resource.create(resource["attributes"]))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers.append(provider)
    for spec in specs:
        tracer = providers[spec["resource"]].get_tracer(*spec["scope"])
        parent = spec["parent"]
        context = None if parent is None else set_span_in_context(NonRecordingSpan(parent))
        span = tracer.start_span(
            spec["name"],
            context=context,
            kind=spec["kind"],
            attributes=spec["attributes"],
            links=[Link(c, a) for c, a in spec["links"]],
        )
        for name, attributes in spec["events"]:
            span.add_event(name, attributes)
        span.set_status(spec["status"])
        span.end()
    return list(exporter.get_finished_spans())


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(_plans())
def test_the_direct_encoder_writes_the_official_encoders_message(
    plan: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    spans = _record(plan)
    ours = ExportTraceServiceRequest.FromString(SpanEncoder().encode(spans))
    assert ours == encode_spans(spans)


def test_cached_attributes_are_reused_across_batches_and_stay_exact() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("skuflow")
    encoder = SpanEncoder()
    for offset in range(3):
        with tracer.start_as_current_span(
            "process t", attributes={"messaging.destination.name": "t", "offset": offset}
        ):
            pass
        batch = exporter.get_finished_spans()[-1:]
        assert ExportTraceServiceRequest.FromString(encoder.encode(batch)) == encode_spans(batch)


def test_install_swaps_only_the_http_exporters_encoder() -> None:
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    original = getattr(trace_exporter, "encode_spans")  # noqa: B009  # (not exported)
    try:
        assert install()
        assert install()  # idempotent
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("skuflow").start_as_current_span("x"):
            pass
        spans = exporter.get_finished_spans()
        data = getattr(trace_exporter, "encode_spans")(spans).SerializePartialToString()  # noqa: B009
        assert ExportTraceServiceRequest.FromString(data) == encode_spans(spans)
    finally:
        setattr(trace_exporter, "encode_spans", original)  # noqa: B010
