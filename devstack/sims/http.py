"""The one way a simulator serves HTTP on loopback: an aiohttp app on a free port."""

from __future__ import annotations

from aiohttp import web


class LocalServer:
    """Serves ``app`` on ``host:port`` (0: a free port); ``base`` is its root URL once started."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.base = f"http://{bound_host}:{bound_port}"
        return self.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
