"""Bad input: thousands of fuzzed payloads mixed into valid traffic, through the real worker.

``skuflow run`` (a child process) consumes a stock and a dispatch topic on the real broker,
keeps state in the real PostgreSQL and talks to the SAP B1 and SP-API simulators over HTTP. The
payloads come from :mod:`tests.chaos.fuzz` (hypothesis strategies read from the event structs,
fixed seed): truncated JSON, invalid UTF-8, wrong types, missing keys, oversized fields and
payloads, out-of-range quantities, unknown types, bad timestamps, U+0000, non-objects, deep
nesting, unknown SKUs / locations / orders / channels, and duplicates (same bytes, or same event
id with other content) of valid events, which share keys and partitions with the valid events.

The independent final check, against the ledger of what was produced (topic, partition and
offset of every record from the broker's acknowledgements):

- ERP stock per item and warehouse (the B1 simulator's ``/_sim/stock``) = opening + every valid
  adjustment, counted once; no ERP document key twice;
- every valid dispatch confirmation reached the SP-API simulator exactly once, nothing else did;
- the exception records cover exactly the invalid messages (matched by topic/partition/offset),
  each with a kind the payload may become; every invalid message has a dead letter naming it;
- the worker is alive, live and ready at the end, never logged a handler crash or a failed
  durable write, and drains with exit status 0.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from config.settings import DatabaseSettings, Secret, Settings
from devstack.postgres import run_sync
from skuflow.app import connect_database
from tests.chaos.fuzz import DEADLINE_KINDS, Catalogue, Payload, Traffic, by_case, traffic
from tests.chaos.harness import (
    OPENING,
    WAREHOUSES,
    Simulators,
    WorkerProcess,
    wait_until,
    write_config,
)
from tests.chaos.report import ChaosReport, ChaosRow
from worker.exceptions import ExceptionStore
from worker.messages import Message

pytestmark = [pytest.mark.scenario]

ALERTS = DEADLINE_KINDS
#: Topic limit for the oversized payloads (the worker's own limit is 1 MiB).
TOPIC_MAX_BYTES = 4 * 1024 * 1024
#: Log lines that mean bad input hurt the worker rather than becoming an exception.
CRASH_SIGNS = ("handler raised", "durable write failed", "Traceback", "CRITICAL")

Where = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class Produced:
    payload: Payload
    where: Where


async def _create_topics(bootstrap: str, names: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        configs = {"max.message.bytes": str(TOPIC_MAX_BYTES)}
        await admin.create_topics(
            [NewTopic(n, p, 1, topic_configs=configs) for n, p in names.items()],
            timeout_ms=30_000,
        )
        async with asyncio.timeout(30):
            while True:
                described = await admin.describe_topics(list(names))
                if all(
                    t["error_code"] == 0
                    and len(t["partitions"]) == names[t["topic"]]
                    and all(p["leader"] >= 0 for p in t["partitions"])
                    for t in described
                ):
                    return
                await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def _produce(bootstrap: str, topics: dict[str, str], plan: Traffic) -> list[Produced]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_request_size=TOPIC_MAX_BYTES,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topics[p.role], value=p.value, key=p.key) for p in plan.payloads
        ]
        acks = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [
        Produced(p, (ack.topic, ack.partition, ack.offset))
        for p, ack in zip(plan.payloads, acks, strict=True)
    ]


async def _dead_letters(bootstrap: str, topic: str) -> Counter[Where]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=TOPIC_MAX_BYTES,
        fetch_max_bytes=TOPIC_MAX_BYTES * 4,
    )
    await consumer.start()
    origins: Counter[Where] = Counter()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for record in batch.get(tp, []):
                headers = {k: v.decode() for k, v in record.headers}
                origins[
                    (
                        headers["skuflow.original.topic"],
                        int(headers["skuflow.original.partition"]),
                        int(headers["skuflow.original.offset"]),
                    )
                ] += 1
    finally:
        await consumer.stop()
    return origins


async def _db(database_url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        exists = await conn.fetchval("SELECT to_regclass('skuflow_exceptions') IS NOT NULL")
        return list(await conn.fetch(sql)) if exists else []
    finally:
        await conn.close()


def _query(database_url: str, sql: str) -> list[asyncpg.Record]:
    return run_sync(lambda: _db(database_url, sql))


def _probe(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def run_bad_input(
    *,
    bootstrap: str,
    database_url: str,
    unique: str,
    tmp_path: Path,
    report: ChaosReport,
    create: Callable[[dict[str, int]], None],
    fuzzed: int,
    valid_stock: int,
    orders: int,
    seed: int,
    settle_timeout: float,
) -> None:
    items = [f"FZ{i:03d}" for i in range(40)]
    order_ids = [f"171-{seed:03d}{i:04d}-{i:07d}" for i in range(orders)]
    catalogue = Catalogue(items, dict(WAREHOUSES), order_ids)
    started = time.monotonic()
    plan = traffic(
        catalogue, fuzzed=fuzzed, valid_stock=valid_stock, seed=seed, oversized_payloads=2
    )
    generated = time.monotonic() - started
    topics = {"stock": f"{unique}.stock", "dispatch": f"{unique}.dispatch"}
    dead_letter = f"{unique}.dlq"
    create({topics["stock"]: 6, topics["dispatch"]: 6, dead_letter: 1})

    sims = Simulators(items)
    sims.start()
    worker: WorkerProcess | None = None
    try:
        ship_by = datetime.now(UTC) + timedelta(days=3)
        sims.add_orders([(order, ship_by) for order in order_ids])
        sims.spapi_faults(throttle_rate=200.0, burst=200)
        config = write_config(
            tmp_path / f"{unique}.toml",
            bootstrap=bootstrap,
            database_url=database_url,
            unique=unique,
            sims=sims,
            spapi_rate=200.0,
            # a handler that raises would be retried to `retries_exhausted` quickly (and the
            # log check below would still fail the test)
            engine={"max_attempts": 3, "retry_max_seconds": 1.0},
        )
        worker = WorkerProcess("fuzz", config).start()
        worker.wait_ready(90)
        produced = run_sync(lambda: _produce(bootstrap, topics, plan))
        produce_done = time.monotonic()

        invalid = {p.where: p.payload for p in produced if p.payload.invalid}
        valid_stock_events = {p.payload.value for p in produced if p.payload.case == "valid"}
        stock_lines = sum(
            1 for p in produced if p.payload.case == "valid" and p.payload.role == "stock"
        )
        exceptions_sql = 'SELECT kind, reason, topic, partition, "offset" FROM skuflow_exceptions'
        lines_sql = (
            "SELECT count(*) AS n FROM skuflow_stock_lines WHERE state IN ('posted', 'settled')"
        )

        def settled() -> bool:
            assert worker is not None
            assert worker.alive, f"the worker died: {worker.tail()}"
            rows = _query(database_url, exceptions_sql)
            covered = {(r["topic"], r["partition"], r["offset"]) for r in rows}
            lines = _query(database_url, lines_sql)
            done = bool(lines) and lines[0]["n"] >= stock_lines
            return covered >= invalid.keys() and done and len(sims.confirmations()) >= orders

        wait_until(settled, settle_timeout, "every message applied or an exception", poll=1.0)
        time.sleep(1.5)  # anything late (a second document, a second confirmation) shows now
        settle_s = time.monotonic() - produce_done

        # --- the worker survived ---
        assert worker.alive
        assert _probe(worker.port, "/livez") == 200
        assert _probe(worker.port, "/readyz") == 200

        # --- exceptions: exactly the invalid messages, each with a kind it may become ---
        rows = _query(database_url, exceptions_sql)
        kinds_at: dict[Where, set[str]] = defaultdict(set)
        for r in rows:
            kinds_at[(r["topic"], r["partition"], r["offset"])].add(r["kind"])
        unexpected = {w: k for w, k in kinds_at.items() if w not in invalid}
        assert not unexpected, f"valid messages became exceptions: {list(unexpected.items())[:5]}"
        missing = [(w, p.case) for w, p in invalid.items() if w not in kinds_at]
        assert not missing, f"invalid messages without an exception: {missing[:5]}"
        wrong_kind = [
            (p.case, sorted(kinds_at[w]), sorted(p.kinds), p.value[:120])
            for w, p in invalid.items()
            if not (kinds_at[w] <= p.kinds and kinds_at[w] - ALERTS)
        ]
        assert not wrong_kind, f"unexpected exception kinds: {wrong_kind[:5]}"

        # --- dead letters: one per invalid message, naming it ---
        letters = run_sync(lambda: _dead_letters(bootstrap, dead_letter))
        assert set(letters) == set(invalid), (
            f"{len(set(invalid) - set(letters))} invalid without a dead letter, "
            f"{len(set(letters) - set(invalid))} dead letters of valid messages"
        )
        repeated_letters = sum(count - 1 for count in letters.values())

        # --- the systems of record: exactly the valid traffic, once ---
        stock = sims.b1_stock()
        wrong_stock = [
            (
                item,
                code,
                OPENING + plan.expected_stock.get((item, code), 0),
                stock.get((item, code)),
            )
            for item in items
            for code in WAREHOUSES.values()
            if stock.get((item, code))
            != Decimal(OPENING + plan.expected_stock.get((item, code), 0))
        ]
        keys = Counter(sims.b1_document_keys())
        duplicate_documents = sum(count - 1 for count in keys.values())
        confirmed = Counter(c["order_id"] for c in sims.confirmations())
        missing_orders = [o for o in order_ids if confirmed[o] == 0]
        duplicate_orders = [o for o, count in confirmed.items() if count > 1]
        strangers = [o for o in confirmed if o not in order_ids]
        crash_signs = {sign: worker.count(sign) for sign in CRASH_SIGNS if worker.count(sign)}

        lost = len(wrong_stock) + len(missing_orders) + len(missing) + len(unexpected)
        duplicated = duplicate_documents + len(duplicate_orders) + len(strangers)
        cases = dict(by_case(plan.payloads))
        bad = sum(1 for p in plan.payloads if p.invalid)
        print(
            f"bad input: {len(plan.payloads):,} records ({bad:,} invalid, "
            f"{cases.get('duplicate', 0)} duplicates, {len(valid_stock_events):,} valid) "
            f"generated in {generated:.1f}s, settled {settle_s:.1f}s after the last ack; "
            f"{len(rows):,} exception records ({Counter(r['kind'] for r in rows)}); "
            f"{len(keys)} ERP documents; {sum(confirmed.values())} confirmations; "
            f"{repeated_letters} repeated dead letters; cases {cases}"
        )
        report.add(
            ChaosRow(
                scenario=f"bad input: {fuzzed:,} fuzzed payloads in valid traffic",
                erp=sims.erp,
                events=len(plan.payloads),
                faults=f"{bad:,} invalid + {cases.get('duplicate', 0)} duplicates "
                f"({len(cases) - 2} kinds of bad input)",
                lost=lost,
                duplicated=duplicated,
                exceptions=len(invalid),
                recovery_s=settle_s,
            )
        )
        assert not wrong_stock, f"ERP stock differs from the valid adjustments: {wrong_stock[:5]}"
        assert duplicate_documents == 0, keys.most_common(3)
        assert not missing_orders, missing_orders[:5]
        assert not duplicate_orders, duplicate_orders[:5]
        assert not strangers, strangers[:5]
        assert not crash_signs, f"{crash_signs}: {worker.tail()}"

        assert worker.terminate() == 0, "the worker did not drain cleanly"
    except BaseException:
        if worker is not None:
            print(f"===== worker log tail =====\n{worker.tail()}")
        raise
    finally:
        if worker is not None:
            worker.kill()
        sims.stop()


@pytest.fixture
def create(kafka_bootstrap: str) -> Callable[[dict[str, int]], None]:
    def go(names: dict[str, int]) -> None:
        run_sync(lambda: _create_topics(kafka_bootstrap, names))

    return go


@pytest.mark.timeout(240)
def test_fuzzed_payloads_in_valid_traffic_short(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    tmp_path: Path,
    chaos_report: ChaosReport,
    create: Callable[[dict[str, int]], None],
) -> None:
    run_bad_input(
        bootstrap=kafka_bootstrap,
        database_url=database_url,
        unique=unique,
        tmp_path=tmp_path,
        report=chaos_report,
        create=create,
        fuzzed=1_500,
        valid_stock=600,
        orders=20,
        seed=8,
        settle_timeout=120,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fuzzed_payloads_in_valid_traffic_full(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    tmp_path: Path,
    chaos_report: ChaosReport,
    create: Callable[[dict[str, int]], None],
) -> None:
    run_bad_input(
        bootstrap=kafka_bootstrap,
        database_url=database_url,
        unique=unique,
        tmp_path=tmp_path,
        report=chaos_report,
        create=create,
        fuzzed=10_000,
        valid_stock=3_000,
        orders=60,
        seed=10,
        settle_timeout=600,
    )


@pytest.mark.timeout(60)
def test_an_exception_whose_reason_echoes_a_nul_is_recorded(database_url: str) -> None:
    """Regression: msgspec quotes a bad ``type`` (``Invalid value 'a\\x00b'``); PostgreSQL text
    refuses U+0000, so the record was unwritable and the engine retried it for ever."""

    async def record() -> tuple[str, str | None]:
        settings = Settings(database=DatabaseSettings(url=Secret(database_url)))
        pool = await connect_database(settings, attempts=1)
        try:
            store = ExceptionStore(pool)
            headers = [("h\x00", b"v")]
            message = Message(
                topic="t", partition=0, offset=1, key=b"k", value=b"{}", headers=headers,
                timestamp_ms=0,
            )  # fmt: skip
            row = await store.record(
                message, kind="unknown_type", reason="Invalid value 'a\x00b'", event_id="e\x00"
            )
            found = await store.get(row)
            assert found is not None
            return found.reason, found.event_id
        finally:
            await pool.close()

    reason, event_id = run_sync(record)
    assert reason == "Invalid value 'a\\u0000b'"
    assert event_id == "e\\u0000"
