"""Broker connection faults: a TCP fault proxy between the worker and Kafka.

A Kafka client finds brokers through metadata, so a proxy in front of the session's broker
would be bypassed after the first request. This scenario runs a broker of its own with two
listeners: ``PLAINTEXT`` (direct; the test's producer and admin use it) and ``EXTERNAL``,
whose *advertised* address is the proxy (:mod:`tests.support.faultproxy`). The worker is
given the proxy as its bootstrap, so every connection it opens — bootstrap, group
coordinator, partition leader — runs through the proxy.

Faults, with traffic throughout: latency on every chunk; connection resets (RST); dropped
connections; a blackhole (a silent partition) longer than the session timeout, so the
member is evicted from its group and must rejoin.

Then the independent check: exact ERP stock, no duplicate document, every order one shipment,
every invalid message an exception record.

Regressions this scenario found (each reproduced below in seconds):

1. **A reset connection killed the consumer for good under uvloop.** Writing to a connection
   the broker had already closed raises ``RuntimeError`` from uvloop's transport (asyncio's
   does not raise); aiokafka only turns ``OSError`` into a connection error, so the group
   coordinator's task died ("Unexpected error during coordination") and the worker exited
   (aio-libs/aiokafka#1038). ``worker.kafka`` now maps that error to
   ``KafkaConnectionError``, which aiokafka retries.
2. **Stopping a consumer whose fetch waited out a broken connection raised
   ``CancelledError``** (aio-libs/aiokafka#647), which hid the original error in the crash
   log and skipped closing the client's connections. ``worker.kafka.stop_client`` absorbs it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from devstack.kafka import KafkaBroker
from devstack.postgres import run_sync
from tests.chaos.harness import ChaosRun, free_ports
from tests.chaos.report import ChaosReport
from tests.conftest import _create_topics
from tests.support.faultproxy import ThreadedFaultProxy
from worker.kafka import stop_client


@dataclass
class ProxiedBroker:
    direct: str  # the test's own clients
    proxy: ThreadedFaultProxy  # the worker's way in


@pytest.fixture(scope="module")
def proxied_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedBroker]:
    external, port, controller = free_ports(3)
    proxy = ThreadedFaultProxy(("127.0.0.1", external))
    proxy.start()
    broker = KafkaBroker(
        tmp_path_factory.mktemp("proxied") / "kafka",
        port=port,
        controller_port=controller,
        heap="384m",
        extra_config={
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},"
            f"EXTERNAL://127.0.0.1:{external}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},"
            f"EXTERNAL://127.0.0.1:{proxy.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
            "EXTERNAL:PLAINTEXT",
        },
    )
    try:
        broker.start()
        yield ProxiedBroker(broker.bootstrap, proxy)
    finally:
        broker.stop()
        proxy.stop()


def broker_faults(
    kafka: ProxiedBroker,
    database_url: str,
    unique: str,
    report: ChaosReport,
    *,
    rounds: int,
    blackhole: float,
    batch: int,
    scenario: str,
) -> None:
    proxy = kafka.proxy
    with ChaosRun(
        bootstrap=kafka.direct,
        database_url=database_url,
        unique=unique,
        worker_bootstrap=proxy.address,
    ) as run:
        run_sync(lambda: _create_topics(kafka.direct, run.topics, 6))
        worker = run.worker("a").start()
        worker.wait_ready(90)
        assert proxy.stats.accepted > 0, "the worker does not go through the proxy"
        resets = 0
        for _ in range(rounds):
            run.produce_stock(batch)
            run.produce_dispatches(max(2, batch // 40))
            proxy.delay(0.2)  # latency
            time.sleep(3)
            proxy.delay(0)
            resets += proxy.reset()  # every connection reset
            time.sleep(2)
            proxy.drop()  # connections dropped, new ones closed at once
            run.produce_stock(batch // 2)
            time.sleep(3)
            proxy.drop(False)
            time.sleep(2)
            proxy.blackhole()  # a silent partition, longer than the session timeout
            run.produce_stock(batch // 2)
            time.sleep(blackhole)
            proxy.heal()
            resets += proxy.reset()  # connections opened into the blackhole are dead
            run.fault_over()
            time.sleep(2)
        stats = proxy.stats
        faults = (
            f"{rounds}x (200 ms latency 3 s, reset, drops 3 s, blackhole {blackhole:g} s): "
            f"{resets} resets, {stats.dropped} drops"
        )
        assert worker.alive, worker.tail()
        run.finish(report, scenario, faults, timeout=240)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_latency_resets_drops_and_a_partition_between_worker_and_broker_lose_nothing(
    proxied_broker: ProxiedBroker,
    database_url: str,
    unique: str,
    chaos_report: ChaosReport,
) -> None:
    broker_faults(proxied_broker, database_url, unique, chaos_report,
                  rounds=4, blackhole=12, batch=600, scenario="broker faults")  # fmt: skip


@pytest.mark.timeout(300)
def test_one_round_of_broker_connection_faults_loses_nothing(
    proxied_broker: ProxiedBroker,
    database_url: str,
    unique: str,
    chaos_report: ChaosReport,
) -> None:
    broker_faults(proxied_broker, database_url, unique, chaos_report,
                  rounds=1, blackhole=8, batch=200, scenario="broker faults (short)")  # fmt: skip


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@pytest.mark.timeout(60)
def test_a_write_on_a_connection_the_broker_closed_is_a_connection_error_under_uvloop(
    proxied_broker: ProxiedBroker,
) -> None:
    """Regression 1: the error aiokafka retries, not a ``RuntimeError`` that kills the task."""

    async def main() -> tuple[type[BaseException], bool]:
        host, port = _host_port(proxied_broker.direct)
        conn = await create_conn(host, port)
        assert conn._writer is not None
        assert conn._read_task is not None
        # The state the fault suite hit: the transport is closed, but aiokafka's reader has not
        # noticed yet (it would close the connection first). Hold the reader back to get there
        # every time.
        conn._read_task.cancel()
        conn._writer.transport.abort()
        await anyio.sleep(0.05)  # uvloop closes the handle on its next turn
        try:
            await conn.send(MetadataRequest([]))
        except Exception as exc:
            return type(exc), conn.connected()
        finally:
            conn.close()
        raise AssertionError("a send on a closed transport succeeded")

    error, connected = anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    assert error is KafkaConnectionError
    assert not connected


@pytest.mark.timeout(90)
def test_stopping_a_consumer_whose_fetch_waits_out_a_broken_connection_is_clean(
    proxied_broker: ProxiedBroker, unique: str
) -> None:
    """Regression 2: no ``CancelledError`` out of the stop, and it does not wait out the backoff."""
    topic = f"{unique}.stop"
    run_sync(lambda: _create_topics(proxied_broker.direct, (topic,), 1))
    proxy = proxied_broker.proxy

    async def main() -> float:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=proxy.address, retry_backoff_ms=60_000, request_timeout_ms=5_000
        )
        await consumer.start()
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.getmany(timeout_ms=500)  # fetching
        proxy.drop()  # every fetch from now fails and sleeps in the 60 s retry backoff
        try:
            await anyio.sleep(2)
            started = time.monotonic()
            await stop_client(consumer, 20)
            return time.monotonic() - started
        finally:
            proxy.drop(False)

    assert anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True}) < 15
