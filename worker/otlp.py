"""OTLP/protobuf span encoding written straight to wire bytes, for the OTLP/HTTP exporter.

The OpenTelemetry exporter builds a protobuf object per span, attribute, value and status
(``opentelemetry-exporter-otlp-proto-common``) and then serialises the tree: ~50-85 µs per
``process`` span on our machine, run on the export thread while the engine waits for the GIL —
most of what a sampled message costs. This module writes the same bytes directly (the OTLP
``ExportTraceServiceRequest`` schema, proto3 wire format), with the encoded attribute keys and
the recurring key/value pairs cached: several times faster.

It produces *the same message* as the official encoder: ``tests/unit/test_otlp.py`` parses both
with the official protobuf classes and compares them for generated spans (every attribute type,
events, links, status, trace state, remote and local parents, several resources and scopes).

Only the encoder is replaced (:func:`install`): transport, retries, timeouts, compression,
headers and the exporter's own metrics stay the official OTLP/HTTP exporter's. The gRPC
exporter hands protobuf objects to its stub and keeps the official encoder.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

log = logging.getLogger("skuflow.otlp")

_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",  # field 6 (kind), varint; OTLP enum = SDK value + 1
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_UINT64 = 0xFFFF_FFFF_FFFF_FFFF
_CACHE_LIMIT = 4096
_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack
_fixed32 = struct.Struct("<I").pack


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2) of a tag below 16."""
    size = len(payload)
    if size < 0x80:
        return bytes((tag << 3 | 2, size)) + payload
    return bytes((tag << 3 | 2,)) + _varint(size) + payload


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message body, after the official encoder's type order."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(1, value.encode("utf-8"))
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"Value out of range: {value}")  # as protobuf's int64 field
        return b"\x18" + _varint(value & _UINT64)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    return _field(1, key.encode("utf-8")) + _field(2, _any_value(value))


