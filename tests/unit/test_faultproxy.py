"""The TCP fault proxy of the chaos suite, against an echo server on loopback (fast)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from tests.support.faultproxy import FaultProxy, ThreadedFaultProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def _proxied() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = FaultProxy(("127.0.0.1", port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
        server.close()
        await server.wait_closed()


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"ping")
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(4), 2)


def _run(test: Callable[[FaultProxy], Awaitable[None]]) -> None:
    async def main() -> None:
        async with _proxied() as proxy:
            await test(proxy)

    asyncio.run(main())


def test_bytes_pass_through_both_ways_and_are_counted() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        assert await _roundtrip(reader, writer) == b"ping"
        assert (proxy.stats.bytes_up, proxy.stats.bytes_down) == (4, 4)
        writer.close()

    _run(test)


def test_delay_holds_every_chunk_and_keeps_order() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        proxy.delay(0.1)
        started = time.monotonic()
        writer.write(b"ab")
        await writer.drain()
        writer.write(b"cd")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(4), 2) == b"abcd"
        assert time.monotonic() - started >= 0.2  # up and down, 0.1 s each
        writer.close()

    _run(test)


def test_reset_aborts_open_connections_and_new_ones_work() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        await _roundtrip(reader, writer)
        assert proxy.reset() == 1
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await _roundtrip(reader, writer)
        writer.close()
        reader, writer = await _connect(proxy)
        assert await _roundtrip(reader, writer) == b"ping"
        writer.close()

    _run(test)


def test_blackhole_swallows_bytes_silently_until_healed() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        proxy.blackhole()
        writer.write(b"ping")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.3)
        fresh_reader, fresh_writer = await _connect(proxy)  # accepted, goes nowhere
        fresh_writer.write(b"ping")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(fresh_reader.readexactly(4), 0.3)
        proxy.heal()
        healed_reader, healed_writer = await _connect(proxy)
        assert await _roundtrip(healed_reader, healed_writer) == b"ping"
        for w in (writer, fresh_writer, healed_writer):
            w.close()

    _run(test)


def test_drop_closes_open_and_new_connections() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        await _roundtrip(reader, writer)
        proxy.drop()
        assert await asyncio.wait_for(reader.read(10), 2) == b""
        new_reader, new_writer = await _connect(proxy)
        assert await asyncio.wait_for(new_reader.read(10), 2) == b""
        proxy.drop(False)
        healed_reader, healed_writer = await _connect(proxy)
        assert await _roundtrip(healed_reader, healed_writer) == b"ping"
        assert proxy.stats.dropped >= 2
        for w in (writer, new_writer, healed_writer):
            w.close()

    _run(test)


def test_unreachable_upstream_is_a_reset_for_the_client() -> None:
    async def main() -> None:
        proxy = FaultProxy(("127.0.0.1", 1))  # nothing listens on port 1
        await proxy.start()
        try:
            reader, writer = await _connect(proxy)
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await _roundtrip(reader, writer)
            writer.close()
        finally:
            await proxy.stop()

    asyncio.run(main())


def test_the_threaded_proxy_is_driven_from_synchronous_code() -> None:
    async def serve_and_probe(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await _roundtrip(reader, writer)
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        threaded = ThreadedFaultProxy(("127.0.0.1", server.sockets[0].getsockname()[1]))
        await asyncio.to_thread(threaded.start)
        try:
            assert await serve_and_probe(threaded.port) == b"ping"
            await asyncio.to_thread(threaded.delay, 0.05)
            assert await serve_and_probe(threaded.port) == b"ping"
            assert threaded.stats.accepted == 2
        finally:
            await asyncio.to_thread(threaded.stop)
            server.close()

    asyncio.run(main())
