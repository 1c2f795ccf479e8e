"""Trace context through Kafka headers, links, the sampler, set-up from OTEL_*, log fields."""

from __future__ import annotations

import json
import logging

import pytest
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from worker.logs import ConsoleFormatter, JsonFormatter
from worker.tracing import (
    MessageSpans,
    UntracedDatabaseRoots,
    extract,
    inject,
    link,
    redacted_url,
    resource,
    trace_id_hex,
    traceparent,
    tracing_wanted,
)

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


def _tracer() -> trace.Tracer:
    return TracerProvider(sampler=ALWAYS_ON).get_tracer("test")


def test_a_message_without_traceparent_starts_a_new_trace() -> None:
    assert extract([("other", b"x")]) is None
    assert extract([]) is None


def test_the_producers_context_is_extracted_from_kafka_headers() -> None:
    context = extract([("traceparent", PARENT.encode()), ("tracestate", b"vendor=1")])
    assert context is not None
    parent = trace.get_current_span(context).get_span_context()
    assert (parent.trace_id, parent.span_id, parent.is_remote) == (TRACE_ID, SPAN_ID, True)
    assert parent.trace_state.get("vendor") == "1"
    child = _tracer().start_span("process t", context=context, kind=SpanKind.CONSUMER)
    assert child.get_span_context().trace_id == TRACE_ID


def test_a_published_record_carries_the_current_context_onward() -> None:
    headers = [("traceparent", PARENT.encode()), ("skuflow.error.kind", b"undecodable")]
    assert inject(headers) == headers  # no current span: the original context stays
    with _tracer().start_as_current_span("process t") as span:
        out = dict(inject(headers))
        ids = span.get_span_context()
    assert out["skuflow.error.kind"] == b"undecodable"
    assert out["traceparent"].decode().split("-")[2] == f"{ids.span_id:016x}"
    assert len([k for k, _ in inject(headers) if k == "traceparent"]) == 1


def test_links_are_parsed_from_stored_traceparents_and_bad_ones_are_ignored() -> None:
    parsed = link(PARENT)
    assert parsed is not None
    assert (parsed.context.trace_id, parsed.context.span_id) == (TRACE_ID, SPAN_ID)
    for bad in (None, "", "garbage", "00-zz-00f067aa0ba902b7-01", f"00-{'0' * 32}-{'0' * 16}-01"):
        assert link(bad) is None


def test_only_sampled_spans_are_stored_for_links() -> None:
    assert traceparent() is None  # nothing current
    unsampled = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(0)))
    assert traceparent(unsampled) is None
    sampled = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(1)))
    assert traceparent(sampled) == PARENT
    with trace.use_span(sampled):
        assert trace_id_hex() == f"{TRACE_ID:032x}"


def test_database_calls_without_a_parent_are_not_traced() -> None:
    sampler = UntracedDatabaseRoots(ALWAYS_ON)
    db = {"db.system": "postgresql"}
    assert sampler.should_sample(None, 1, "SELECT", SpanKind.CLIENT, db).decision is Decision.DROP
    parent = extract([("traceparent", PARENT.encode())])
    sampled = sampler.should_sample(parent, 1, "SELECT", SpanKind.CLIENT, db).decision
    assert sampled is Decision.RECORD_AND_SAMPLE
    root = sampler.should_sample(None, 1, "process t", SpanKind.CONSUMER, {}).decision
    assert root is Decision.RECORD_AND_SAMPLE
    commit = sampler.should_sample(None, 1, "commit t", SpanKind.CLIENT, {}).decision
    assert commit is Decision.RECORD_AND_SAMPLE
    off = UntracedDatabaseRoots(ALWAYS_OFF).should_sample(None, 1, "process t", SpanKind.CONSUMER)
    assert off.decision is Decision.DROP
    assert "AlwaysOff" in UntracedDatabaseRoots(ALWAYS_OFF).get_description()


def test_tracing_is_on_only_when_an_exporter_or_endpoint_is_configured() -> None:
    assert not tracing_wanted({})
    assert not tracing_wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert tracing_wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing_wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318"})
    disabled = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}
    assert not tracing_wanted(disabled)


