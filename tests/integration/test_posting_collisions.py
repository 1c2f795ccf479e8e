"""B1's -2035 ("This entry already exists") through the real posting path: real PostgreSQL, the
real stock handler and poster, the B1 connector over HTTP against the Service Layer simulator.

-2035 names no line, so it is never bisected: skuflow looks its document up by the posting's
key (found: posted, never posted again), else retries with the lock backoff a bounded number
of times, then refuses the document's movements under one ``erp_rejected`` exception record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import anyio
import asyncpg
import msgspec
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from config.settings import Secret
from devstack.sims.b1 import model as b1_model
from devstack.sims.b1.server import B1Simulator
from handlers.common.mappings import Mappings as StockMappings
from handlers.common.masterdata import MasterData
from handlers.common.telemetry import DomainTelemetry
from handlers.connectors.b1.client import B1Client
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.ports.erp import DocumentLine, StockDocument
from handlers.stock.events import StockAdjusted
from handlers.stock.handler import StockHandler
from handlers.stock.posting import StockPoster
from skuflow.app import connect_database
from tests.support.stack import settings_for
from worker.backoff import Backoff
from worker.exceptions import RETRY_OF_HEADER
from worker.groupcommit import GroupCommitWriter
from worker.messages import Message
from worker.outcomes import DONE

pytestmark = pytest.mark.integration

PASSWORD = "b1-collision-pw"
TOPIC = "stock.adjusted"
ITEMS = [f"C{i:03d}" for i in range(20)]
OPENING = 100


def movements() -> tuple[list[StockAdjusted], dict[str, int]]:
    """60 movements, three per item: items 0-9 net +4 (one goods receipt), 10-19 net -4 (one
    goods issue); and the stock each item must end with."""
    events, expected = [], {}
    for n in range(60):
        index, step = n % 20, n // 20
        sign = 1 if index < 10 else -1
        quantity = sign * (3, -1, 2)[step]
        event = StockAdjusted(
            event_id=f"adj-{n}", occurred_at=datetime.now(UTC), source="ims",
            source_ref=f"IMS-{n}", sku=ITEMS[index], warehouse="01",
            quantity=Decimal(quantity), reason="count",
        )  # fmt: skip
        events.append(event)
        expected[ITEMS[index]] = OPENING + 4 * sign
    return events, expected


def message(offset: int, event: StockAdjusted, headers: tuple[Any, ...] = ()) -> Message:
    return Message(
        topic=TOPIC, partition=0, offset=offset, key=event.sku.encode(),
        value=msgspec.json.encode(event), headers=headers, timestamp_ms=0,
    )  # fmt: skip


@dataclass
class Stack:
    sim: B1Simulator
    pool: asyncpg.Pool
    erp: B1Erp
    poster: StockPoster
    handler: StockHandler
    reader: InMemoryMetricReader

    async def stage(self, events: list[StockAdjusted]) -> None:
        for offset, event in enumerate(events):
            assert await self.handler(event, message(offset, event)) is DONE

    async def drain(self, timeout: float = 30.0) -> None:
        """Flush the warehouse until nothing is staged or pending (retries wait their backoff)."""
        with anyio.fail_after(timeout):
            while True:
                await self.poster.flush("01")
                left = await self.pool.fetchval(
                    """SELECT (SELECT count(*) FROM skuflow_postings WHERE status = 'pending')
                            + (SELECT count(*) FROM skuflow_stock_lines WHERE state = 'staged')"""
                )
                if not left:
                    return
                await anyio.sleep(0.02)

    async def line_states(self) -> Counter[str]:
        rows = await self.pool.fetch("SELECT state FROM skuflow_stock_lines")
        return Counter(r["state"] for r in rows)

    async def exceptions(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch("SELECT * FROM skuflow_exceptions ORDER BY id"))

    def posts(self) -> list[Any]:
        return [r for r in self.sim.requests if r.method == "POST" and "Inventory" in r.path]

    def counter(self, name: str) -> dict[str, int]:
        """A counter's value per ``error.type`` (0 when never incremented)."""
        found: dict[str, int] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint)
                        kind = str((point.attributes or {}).get("error.type"))
                        found[kind] = found.get(kind, 0) + int(point.value)
        return found

    def assert_stock(self, expected: dict[str, int]) -> None:
        assert {item: self.sim.stock(item, "01") for item in ITEMS} == expected

    def assert_one_document_per_key(self) -> None:
        keys = Counter(str(doc.body.get(KEY_FIELD)) for doc in self.sim.documents)
        assert all(count == 1 for count in keys.values()), keys
        assert not any("." in key for key in keys), keys  # no bisected slice was ever posted


