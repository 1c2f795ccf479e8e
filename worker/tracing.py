"""Tracing: W3C trace context through Kafka headers, messaging spans, set-up from ``OTEL_*``.

The worker emits its own spans after the OpenTelemetry messaging semantic conventions (v1.27+
names): ``process <topic>`` (CONSUMER, a child of the producer's context carried in the
``traceparent``/``tracestate`` headers) and ``commit <topic>`` (CLIENT). Outgoing HTTP and
PostgreSQL calls are spans of the instrumentation packages, children of whatever span is
current. Tracing is configured by the standard variables (``OTEL_TRACES_EXPORTER``,
``OTEL_EXPORTER_OTLP_*``, ``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``); with no exporter configured it is off and the engine takes a path
with no tracing code at all.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.span import format_span_id, format_trace_id
from opentelemetry.util.types import Attributes

from worker.telemetry import otlp_protocol, sdk_disabled

log = logging.getLogger("skuflow.tracing")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

#: Span links a batched ERP posting carries at most (the count of all is an attribute).
MAX_LINKS = 128

#: Kubernetes downward-API variables (set by the Helm chart) → resource attributes.
K8S_ENV = {
    "K8S_POD_NAME": "k8s.pod.name",
    "K8S_POD_UID": "k8s.pod.uid",
    "K8S_NAMESPACE_NAME": "k8s.namespace.name",
    "K8S_NODE_NAME": "k8s.node.name",
    "K8S_DEPLOYMENT_NAME": "k8s.deployment.name",
    "K8S_CONTAINER_NAME": "k8s.container.name",
}

Headers = Sequence[tuple[str, bytes]]


class _HeaderGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = [v.decode("latin-1") for k, v in carrier if k == key and v is not None]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in carrier]


_GETTER = _HeaderGetter()

#: W3C trace-context ``traceparent``, version 00 (the SDK propagator takes other versions).
_TRACEPARENT = re.compile(rb"[ \t]*00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})[ \t]*")


def _w3c_only() -> bool:
    """The configured propagators read nothing but W3C trace context (and baggage)."""
    names = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage")
    return {n.strip() for n in names.split(",")} <= {"tracecontext", "baggage"}


def _trace_headers(headers: Headers) -> tuple[bytes | None, bytes | None] | None:
    """The ``traceparent`` and ``tracestate`` values; None when ``baggage`` is there too (the
    propagators must read the record)."""
    parent = state = None
    for key, value in headers:
        if key == TRACEPARENT:
            parent = value
        elif key == TRACESTATE:
            state = value
        elif key == "baggage":
            return None
    return parent, state


def _remote_parent(headers: Headers) -> SpanContext | None:
    """The W3C parent of a record, parsed as the SDK's propagator parses it (but cheaper).

    Raises LookupError when the propagators must read the headers (``baggage``, or a
    ``traceparent`` of a version other than 00).
    """
    found = _trace_headers(headers)
    if found is None:
        raise LookupError("baggage")
    parent, state = found
    if parent is None:
        return None
    context = _span_context(parent, state)
    if context is None and parent.lstrip()[:2] not in (b"00", b"ff"):
        raise LookupError(TRACEPARENT)  # a future version: the propagator's rules apply
    return context


def _span_context(parent: bytes, state: bytes | None = None) -> SpanContext | None:
    """The remote context a version-00 ``traceparent`` names; None when it is malformed."""
    match = _TRACEPARENT.fullmatch(parent)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    context = SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=_FLAGS.get(flags) or TraceFlags(int(flags, 16)),
        trace_state=TraceState.from_header([state.decode("latin-1")]) if state else None,
    )
    return context if context.is_valid else None


_FLAGS = {b"00": TraceFlags(0), b"01": TraceFlags(1)}


def _drops_unsampled_remote_parents(sampler: Sampler | None) -> bool:
    """The sampler is parent-based with the default for an unsampled remote parent: drop."""
    while isinstance(sampler, UntracedDatabaseRoots):
        sampler = sampler.delegate
    return (
        isinstance(sampler, ParentBased)
        and getattr(sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF
    )


def extract(headers: Headers, *, w3c_only: bool | None = None) -> Context | None:
    """The producer's context from Kafka headers; None (a new trace) when there is none.

    With the default propagators the ``traceparent``/``tracestate`` headers are parsed directly
    (a few µs less per message than the propagator API); other propagators (``OTEL_PROPAGATORS``)
    and ``baggage`` go through ``opentelemetry.propagate``.
    """
    if w3c_only is None:
        w3c_only = _w3c_only()
    if w3c_only:
        try:
            parent = _remote_parent(headers)
        except LookupError:
            return propagate.extract(headers, getter=_GETTER)
        return None if parent is None else _context_of(parent)
    return propagate.extract(headers, getter=_GETTER) if headers else None


class MessageSpans:
    """Starts the ``process`` span of a message, cheaply when it will not be recorded.

    When the producer's context says "not sampled" and the sampler agrees (parent-based, the
    default), no span is started at all: the producer's context itself becomes current, so logs
    and outgoing calls still carry the trace, and nothing is recorded — as with a non-recording
    child span, minus its cost.
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._sampler: Sampler | None = getattr(tracer, "sampler", None)
        self._w3c_only = _w3c_only()
        self._drop_unsampled = _drops_unsampled_remote_parents(self._sampler)

    def start(self, name: str, headers: Headers) -> tuple[trace.Span | None, Context]:
        """The span (None: not recorded) and the context to make current while processing."""
        if self._drop_unsampled and self._w3c_only and headers:
            unsampled = _unsampled_parent(headers)
            if unsampled is not None:
                return None, unsampled  # (what the sampler would decide, without asking it)
        parent = extract(headers, w3c_only=self._w3c_only) if headers else None
        if parent is not None and self._sampler is not None:
            remote = trace.get_current_span(parent).get_span_context()
            # (a parent the propagator found invalid is no parent: the span starts a new trace)
            if remote.is_valid:
                if self._drop_unsampled and not remote.trace_flags.sampled:
                    return None, parent  # (what the sampler would decide, without asking it)
                decision = self._sampler.should_sample(
                    parent, remote.trace_id, name, SpanKind.CONSUMER
                ).decision
                if decision is Decision.DROP:
                    return None, parent
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.CONSUMER)
        return span, trace.set_span_in_context(span, parent)


