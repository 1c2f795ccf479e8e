"""`skuflow run` exports its spans over real OTLP/HTTP, configured only by ``OTEL_*`` variables.

A local receiver (aiohttp) takes ``POST /v1/traces`` and decodes the protobuf payload with
``opentelemetry-proto``; the test produces one message whose ``traceparent`` names a producer
span and finds the worker's ``process`` span in that trace, as its child, with the resource
attributes an SRE filters on (service, version, instance, Kubernetes pod from the downward API).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.stack import produce

pytestmark = [pytest.mark.integration]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP trace endpoint that keeps what it was sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        self.content_types.add(request.content_type)
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.requests.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out: list[tuple[dict[str, Any], Any]] = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    out.extend((resource, span) for span in scope.spans)
        return out


@pytest.mark.timeout(120)
def test_skuflow_run_exports_its_process_span_over_otlp_http(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: Any,
    tmp_path: Path,
) -> None:
    stock, dispatch, dlq = f"{unique}.stock", f"{unique}.dispatch", f"{unique}.dlq"
    create_topics(stock, dispatch, dlq)

    async def main() -> list[tuple[dict[str, Any], Any]]:
        receiver = Receiver()
        await receiver.start()
        env = {
            **os.environ,
            "SKUFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "SKUFLOW_KAFKA_GROUP": f"{unique}.group",
            "SKUFLOW_DATABASE_URL": database_url,
            "SKUFLOW_TOPICS__STOCK": stock,
            "SKUFLOW_TOPICS__DISPATCH": dispatch,
            "SKUFLOW_TOPICS__DEAD_LETTER": dlq,
            "SKUFLOW_HEALTH_PORT": "0",
            "SKUFLOW_LOG_FORMAT": "json",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "K8S_POD_NAME": "skuflow-7d9c-abcde",
            "K8S_NAMESPACE_NAME": "erp-sync",
        }
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(  # noqa: ASYNC220  # started once, polled without blocking
            [sys.executable, "-m", "skuflow.cli", "run", "--class", "normal"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            headers = [("traceparent", f"00-{TRACE_ID}-{PRODUCER_SPAN}-01".encode())]
            await produce(
                kafka_bootstrap, stock, [(b"SKU-1", b'{"type": "stock.adjusted"')], headers
            )
            deadline = time.monotonic() + 60
            while not _process_span(receiver.spans(), stock):
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no process span exported"
                await anyio.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                while worker.poll() is None:
                    await anyio.sleep(0.1)
            log.close()
            await receiver.stop()
        assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
        assert receiver.content_types == {"application/x-protobuf"}
        return receiver.spans()

    spans = anyio.run(main)
    found = _process_span(spans, stock)
    assert found is not None
    resource, span = found
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == PRODUCER_SPAN
    assert span.kind == span.SPAN_KIND_CONSUMER
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["messaging.system"].string_value == "kafka"
    assert attributes["messaging.destination.name"].string_value == stock
    assert attributes["error.type"].string_value == "undecodable"
    assert span.status.code == span.status.STATUS_CODE_ERROR
    assert resource["service.name"] == "skuflow"
    assert resource["service.version"]
    assert resource["service.instance.id"]
    assert resource["k8s.pod.name"] == "skuflow-7d9c-abcde"
    assert resource["k8s.namespace.name"] == "erp-sync"


def _process_span(
    spans: list[tuple[dict[str, Any], Any]], topic: str
) -> tuple[dict[str, Any], Any] | None:
    for resource, span in spans:
        if span.name == f"process {topic}":
            return resource, span
    return None
