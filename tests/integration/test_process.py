"""Real worker processes: SIGKILL crashes, the offset map after a crash, SIGTERM drains."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import asyncpg
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from tests.support.recording import TABLE, encode
from tests.support.stack import produce
from worker.offsets import OffsetMap

pytestmark = [pytest.mark.integration]

CreateTopics = Callable[..., None]
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A recording worker process; its log is printed if the test fails."""
    log = ROOT / ".cache" / "test-logs" / f"{args[3]}-{args[4]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.recording_worker", *args],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        except BaseException:
            print(log.read_text(errors="replace")[-5000:])
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def _query(database_url: str, sql: str) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(TABLE)
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return anyio.run(go)


def _count(database_url: str, sql: str) -> int:
    return int(_query(database_url, sql)[0][0])


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, str]]:
    async def go() -> dict[int, tuple[int, str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except GroupCoordinatorNotAvailableError:
            return {}  # the group's coordinator is still being elected: nothing committed yet
        finally:
            await admin.close()
        return {
            tp.partition: (meta.offset, meta.metadata)
            for tp, meta in offsets.items()
            if isinstance(tp, TopicPartition) and tp.topic == topic
        }

    return anyio.run(go)


def _produce(bootstrap: str, topic: str, events: list[tuple[str, int]]) -> None:
    anyio.run(produce, bootstrap, topic, [(s.encode(), encode(s, q)) for s, q in events])


@pytest.mark.timeout(240)
def test_a_worker_killed_mid_run_and_restarted_handles_every_event_at_least_once_in_order(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=6)
    events = [(f"SKU-{i % 500:03d}", i // 500) for i in range(20_000)]
    _produce(kafka_bootstrap, topic, events)
    common = (kafka_bootstrap, database_url, group, topic)
    handled = "SELECT count(*) FROM test_handled"

    with worker_process(*common, "a", "--latency", "0.004") as first:
        _wait(lambda: _count(database_url, handled) > 4_000, 90, "progress before the kill")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    with worker_process(*common, "b", "--latency", "0.001") as second:
        distinct = "SELECT count(DISTINCT (sku, seq)) FROM test_handled"
        _wait(lambda: _count(database_url, distinct) == len(events), 120, "every event")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0

    rows = _query(database_url, "SELECT sku, seq FROM test_handled ORDER BY at, ctid")
    first_seen: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for row in rows:
        if (row["sku"], row["seq"]) not in seen:
            seen.add((row["sku"], row["seq"]))
            first_seen[row["sku"]].append(row["seq"])
    assert seen == set(events)
    for sku, seqs in first_seen.items():
        assert seqs == sorted(seqs), f"{sku}: first effects out of order"


@pytest.mark.timeout(180)
def test_after_a_crash_behind_a_slow_event_only_the_slow_event_is_redone(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=1)
    events = [("SLOW", 0), *[(f"SKU-{i % 300:03d}", i // 300) for i in range(3_000)]]
    _produce(kafka_bootstrap, topic, events)
    common = (kafka_bootstrap, database_url, group, topic)

    def map_covers_everything_after_the_slow_event() -> bool:
        committed = _committed(kafka_bootstrap, group, topic).get(0)
        if committed is None or not committed[1]:
            return False
        offset_map = OffsetMap.decode(committed[1])
        return committed[0] == 0 and len(offset_map) == 3_000

    with worker_process(*common, "a", "--slow-sku", "SLOW") as first:
        _wait(map_covers_everything_after_the_slow_event, 90, "the offset map in the commit")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert _count(database_url, "SELECT count(*) FROM test_handled") == 3_000

    with worker_process(*common, "b") as second:
        _wait(
            lambda: _count(database_url, "SELECT count(*) FROM test_handled WHERE sku='SLOW'") == 1,
            60,
            "the slow event redone",
        )
        time.sleep(1.0)  # give a wrongly replaying worker time to redo finished events
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    redone = _query(database_url, "SELECT sku FROM test_handled WHERE worker = 'b'")
    assert [r["sku"] for r in redone] == ["SLOW"]
    assert _committed(kafka_bootstrap, group, topic)[0] == (3_001, "")


@pytest.mark.timeout(180)
def test_sigterm_drains_in_flight_work_commits_and_exits_zero(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=3)
    events = [(f"SKU-{i:04d}", 0) for i in range(3_000)]
    _produce(kafka_bootstrap, topic, events)
    common = (kafka_bootstrap, database_url, group, topic)

    with worker_process(*common, "a", "--latency", "0.4", "--max-in-flight", "64") as first:
        _wait(lambda: _count(database_url, "SELECT count(*) FROM test_handled") > 100, 60, "work")
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
    drained = _count(database_url, "SELECT count(*) FROM test_handled")

    with worker_process(*common, "b") as second:
        distinct = "SELECT count(DISTINCT (sku, seq)) FROM test_handled"
        _wait(lambda: _count(database_url, distinct) == len(events), 90, "the rest")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    # Everything the first worker finished was committed: nothing is handled twice.
    assert _count(database_url, "SELECT count(*) FROM test_handled") == len(events)
    assert drained < len(events)


@pytest.mark.timeout(120)
def test_a_second_signal_exits_at_once_without_waiting_for_the_drain(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=1)
    _produce(kafka_bootstrap, topic, [("STUCK", 0)])
    common = (kafka_bootstrap, database_url, group, topic)
    with worker_process(*common, "a", "--slow-sku", "STUCK", "--drain-timeout", "60") as proc:
        _wait(lambda: _committed(kafka_bootstrap, group, topic).get(0) == (0, ""), 60, "join")
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert proc.poll() is None, "the first signal drains (the stuck event holds it)"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 130
        assert time.monotonic() - started < 10
    # The stuck event was never completed, so it was never committed: nothing is lost.
    assert _committed(kafka_bootstrap, group, topic)[0] == (0, "")