class _UnsampledRemoteParent(NonRecordingSpan):
    """The producer's span when it was not sampled, its ``traceparent`` parsed on first use.

    Most records of a traced producer are not sampled, and for them the worker records nothing:
    the context only has to be *there*, for logs and outgoing calls that may ask for it. So the
    header is checked (the version-00 pattern, non-zero ids, flags 00) but turned
    into a :class:`SpanContext` only when someone asks for it (a log line, an HTTP call's
    propagator, a child span); a handler that asks nothing pays for nothing.
    """

    def __init__(self, traceparent: bytes, tracestate: bytes | None) -> None:
        # (NonRecordingSpan.__init__ is not called: it wants the parsed context up front)
        self._traceparent = traceparent
        self._tracestate = tracestate
        self._parsed: SpanContext | None = None

    def get_span_context(self) -> SpanContext:
        if self._parsed is None:
            self._parsed = (
                _span_context(self._traceparent, self._tracestate) or trace.INVALID_SPAN_CONTEXT
            )
        return self._parsed

    @property
    def _context(self) -> SpanContext:  # type: ignore[override]  # NonRecordingSpan's field
        return self.get_span_context()

    def __repr__(self) -> str:
        return f"NonRecordingSpan({self.get_span_context()!r})"


_ZERO_TRACE_ID = b"0" * 32
_ZERO_SPAN_ID = b"0" * 16


def _unsampled_parent(headers: Headers) -> Context | None:
    """The context of a record whose producer did not sample its trace (the common case:
    checked, not parsed); None when the record is anything else (sampled, no or a malformed
    ``traceparent``, another version, ``baggage``): the full path decides those."""
    found = _trace_headers(headers)
    if found is None:
        return None
    parent, state = found
    match = None if parent is None else _TRACEPARENT.fullmatch(parent)
    if parent is None or match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if flags != b"00" or trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    return Context({_SPAN_KEY: _UnsampledRemoteParent(parent, state)})


#: The key under which a Context holds its span (derived through the public API, once).
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))


def _context_of(remote: SpanContext) -> Context:
    """A context holding only the remote parent (what ``set_span_in_context`` returns on an
    empty context, built directly: this runs for every traced message)."""
    return Context({_SPAN_KEY: NonRecordingSpan(remote)})