@asynccontextmanager
async def stack(database_url: str, *, collision_retries: int) -> AsyncIterator[Stack]:
    sim = B1Simulator(password=PASSWORD)
    await sim.start()
    sim.set_faults(conflict_window_ms=0)
    for item in ITEMS:
        sim.add_item(item, stock={"01": OPENING})
    # No broker here: only the database of these settings is used.
    pool = await connect_database(settings_for("127.0.0.1:9", database_url, "g", TOPIC))
    reader = InMemoryMetricReader()
    telemetry = DomainTelemetry(MeterProvider(metric_readers=[reader]).get_meter("test"))
    try:
        async with aiohttp.ClientSession() as session:
            client = B1Client(
                sim.url, "SBODEMO", "manager", Secret(PASSWORD), session, timeout=5.0,
                key_field=KEY_FIELD,
            )  # fmt: skip
            erp = B1Erp(client)
            poster = StockPoster(
                pool, erp, backoff=Backoff(0.01, 0.05, 2.0),
                collision_retries=collision_retries, telemetry=telemetry,
            )  # fmt: skip
            writer = GroupCommitWriter(pool)
            handler = StockHandler(pool, StockMappings(None, {}), MasterData(erp), writer)
            async with anyio.create_task_group() as tg:
                await tg.start(writer.run)
                yield Stack(sim, pool, erp, poster, handler, reader)
                tg.cancel_scope.cancel()
    finally:
        await pool.close()
        await sim.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"collision_count": 6}, id="six answers"),
        pytest.param({"collision_until": "window"}, id="a 0.4 s window"),
    ],
)
def test_2035_for_a_while_then_success_posts_everything_once(
    database_url: str, faults: dict[str, Any]
) -> None:
    events, expected = movements()

    async def main() -> Stack:
        async with stack(database_url, collision_retries=50) as s:
            await s.stage(events)
            if faults.get("collision_until") == "window":
                faults["collision_until"] = datetime.now(UTC) + timedelta(seconds=0.4)
            s.sim.set_faults(**faults)
            await s.drain()
            assert await s.exceptions() == []
            assert await s.line_states() == Counter({"posted": 60})
            postings = await s.pool.fetch(
                "SELECT status, doc_num, documents::text AS documents FROM skuflow_postings"
            )
            assert sorted(p["status"] for p in postings) == ["posted", "posted"]
            for posting in postings:
                [document] = msgspec.json.decode(posting["documents"])  # one: never bisected
                assert document["doc_num"] == posting["doc_num"]
            return s

    s = anyio.run(main)
    assert s.sim.collisions >= (6 if "collision_count" in faults else 2)
    assert len(s.sim.documents) == 2
    s.assert_one_document_per_key()
    s.assert_stock(expected)
    # Every -2035 was looked up by key (not found: a collision), then retried with the backoff.
    lookups = [r for r in s.sim.requests if r.method == "GET" and "JournalMemo" in r.query]
    assert len(lookups) == s.sim.collisions
    assert s.counter("skuflow.erp.lock_retries") == {"ErpDuplicateEntry": s.sim.collisions}
    assert s.counter("skuflow.erp.rejected_movements") == {}


@pytest.mark.timeout(60)
def test_2035_for_a_posting_that_was_applied_records_the_existing_document(
    database_url: str,
) -> None:
    """B1 wrote the document but answered -2035: the lookup finds it; it is never posted again."""
    events, expected = movements()

    async def main() -> Stack:
        async with stack(database_url, collision_retries=8) as s:
            await s.stage(events)
            s.sim.set_faults(collision_after_apply=1)
            await s.drain()
            assert await s.exceptions() == []
            assert await s.line_states() == Counter({"posted": 60})
            rows = await s.pool.fetch("SELECT key, status, doc_num FROM skuflow_postings")
            numbers = {str(d.body[KEY_FIELD]): d.doc_num for d in s.sim.documents}
            assert {r["key"]: (r["status"], r["doc_num"]) for r in rows} == {
                key: ("posted", number) for key, number in numbers.items()
            }
            return s

    s = anyio.run(main)
    assert s.sim.collisions == 1
    assert len(s.sim.documents) == 2  # the applied one was recorded, not posted a second time
    assert len(s.posts()) == 2
    s.assert_one_document_per_key()
    s.assert_stock(expected)
    assert s.counter("skuflow.erp.lock_retries") == {}


@pytest.mark.timeout(60)
def test_2035_because_the_document_already_exists_posts_no_second_document(
    database_url: str,
) -> None:
    """The posting's document is in B1 although skuflow's ledger does not know (its database
    was restored from a backup taken before the post); B1, with the key unique, answers -2035."""
    events, expected = movements()

    async def main() -> tuple[Stack, int]:
        async with stack(database_url, collision_retries=8) as s:
            await s.stage(events)
            s.sim.set_faults(outage_until=datetime.now(UTC) + timedelta(minutes=5))
            await s.poster.flush("01")  # the postings are planned, B1 is down: nothing posted
            [entry] = await s.pool.fetch(
                """SELECT key, lines::text AS lines, ambiguous FROM skuflow_postings
                   WHERE kind = 'entry' AND status = 'pending'"""
            )
            assert not entry["ambiguous"]  # nothing tells skuflow to search before posting
            lines = tuple(msgspec.json.decode(entry["lines"], type=list[DocumentLine]))
            s.sim.set_faults(outage_until=None)
            existing = await s.erp.post_document(  # the post the restored ledger forgot
                StockDocument(kind="entry", key=entry["key"], lines=lines, remarks="lost")
            )
            s.sim.set_faults(unique_key_field=KEY_FIELD)
            await s.drain()
            assert await s.exceptions() == []
            assert await s.line_states() == Counter({"posted": 60})
            recorded = await s.pool.fetchrow(
                "SELECT status, doc_entry, doc_num FROM skuflow_postings WHERE key = $1",
                entry["key"],
            )
            assert tuple(recorded) == ("posted", existing.doc_entry, existing.doc_num)
            return s, existing.doc_num

    s, number = anyio.run(main)
    assert s.sim.collisions == 1  # skuflow posted once, B1 said "exists", skuflow found it
    entries = [d for d in s.sim.documents if d.kind == "entry"]
    assert [d.doc_num for d in entries] == [number]
    s.assert_one_document_per_key()
    s.assert_stock(expected)


