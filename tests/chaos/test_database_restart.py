"""Database: PostgreSQL stopped and started again mid-run, traffic flowing meanwhile.

The scenario has a PostgreSQL server of its own (the session's is shared by other tests).
While it is down the worker must report not-ready (``/readyz`` 503), commit no offset past
work that could not be made durable (the committed offsets stand still), keep its process
alive, and once the server is back recover by itself and lose nothing.

Then the independent check: exact ERP stock, no duplicate document, every order one shipment,
every invalid message an exception record.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devstack.postgres import EmbeddedPostgres, create_database, run_sync
from tests.chaos.harness import ChaosRun, wait_until
from tests.chaos.report import ChaosReport

CreateTopics = Callable[..., None]


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="skuflow-pg-chaos-"))
    server = EmbeddedPostgres(root / "pgdata", keep_data=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    async def read() -> dict[tuple[str, int], int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {
            (tp.topic, tp.partition): meta.offset
            for tp, meta in offsets.items()
            if isinstance(tp, TopicPartition)
        }

    return run_sync(read)


def database_restart(
    kafka_bootstrap: str,
    server: EmbeddedPostgres,
    unique: str,
    create_topics: CreateTopics,
    report: ChaosReport,
    *,
    down: float,
    restarts: int,
    batch: int,
    scenario: str,
) -> None:
    database_url = create_database(server.url, "chaos")
    with ChaosRun(bootstrap=kafka_bootstrap, database_url=database_url, unique=unique) as run:
        create_topics(*run.topics)
        worker = run.worker("a").start()
        worker.wait_ready(90)
        group = f"{unique}.group"
        not_ready = 0
        for _ in range(restarts):
            run.produce_stock(batch)
            run.produce_dispatches(max(2, batch // 40))
            time.sleep(1.0)
            server.stop()
            wait_until(lambda: worker.readyz() == 503, 15, "/readyz 503 while PostgreSQL is down")
            not_ready += 1
            time.sleep(1.5)  # work that was durable before the stop may still commit
            frozen = committed(kafka_bootstrap, group)
            run.produce_stock(batch)  # cannot be staged while the database is down
            time.sleep(max(0.0, down - 2.5))
            assert committed(kafka_bootstrap, group) == frozen, "committed while PG was down"
            assert worker.alive, worker.tail()
            server.start()
            run.fault_over()
            worker.wait_ready(60)
        faults = f"PostgreSQL stopped {restarts}x for {down:g} s ({not_ready}x not ready)"
        run.finish(report, scenario, faults)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_postgresql_restarted_mid_run_the_worker_waits_not_ready_and_loses_nothing(
    kafka_bootstrap: str,
    own_postgres: EmbeddedPostgres,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    database_restart(kafka_bootstrap, own_postgres, unique, create_topics, chaos_report,
                     down=30, restarts=3, batch=800, scenario="database restart")  # fmt: skip


@pytest.mark.timeout(300)
def test_postgresql_restarted_once_the_worker_recovers_and_loses_nothing(
    kafka_bootstrap: str,
    own_postgres: EmbeddedPostgres,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    database_restart(kafka_bootstrap, own_postgres, unique, create_topics, chaos_report,
                     down=6, restarts=1, batch=200,
                     scenario="database restart (short)")  # fmt: skip