def inject(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Headers with the current span's context in place of any earlier one.

    Without a current span the headers pass unchanged, so a record keeps the context it came
    with (a retried exception stays in its original trace).
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if TRACEPARENT not in carrier:
        return list(headers)
    kept = [(k, v) for k, v in headers if k not in (TRACEPARENT, TRACESTATE)]
    return kept + [(k, v.encode("latin-1")) for k, v in carrier.items()]


def traceparent(span: trace.Span | None = None) -> str | None:
    """The W3C ``traceparent`` of a sampled span (current one by default), else None."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    ids = f"{format_trace_id(context.trace_id)}-{format_span_id(context.span_id)}"
    return f"00-{ids}-{context.trace_flags:02x}"


def link(value: str | None, attributes: Attributes = None) -> Link | None:
    """A span link to the context a ``traceparent`` names (None when it is malformed)."""
    context = _span_context(value.encode("latin-1")) if value else None
    return None if context is None else Link(context, attributes)


def trace_id_hex() -> str | None:
    """The current trace id (lowercase hex) for records that name their trace."""
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


class UntracedDatabaseRoots(Sampler):
    """Drops database spans that have no parent; everything else follows the delegate.

    Polling loops (park retrier, window flusher) query PostgreSQL every second; as root spans
    they would be thousands of one-span traces. Inside a unit of work (a ``process`` or a
    posting span) database calls are traced as children.
    """

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if (
            kind is SpanKind.CLIENT
            and attributes
            and ("db.system" in attributes or "db.system.name" in attributes)
            and not trace.get_current_span(parent_context).get_span_context().is_valid
        ):
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"UntracedDatabaseRoots{{{self.delegate.get_description()}}}"


def resource(version: str, env: Mapping[str, str] | None = None) -> Resource:
    """service.name/version/instance.id, Kubernetes attributes, then ``OTEL_RESOURCE_*``."""
    env = os.environ if env is None else env
    attributes: dict[str, str] = {
        "service.name": "skuflow",
        "service.version": version,
        "service.instance.id": env.get("K8S_POD_UID") or str(uuid.uuid4()),
        "host.name": socket.gethostname(),
    }
    for variable, name in K8S_ENV.items():
        if env.get(variable):
            attributes[name] = env[variable]
    # Resource.create lets OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME override these.
    return Resource.create(attributes)


def _span_exporter(name: str, env: Mapping[str, str]) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r}")
    protocol = otlp_protocol(env, "TRACES")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from worker import otlp

        if not otlp.install():  # the same bytes, ~3x faster (worker/otlp.py)
            log.info("OTLP/HTTP exporter not as expected: its own span encoder is used")
        return OTLPSpanExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {protocol!r}")


def tracing_wanted(env: Mapping[str, str] | None = None) -> bool:
    """Tracing is on when an exporter is named or an OTLP endpoint is configured."""
    env = os.environ if env is None else env
    if sdk_disabled(env):
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return exporters.strip().lower() not in ("", "none")
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure_tracing(version: str, env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """The process's tracer provider from ``OTEL_*`` (installed globally), or None: off."""
    env = os.environ if env is None else env
    if not tracing_wanted(env):
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG); the SDK's default is parent-based.
    provider = TracerProvider(resource=resource(version, env))
    provider.sampler = UntracedDatabaseRoots(provider.sampler)
    for name in names:
        exporter = _span_exporter(name, env)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrument_database(provider)
    log.info(
        "tracing on",
        extra={"exporters": ",".join(names), "sampler": provider.sampler.get_description()},
    )
    return provider


def instrument_database(provider: trace.TracerProvider) -> None:
    """asyncpg calls become client spans (statements without their parameters)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor(capture_parameters=False)  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=provider)


def uninstrument_database() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


#: Query parameters whose value is a credential: Seko iHub takes its key only in the query
#: string (``api_key``/``token``), others sign with a query parameter. A span records the URL
#: with these values replaced (OpenTelemetry's own redaction covers only a few signature names).
SECRET_QUERY_PARAMETERS = frozenset(
    {"api_key", "apikey", "token", "access_token", "key", "secret", "client_secret",
     "password", "refresh_token", "sig", "signature", "x-amz-signature", "x-amz-credential",
     "x-amz-security-token", "awsaccesskeyid"}
)  # fmt: skip


def redacted_url(url: Any) -> str:
    """``url`` (a ``yarl.URL``) for a span: credentials in its query replaced, no user info."""
    query = [
        (name, "REDACTED" if name.lower() in SECRET_QUERY_PARAMETERS else value)
        for name, value in url.query.items()
    ]
    clean = url.with_user(None).with_password(None)
    return str(clean.with_query(query) if query else clean)


def http_trace_configs(
    provider: trace.TracerProvider | None, meter_provider: Any = None
) -> list[Any]:
    """aiohttp client trace configs: one span per request and the request-duration histogram
    (stable HTTP conventions); none when tracing is off."""
    if provider is None:
        return []
    from opentelemetry.instrumentation._semconv import _StabilityMode
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    config = create_trace_config(
        url_filter=redacted_url,
        tracer_provider=provider,
        meter_provider=meter_provider,
        sem_conv_opt_in_mode=_StabilityMode.HTTP,
    )
    return [config]


__all__ = [
    "MAX_LINKS",
    "MessageSpans",
    "UntracedDatabaseRoots",
    "configure_tracing",
    "extract",
    "http_trace_configs",
    "inject",
    "link",
    "resource",
    "trace_id_hex",
    "traceparent",
    "tracing_wanted",
]