def test_the_resource_names_the_service_and_its_kubernetes_pod() -> None:
    attributes = resource(
        "1.2.3", {"K8S_POD_NAME": "skuflow-0", "K8S_NAMESPACE_NAME": "erp", "K8S_POD_UID": "u-1"}
    ).attributes
    assert attributes["service.name"] == "skuflow"
    assert attributes["service.version"] == "1.2.3"
    assert attributes["service.instance.id"] == "u-1"
    assert attributes["k8s.pod.name"] == "skuflow-0"
    assert attributes["k8s.namespace.name"] == "erp"
    assert "k8s.node.name" not in attributes
    assert resource("1", {}).attributes["service.instance.id"]  # a fresh UUID off Kubernetes


def _record() -> logging.LogRecord:
    return logging.LogRecord("skuflow.test", logging.INFO, __file__, 1, "hello", None, None)


def test_json_logs_carry_the_current_trace_and_span_ids() -> None:
    assert "trace_id" not in json.loads(JsonFormatter().format(_record()))
    with _tracer().start_as_current_span("process t") as span:
        entry = json.loads(JsonFormatter().format(_record()))
        console = ConsoleFormatter().format(_record())
        ids = span.get_span_context()
    assert entry["trace_id"] == f"{ids.trace_id:032x}"
    assert entry["span_id"] == f"{ids.span_id:016x}"
    assert entry["trace_flags"] == f"{ids.trace_flags:02x}"  # sampled (and random-id) bits
    assert int(entry["trace_flags"], 16) & 1
    assert f"trace_id={ids.trace_id:032x}" in console


def test_logs_inside_an_unsampled_producer_context_name_the_producers_trace() -> None:
    unsampled = PARENT[:-2] + "00"
    spans = MessageSpans(TracerProvider().get_tracer("test"))  # default: parent-based
    span, context = spans.start("process t", [("traceparent", unsampled.encode())])
    assert span is None
    token = otel_context.attach(context)
    try:
        entry = json.loads(JsonFormatter().format(_record()))
    finally:
        otel_context.detach(token)
    assert (entry["trace_id"], entry["span_id"], entry["trace_flags"]) == (
        f"{TRACE_ID:032x}",
        f"{SPAN_ID:016x}",
        "00",
    )


def test_an_unsampled_producer_context_becomes_current_without_a_span() -> None:
    unsampled = PARENT[:-2] + "00"
    spans = MessageSpans(TracerProvider().get_tracer("test"))  # default: parent-based
    span, context = spans.start("process t", [("traceparent", unsampled.encode())])
    assert span is None
    current = trace.get_current_span(context).get_span_context()
    assert (current.trace_id, current.span_id) == (TRACE_ID, SPAN_ID)
    span, context = spans.start("process t", [("traceparent", PARENT.encode())])
    assert span is not None
    assert span.is_recording()
    assert trace.get_current_span(context) is span
    span, _ = spans.start("process t", [])
    assert span is not None  # no context: a new (sampled) trace
    assert span.get_span_context().trace_id != TRACE_ID


def test_a_sampler_that_records_unsampled_parents_is_asked() -> None:
    unsampled = PARENT[:-2] + "00"
    provider = TracerProvider(sampler=UntracedDatabaseRoots(ALWAYS_ON))
    span, _ = MessageSpans(provider.get_tracer("test")).start(
        "process t", [("traceparent", unsampled.encode())]
    )
    assert span is not None
    assert span.get_span_context().trace_id == TRACE_ID


def test_other_traceparent_versions_and_baggage_go_through_the_propagators() -> None:
    future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
    context = extract([("traceparent", future.encode())])
    assert context is not None
    assert trace.get_current_span(context).get_span_context().trace_id == TRACE_ID
    with_baggage = extract([("traceparent", PARENT.encode()), ("baggage", b"tenant=acme")])
    assert with_baggage is not None
    assert trace.get_current_span(with_baggage).get_span_context().span_id == SPAN_ID
    assert extract([("traceparent", b"ff-garbage")]) is None


