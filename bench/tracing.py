"""Tracing overhead: the engine (no-op handler) with tracing off, default sampling, 100 %.

Every record carries a producer's ``traceparent`` (as a traced producer sends them); the
producer sampled 1 % of them in one topic and 10 % in another:

* **off** — no exporter configured: the engine gets no tracer and runs no tracing code;
* **default** — the SDK's default sampler, parent-based: a ``process`` span is recorded and
  exported for the share the producer sampled; for the rest no span is recorded (the
  producer's context still flows to logs and downstream calls);
* **100 %** — ``always_on``: every message's span is recorded and exported.

Spans are exported as ``skuflow run`` exports them: a ``BatchSpanProcessor`` with the OTLP/HTTP
exporter, to a sink in a separate process that answers every POST with 200.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler

from worker import otlp

#: The shares of records whose producer sampled its trace (one topic each).
PRODUCER_SAMPLED = (0.01, 0.10)

_SINK = """
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def otlp_sink() -> Iterator[str]:
    """An OTLP/HTTP endpoint in a separate process that swallows what it is sent."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-c", _SINK, str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1/traces"
    finally:
        process.terminate()
        process.wait(5)


def provider(endpoint: str, sampler: Sampler) -> TracerProvider:
    """As ``configure_tracing`` builds it for OTLP/HTTP (with the direct span encoder)."""
    otlp.install()
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return tracer_provider


class Case(NamedTuple):
    name: str
    sampler: Sampler | None
    sampled: float  #: the producer-sampled share of the topic it reads


CASES = (
    Case("off", None, 0.10),
    Case("default, producer sampled 1%", ParentBased(ALWAYS_ON), 0.01),
    Case("default, producer sampled 10%", ParentBased(ALWAYS_ON), 0.10),
    Case("100%", ALWAYS_ON, 0.10),
)


def topic(sampled: float) -> str:
    return f"bench.traced-{sampled:.0%}".replace("%", "pct")