class SpanEncoder:
    """Encodes span batches; keeps a bounded cache of encoded attributes between batches."""

    def __init__(self) -> None:
        self._attributes: dict[tuple[int, str, type, Any], bytes] = {}
        self._resources: dict[Resource, bytes] = {}

    def _attribute_list(self, tag: int, attributes: Mapping[str, Any] | None) -> bytes:
        """``repeated KeyValue`` as field ``tag``: each pair cached when its value is hashable
        (the same topic, group or outcome recurs on every span; offsets do not, and are cheap)."""
        if not attributes:
            return b""
        cache = self._attributes
        parts = []
        for key, value in attributes.items():
            try:
                ident = (tag, key, type(value), value)
                encoded = cache.get(ident)
            except TypeError:  # unhashable (a list value)
                ident, encoded = None, None
            if encoded is None:
                try:
                    encoded = _field(tag, _key_value(key, value))
                except Exception:  # the official encoder logs and skips it too
                    log.exception("Failed to encode key %s", key)
                    continue
                if ident is not None and not isinstance(value, int | float):
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[ident] = encoded
            parts.append(encoded)
        return b"".join(parts)

    def _resource(self, resource: Resource) -> bytes:
        encoded = self._resources.get(resource)
        if encoded is None:
            if len(self._resources) >= 16:
                self._resources.clear()
            encoded = self._resources[resource] = _field(
                1, self._attribute_list(1, resource.attributes)
            )
        return encoded

    def _span(self, span: ReadableSpan) -> bytes:
        context = span.get_span_context()
        assert context is not None
        parent = span.parent
        out = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        state = context.trace_state
        if state:
            out.append(_field(3, ",".join(f"{k}={v}" for k, v in state.items()).encode()))
        if parent is not None:
            out.append(b"\x22\x08")
            out.append(parent.span_id.to_bytes(8, "big"))
        out.append(_field(5, span.name.encode("utf-8")))
        out.append(_KIND[span.kind])
        if span.start_time:
            out.append(b"\x39" + _fixed64(span.start_time))
        if span.end_time:
            out.append(b"\x41" + _fixed64(span.end_time))
        out.append(self._attribute_list(9, span.attributes))
        if span.dropped_attributes:
            out.append(b"\x50" + _varint(span.dropped_attributes))
        for event in span.events:
            body = b""
            if event.timestamp:
                body += b"\x09" + _fixed64(event.timestamp)
            if event.name:
                body += _field(2, event.name.encode("utf-8"))
            body += self._attribute_list(3, event.attributes)
            if event.dropped_attributes:
                body += b"\x20" + _varint(event.dropped_attributes)
            out.append(_field(11, body))
        if span.dropped_events:
            out.append(b"\x60" + _varint(span.dropped_events))
        out.extend(
            _field(13, self._link(link.context, link.attributes, link.dropped_attributes))
            for link in span.links
        )
        if span.dropped_links:
            out.append(b"\x70" + _varint(span.dropped_links))
        status = span.status
        body = b""
        if status.description:
            body += _field(2, status.description.encode("utf-8"))
        if status.status_code.value:
            body += b"\x18" + _varint(status.status_code.value)
        out.append(_field(15, body))
        out.append(b"\x85\x01" + _fixed32(_flags(parent)))
        return b"".join(out)

    def _link(self, context: SpanContext, attributes: Any, dropped: int) -> bytes:
        body = (
            b"\x0a\x10"
            + context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + context.span_id.to_bytes(8, "big")
            + self._attribute_list(4, attributes)
        )
        if dropped:
            body += b"\x28" + _varint(dropped)
        return body + b"\x35" + _fixed32(_flags(context))

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        if scope is None:
            return _field(1, b"")
        body = _field(1, scope.name.encode("utf-8")) if scope.name else b""
        if scope.version:
            body += _field(2, scope.version.encode("utf-8"))
        body += self._attribute_list(3, scope.attributes)
        return _field(1, body)

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The serialised ``ExportTraceServiceRequest`` of ``spans``."""
        grouped: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
        for span in spans:
            scopes = grouped.setdefault(span.resource, {})
            scopes.setdefault(span.instrumentation_scope or None, []).append(self._span(span))
        request = []
        for resource, scopes in grouped.items():
            body = [self._resource(resource)]
            for scope, encoded in scopes.items():
                scope_body = self._scope(scope) + b"".join(_field(2, s) for s in encoded)
                if scope is not None and scope.schema_url:
                    scope_body += _field(3, scope.schema_url.encode("utf-8"))
                body.append(_field(2, scope_body))
            if resource.schema_url:
                body.append(_field(3, resource.schema_url.encode("utf-8")))
            request.append(_field(1, b"".join(body)))
        return b"".join(request)


def _flags(parent: SpanContext | None) -> int:
    flags = _HAS_IS_REMOTE
    if parent is not None and parent.is_remote:
        flags |= _IS_REMOTE
    return flags


class _Encoded:
    """What the exporter expects of ``encode_spans(...)``: an object that serialises."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def SerializePartialToString(self) -> bytes:  # protobuf's method name
        return self._data

    def SerializeToString(self) -> bytes:
        return self._data


def install() -> bool:
    """Give the OTLP/HTTP span exporter this encoder; False (nothing changed) when the
    exporter module does not look as expected (a new version: the official encoder stays)."""
    try:
        from opentelemetry.exporter.otlp.proto.http import trace_exporter
    except ImportError:  # pragma: no cover - the exporter is a dependency
        return False
    current = getattr(trace_exporter, "encode_spans", None)
    if current is None:
        return False
    if getattr(current, "__skuflow__", False):
        return True
    encoder = SpanEncoder()

    def encode_spans(spans: Sequence[ReadableSpan]) -> _Encoded:
        return _Encoded(encoder.encode(spans))

    encode_spans.__skuflow__ = True  # type: ignore[attr-defined]
    setattr(trace_exporter, "encode_spans", encode_spans)  # noqa: B010  # (not exported)
    return True
