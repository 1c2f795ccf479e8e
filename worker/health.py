"""/livez, /readyz and /metrics on the health port (aiohttp).

Liveness answers "is this process making progress?" only: the event loop answers the request
and the fetch loop beat within ``stall_seconds`` (it beats while partitions are paused, too).
It never looks at Kafka, PostgreSQL or the ERP, so an outage of theirs never restarts pods.
Readiness answers "should this replica count?": joined the group, PostgreSQL reachable, and
not draining. It answers JSON: ``ready``, ``detail`` (why not, or "ready") and the worker's
details (e.g. ``missing_topics``), which inform and never decide readiness.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

Check = Callable[[], Awaitable[tuple[bool, str]]]


class HealthServer:
    def __init__(
        self,
        *,
        heartbeat: Callable[[], float],
        readiness: Check,
        stall_seconds: float,
        registry: CollectorRegistry = REGISTRY,
        clock: Callable[[], float] = time.monotonic,
        details: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._heartbeat = heartbeat
        self._readiness = readiness
        self._details = details
        self._stall_seconds = stall_seconds
        self._registry = registry
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self.port = 0
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._app = app

    async def start(self, host: str, port: int) -> None:
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        self._runner = runner
        for address in runner.addresses:
            self.port = int(address[1])
            break

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _livez(self, _request: web.Request) -> web.Response:
        silence = self._clock() - self._heartbeat()
        if silence > self._stall_seconds:
            return web.Response(status=503, text=f"fetch loop stalled for {silence:.0f}s\n")
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, detail = await self._readiness()
        body = {"ready": ready, "detail": detail}
        if self._details is not None:
            body.update(self._details())
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