def test_console_lines_escape_control_characters_so_input_cannot_forge_a_line() -> None:
    record = logging.LogRecord(
        "skuflow.test", logging.WARNING, __file__, 1, "bad key %s", ("k\nFORGED",), None
    )
    record.event_id = "e1\r\n12:00:00 INFO  fake: line"
    line = ConsoleFormatter().format(record)
    assert "\n" not in line
    assert "\r" not in line
    assert "k\\x0aFORGED" in line


def test_the_otlp_exporter_follows_the_configured_protocol() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from worker.tracing import _span_exporter

    assert isinstance(_span_exporter("otlp", {}), OTLPSpanExporter)  # http/protobuf by default
    grpc = _span_exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert isinstance(grpc, GrpcExporter)
    grpc.shutdown()
    traces_only = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    }
    assert isinstance(_span_exporter("otlp", traces_only), OTLPSpanExporter)
    assert _span_exporter("none", {}) is None
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        _span_exporter("jaeger", {})
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        _span_exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


_HEXISH = st.sampled_from("0123456789abcdefABx-")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        # well-formed unsampled parents, including all-zero ids (invalid by the spec)
        st.tuples(
            st.text("0123456789abcdef", min_size=32, max_size=32),
            st.text("0123456789abcdef", min_size=16, max_size=16),
        ).map(lambda ids: f"00-{ids[0]}-{ids[1]}-00"),
        st.just("00-00000000000000000000000000000000-00f067aa0ba902b7-00"),
        st.just("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-00"),
        # near misses: one character of a valid unsampled parent replaced
        st.tuples(st.integers(0, 54), _HEXISH).map(
            lambda edit: (
                (PARENT[:-2] + "00")[: edit[0]] + edit[1] + (PARENT[:-2] + "00")[edit[0] + 1 :]
            )
        ),
    ),
    st.one_of(st.none(), st.just("vendor=1,other=two"), st.just("not a valid = state")),
)
def test_an_unsampled_parent_is_the_context_the_w3c_propagator_extracts(
    value: str, state: str | None
) -> None:
    """The fast path (checked now, parsed on first use) agrees with the SDK's propagator on
    every well-formed and malformed unsampled ``traceparent``: same ids, flags and state, or
    no parent at all (a new trace)."""
    headers = [("traceparent", value.encode())]
    carrier = {"traceparent": value}
    if state is not None:
        headers.append(("tracestate", state.encode()))
        carrier["tracestate"] = state
    expected = trace.get_current_span(
        TraceContextTextMapPropagator().extract(carrier, context=Context())
    ).get_span_context()
    spans = MessageSpans(TracerProvider().get_tracer("test"))  # default: parent-based
    span, context = spans.start("process t", headers)
    got = trace.get_current_span(context).get_span_context()
    if not expected.is_valid:
        assert span is not None  # no usable parent: a new trace, recorded as its root
        assert span.get_span_context().trace_id != expected.trace_id
    elif expected.trace_flags.sampled:
        assert span is not None  # (a near miss may have set the sampled flag)
        assert got.trace_id == expected.trace_id
    else:
        assert span is None  # parent-based: nothing recorded
        assert (got.trace_id, got.span_id, got.trace_flags, got.is_remote) == (
            expected.trace_id,
            expected.span_id,
            expected.trace_flags,
            True,
        )
        assert dict(got.trace_state) == dict(expected.trace_state)
        ours: dict[str, str] = {}
        theirs: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(ours, context=context)
        TraceContextTextMapPropagator().inject(
            theirs, context=trace.set_span_in_context(NonRecordingSpan(expected))
        )
        assert ours == theirs  # propagated onward as the SDK would


def test_a_credential_in_a_query_string_never_reaches_a_span_url() -> None:
    url = yarl.URL(
        "https://u:pw@ihub.example:8081/api/salesorders/v4/submit?api_key=SECRET-KEY&dc=DC1"
        "&Token=T0P&X-Amz-Signature=abc"
    )
    text = redacted_url(url)
    for secret in ("SECRET-KEY", "T0P", "abc", "pw"):
        assert secret not in text, text
    assert "dc=DC1" in text
    assert "api_key=REDACTED" in text
    assert redacted_url(yarl.URL("https://x.example/a/b")) == "https://x.example/a/b"
