"""A small TCP fault proxy for tests: drop, reset, delay and blackhole connections.

There is no toxiproxy binary on the machine (``shared/ENVIRONMENT.md``, "Faults"), so this is
the tool: one asyncio program, no dependencies. It listens on ``listen`` and pipes every
accepted connection to ``upstream``, byte for byte, unless a fault is set:

``delay(seconds)``
    every chunk, in both directions, is held this long before it is passed on (order kept:
    each direction is a FIFO pipe), e.g. a slow WAN link.
``blackhole(True)``
    bytes are read and thrown away in both directions and new connections are accepted but
    never connected upstream: the peer sees a silent network partition (no FIN, no RST) until
    its own timeouts fire. ``blackhole(False)`` ends it; connections opened during the
    blackhole stay dead (their bytes are gone), as after a real partition.
``reset()``
    one shot: every open connection is aborted with a TCP RST on both sides (``SO_LINGER``
    0), like a firewall or load balancer dropping its state table.
``drop(True)``
    new connections are closed at once (accept, then FIN) and open ones are closed on their
    next chunk: connections keep dropping until ``drop(False)``.

Faults can be combined; ``heal()`` clears them all. ``stats`` counts connections accepted,
reset and dropped, and bytes passed. The proxy runs inside a caller's event loop
(:meth:`FaultProxy.start`) or, for synchronous tests, on its own thread
(:class:`ThreadedFaultProxy`, every method thread-safe).

Kafka clients discover brokers through metadata: a proxy in front of a broker only sees the
traffic if the broker *advertises* the proxy's address — give the broker a listener whose
advertised address is the proxy (see ``tests/chaos/test_broker_faults.py``), otherwise the
client connects past the proxy after its first metadata request.

Command line (manual use): ``python -m tests.support.faultproxy LISTEN_PORT UPSTREAM_HOST:PORT``
then type ``delay 0.5``, ``blackhole on|off``, ``reset``, ``drop on|off``, ``heal`` or
``stats`` on stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")
CHUNK = 64 * 1024


@dataclass
class ProxyStats:
    accepted: int = 0
    reset: int = 0
    dropped: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client side, the upstream side, two pipes."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]

    def abort(self) -> None:
        for writer in self.writers():
            _abort(writer)
        for task in self.tasks:
            task.cancel()

    def close(self) -> None:
        for writer in self.writers():
            writer.close()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """A TCP proxy ``listen`` → ``upstream`` with injectable faults (see the module doc)."""

    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.upstream = upstream
        self.listen = listen
        self.port = 0
        self.stats = ProxyStats()
        self._delay = 0.0
        self._blackhole = False
        self._drop = False
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        #: Connection handlers still running (stop() ends and awaits them: a handler left
        #: pending is destroyed with its loop, which is an error under warnings-as-errors).
        self._handlers: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, *self.listen)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for link in list(self._links):
                link.abort()
            handlers = [task for task in self._handlers if task is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    @property
    def address(self) -> str:
        return f"{self.listen[0]}:{self.port}"

    @property
    def connections(self) -> int:
        return len(self._links)

    # -- faults ---------------------------------------------------------------------------------
    def delay(self, seconds: float) -> None:
        self._delay = max(0.0, seconds)

    def blackhole(self, on: bool = True) -> None:
        self._blackhole = on

    def drop(self, on: bool = True) -> None:
        self._drop = on
        if on:
            for link in list(self._links):
                self._close(link)

    def reset(self) -> int:
        """RST every open connection now; returns how many."""
        links = list(self._links)
        for link in links:
            link.abort()
            self._links.discard(link)
        self.stats.reset += len(links)
        return len(links)

    def heal(self) -> None:
        self._delay, self._blackhole, self._drop = 0.0, False, False

    # -- plumbing -------------------------------------------------------------------------------
    def _close(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self.stats.dropped += 1
            link.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(handler)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        link = _Link(writer)
        if self._drop:
            self.stats.dropped += 1
            writer.close()
            return
        self._links.add(link)
        try:
            if self._blackhole:  # a partition: the connection goes nowhere, ever
                while await reader.read(CHUNK):
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _abort(writer)  # nothing listens upstream: the client sees a reset
                return
            link.upstream = up_writer
            link.tasks = [
                asyncio.create_task(self._pipe(link, reader, up_writer, up=True)),
                asyncio.create_task(self._pipe(link, up_reader, writer, up=False)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            if link in self._links:
                self._links.discard(link)
                link.close()

    async def _pipe(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        """Copy one direction; chunks wait ``delay`` each in a FIFO so order is kept."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                if self._drop:
                    self._close(link)
                    return
                if self._blackhole:
                    continue  # swallowed
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                queue.put_nowait((loop.time() + self._delay, data))
                if not data:
                    await sender
                    return
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(BaseException):
                await sender


class ThreadedFaultProxy:
    """A :class:`FaultProxy` on its own thread and event loop, for synchronous tests."""

    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.proxy = FaultProxy(upstream, listen)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> int:
        self._thread.start()
        return self._call(self.proxy.start())

    def stop(self) -> None:
        self._call(self.proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def _sync(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)

        return self._call(run())

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def address(self) -> str:
        return self.proxy.address

    @property
    def stats(self) -> ProxyStats:
        return self.proxy.stats

    def delay(self, seconds: float) -> None:
        self._sync(self.proxy.delay, seconds)

    def blackhole(self, on: bool = True) -> None:
        self._sync(self.proxy.blackhole, on)

    def drop(self, on: bool = True) -> None:
        self._sync(self.proxy.drop, on)

    def reset(self) -> int:
        return int(self._sync(self.proxy.reset))

    def heal(self) -> None:
        self._sync(self.proxy.heal)


async def _main(listen_port: int, upstream: str) -> None:  # pragma: no cover - manual tool
    host, _, port = upstream.rpartition(":")
    proxy = FaultProxy((host, int(port)), ("127.0.0.1", listen_port))
    await proxy.start()
    print(f"proxying {proxy.address} -> {upstream}", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command, *args = line.split() or [""]
        on = bool(args) and args[0] in ("on", "1", "true")
        if command == "delay":
            proxy.delay(float(args[0]))
        elif command == "blackhole":
            proxy.blackhole(on)
        elif command == "drop":
            proxy.drop(on)
        elif command == "reset":
            print(f"reset {proxy.reset()} connection(s)", flush=True)
        elif command == "heal":
            proxy.heal()
        print(proxy.stats, flush=True)
    await proxy.stop()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(_main(int(sys.argv[1]), sys.argv[2]))