@pytest.mark.timeout(60)
def test_2035_forever_refuses_each_posting_once_without_bisecting(database_url: str) -> None:
    events, _ = movements()

    async def main() -> tuple[Stack, list[asyncpg.Record], list[asyncpg.Record], list[Any]]:
        async with stack(database_url, collision_retries=3) as s:
            await s.stage(events)
            s.sim.set_faults(collision_until=datetime.now(UTC) + timedelta(hours=1))
            await s.drain()
            postings = await s.pool.fetch(
                "SELECT id, key, status, last_error FROM skuflow_postings ORDER BY id"
            )
            lines = await s.pool.fetch(
                "SELECT posting_id, state, exception_id FROM skuflow_stock_lines"
            )
            return s, list(postings), list(lines), await s.exceptions()

    s, postings, lines, exceptions = anyio.run(main)
    assert [p["status"] for p in postings] == ["failed", "failed"]
    assert len(exceptions) == 2  # one per posting, not one per movement (60)
    record_of: dict[int, int] = {}
    for posting in postings:
        [record] = [r for r in exceptions if f"posting {posting['key']} " in r["reason"]]
        record_of[posting["id"]] = record["id"]
        assert (record["kind"], record["status"], record["topic"]) == (
            "erp_rejected",
            "open",
            TOPIC,
        )
        assert b1_model.DUPLICATE[1] in record["reason"]
        assert "ERP code -2035, 3 retries" in record["reason"]
        assert "30 movement(s) in 10 line(s)" in record["reason"]
        assert record["reason"] == posting["last_error"]
    # Every movement is refused and points at its posting's one record.
    assert Counter(r["state"] for r in lines) == Counter({"rejected": 60})
    assert all(r["exception_id"] == record_of[r["posting_id"]] for r in lines)
    # No bisection: every attempt sent the whole document under its own key, 1 + 3 retries each.
    sent = Counter(str(r.body[KEY_FIELD]) for r in s.posts())
    assert sent == {p["key"]: 4 for p in postings}
    assert all(len(r.body["DocumentLines"]) == 10 for r in s.posts())
    assert s.sim.documents == []
    assert s.counter("skuflow.erp.lock_retries") == {"ErpDuplicateEntry": 6}
    assert s.counter("skuflow.erp.rejected_movements") == {"-2035": 60}


@pytest.mark.timeout(60)
def test_retrying_the_one_record_stages_and_posts_all_movements_of_the_refused_posting(
    database_url: str,
) -> None:
    events, expected = movements()

    async def main() -> Stack:
        async with stack(database_url, collision_retries=1) as s:
            await s.stage(events)
            s.sim.set_faults(collision_until=datetime.now(UTC) + timedelta(hours=1))
            await s.drain()
            entry_record = await s.pool.fetchrow(
                """SELECT e.id, e."offset" FROM skuflow_exceptions e
                   JOIN skuflow_stock_lines l ON l.exception_id = e.id
                   JOIN skuflow_postings p ON p.id = l.posting_id
                   WHERE p.kind = 'entry' LIMIT 1"""
            )
            s.sim.set_faults(collision_until=None)  # the collisions are over
            # `skuflow exceptions retry ID`: the record's message comes back with retry-of.
            event = events[entry_record["offset"]]
            header = ((RETRY_OF_HEADER, str(entry_record["id"]).encode()),)
            assert await s.handler(event, message(1_000, event, header)) is DONE
            assert await s.line_states() == Counter({"staged": 30, "rejected": 30})
            await s.drain()
            assert await s.line_states() == Counter({"posted": 30, "rejected": 30})
            assert not await s.pool.fetchval(
                "SELECT count(*) FROM skuflow_stock_lines WHERE exception_id = $1",
                entry_record["id"],
            )
            return s

    s = anyio.run(main)
    for item in ITEMS[10:]:  # the goods issue was not retried: nothing of it moved
        expected[item] = OPENING
    s.assert_stock(expected)
    s.assert_one_document_per_key()
    assert [d.kind for d in s.sim.documents] == ["entry"]
