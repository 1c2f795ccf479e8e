"""Regression tests for the bugs the fault suite found, each reproduced in a few seconds.

1. **A crash between an ERP post and the posting's ledger write duplicated the document.**
   ``StockPoster`` saved the posting's plan only after B1 answered; the process killed in
   between left the posting ``pending`` and *not* ambiguous, so the restarted worker posted
   it again without searching B1 for its key — the crash test's SIGKILL after a post found a
   second document with the same key and the stock moved twice. The plan is now saved as
   ambiguous before every call.
2. **A redelivered order-flow event whose problem was recorded opened a second exception
   record.** The order scenario (``test_order_flow.py``) sends every event more than once: a
   return that matched no delivery, sent twice, was staged again by its second copy (a
   refused document was re-staged by *any* copy, not only by ``skuflow exceptions retry``),
   refused again and recorded again at the copy's offset (``return_unmatched`` twice); a
   cancellation after shipping, sent twice, was ``order_cancel_after_ship`` twice; the same
   held for a refused order's own revision. Now only a retry (the ``skuflow.retry-of``
   header) stages a refused document or applies a failed order's revision again, and a
   redelivered cancellation whose record exists is done.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import anyio
import asyncpg
import msgspec
import pytest

from config.settings import OrdersSettings, Secret
from devstack.sims.b1.server import B1Simulator
from handlers.common.mappings import Mappings
from handlers.common.masterdata import MasterData
from handlers.connectors.b1.client import B1Client
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.orders.documents import DocumentPoster
from handlers.orders.events import OrderCancelled, ReturnLine, ReturnReceived
from handlers.orders.handler import DocumentStager, OrderHandler, ReturnHandler
from handlers.orders.mapping import OrderMapper
from handlers.ports.erp import PostedDocument, StockDocument
from handlers.stock.posting import StockPoster
from skuflow.app import connect_database
from tests.support.stack import settings_for
from worker.exceptions import RETRY_OF_HEADER, ExceptionStore
from worker.groupcommit import GroupCommitWriter
from worker.messages import Message
from worker.outcomes import DONE, Outcome, Reject

pytestmark = [pytest.mark.scenario]


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


class CrashAfterPost(B1Erp):
    """The real ERP port, dying right after the ERP created the document."""

    async def post_document(self, document: StockDocument) -> PostedDocument:
        await super().post_document(document)
        raise Crash


@pytest.mark.timeout(60)
def test_a_crash_between_the_erp_post_and_the_ledger_write_does_not_post_twice(
    kafka_bootstrap: str, database_url: str, unique: str
) -> None:
    settings = settings_for(kafka_bootstrap, database_url, unique, f"{unique}.stock")

    async def main() -> tuple[Counter[str], Decimal, str]:
        sim = B1Simulator(password="pw")
        await sim.start()
        sim.set_faults(conflict_window_ms=0)
        sim.add_item("ITEM", stock={"01": 100})
        pool = await connect_database(settings)
        try:
            await pool.execute(
                """INSERT INTO skuflow_stock_lines (event_id, sku, location, item_code,
                     warehouse_code, quantity, reason, source, source_ref, occurred_at, topic,
                     partition, "offset", key, payload)
                   VALUES ('e1', 'ITEM', 'LOC-01', 'ITEM', '01', 5, 'count', 'ims', 'r1', $1,
                           't', 0, 0, 'ITEM', '{}')""",
                datetime.now(UTC),
            )
            async with aiohttp.ClientSession() as session:
                client = B1Client(sim.url, "SBODEMO", "manager", Secret("pw"), session,
                                  key_field=KEY_FIELD)  # fmt: skip
                with pytest.raises(Crash):
                    await StockPoster(pool, CrashAfterPost(client)).flush("01")
            # The "process" died with its connections: a new pool, a new poster, a restart.
            await pool.close()
            pool = await connect_database(settings)
            async with aiohttp.ClientSession() as session:
                client = B1Client(sim.url, "SBODEMO", "manager", Secret("pw"), session,
                                  key_field=KEY_FIELD)  # fmt: skip
                await StockPoster(pool, B1Erp(client)).flush("01")
            state = await pool.fetchval("SELECT state FROM skuflow_stock_lines")
            keys = Counter(str(doc.body.get("JournalMemo")) for doc in sim.documents)
            return keys, sim.stock("ITEM", "01"), str(state)
        finally:
            await pool.close()
            await sim.stop()

    keys, stock, state = anyio.run(main)
    assert list(keys.values()) == [1], keys
    assert stock == 105
    assert state == "posted"


# --- 2. redelivered order-flow events ---

NOWHERE = "http://127.0.0.1:9/b1s/v1"  # no ERP call is made: the ERP is never reached


def _erp(session: aiohttp.ClientSession) -> B1Erp:
    return B1Erp(B1Client(NOWHERE, "SBODEMO", "manager", Secret("pw"), session,
                          key_field=KEY_FIELD))  # fmt: skip


def _copy(topic: str, value: bytes, offset: int, retry_of: int | None = None) -> Message:
    """A copy of one event at ``offset``; ``retry_of``: re-published by ``exceptions retry``."""
    headers = [] if retry_of is None else [(RETRY_OF_HEADER, str(retry_of).encode())]
    return Message(topic=topic, partition=0, offset=offset, key=b"o", value=value,
                   headers=headers, timestamp_ms=0)  # fmt: skip


async def _records(pool: asyncpg.Pool, kind: str) -> list[int]:
    rows = await pool.fetch("SELECT id FROM skuflow_exceptions WHERE kind = $1", kind)
    return [row["id"] for row in rows]


@pytest.mark.timeout(60)
def test_a_redelivered_return_that_matched_no_delivery_is_recorded_once(
    kafka_bootstrap: str, database_url: str, unique: str
) -> None:
    settings = settings_for(kafka_bootstrap, database_url, unique, f"{unique}.stock")
    event = ReturnReceived(
        event_id="ret-RMA-1", occurred_at=datetime.now(UTC), source="wms", source_ref="RMA-1",
        channel="amazon", order_id="NEVER-SHIPPED", warehouse="LOC-01", return_ref="RMA-1",
        lines=[ReturnLine(sku="ITEM", quantity=Decimal(1))],
    )  # fmt: skip
    value = msgspec.json.encode(event)

    async def main() -> tuple[list[int], list[int], str]:
        pool = await connect_database(settings)
        writer = GroupCommitWriter(pool)
        mappings = Mappings(None, {"LOC-01": "01"})
        try:
            async with aiohttp.ClientSession() as session, anyio.create_task_group() as tg:
                erp = _erp(session)
                poster = DocumentPoster(pool, erp, OrdersSettings(), mappings)
                returns = ReturnHandler(DocumentStager(writer), mappings, MasterData(erp))
                await tg.start(writer.run)
                assert await returns(event, _copy("returns", value, 0)) is DONE
                await poster.cycle()  # no delivery of that order: return_unmatched
                assert await returns(event, _copy("returns", value, 1)) is DONE  # redelivered
                await poster.cycle()
                once = await _records(pool, "return_unmatched")
                # an operator retries the record: the return is staged again
                assert await returns(event, _copy("returns", value, 2, once[0])) is DONE
                state = await pool.fetchval("SELECT state FROM skuflow_order_documents")
                await poster.cycle()
                tg.cancel_scope.cancel()
            return once, await _records(pool, "return_unmatched"), str(state)
        finally:
            await pool.close()

    once, after_retry, state = anyio.run(main)
    assert len(once) == 1, once  # the redelivery recorded nothing more
    assert state == "staged"  # the retry did stage it again
    assert len(after_retry) >= 1


@pytest.mark.timeout(60)
def test_a_redelivered_cancellation_after_shipping_is_recorded_once(
    kafka_bootstrap: str, database_url: str, unique: str
) -> None:
    settings = settings_for(kafka_bootstrap, database_url, unique, f"{unique}.stock")
    revision = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    event = OrderCancelled(
        event_id="cxl-SHIPPED", occurred_at=revision, source="amazon", source_ref="SHIPPED",
        channel="amazon", order_id="SHIPPED", marketplace_id="A1F83G8C2ARO7P",
        revision=revision + timedelta(minutes=5),
    )  # fmt: skip
    value = msgspec.json.encode(event)

    async def main() -> tuple[list[Outcome], list[int]]:
        pool = await connect_database(settings)
        try:
            await pool.execute(
                """INSERT INTO skuflow_orders (channel, order_id, marketplace_id, revision, state,
                     marketplace_status, fulfilled_by, sales_order, lines, topic, partition,
                     "offset", payload, event_id)
                   VALUES ('amazon', 'SHIPPED', 'A1F83G8C2ARO7P', $1, 'closed', 'SHIPPED',
                           'MERCHANT', 'null', '[]', 'orders', 0, 0, '{}', 'ord-SHIPPED')""",
                revision,
            )
            async with aiohttp.ClientSession() as session:
                erp, store = _erp(session), ExceptionStore(pool)
                mapper = OrderMapper(OrdersSettings(), Mappings(None, {}), MasterData(erp))
                handler = OrderHandler(pool, mapper)
                outcomes = []
                for copy in (_copy("orders", value, 5), _copy("orders", value, 6)):
                    outcome = await handler(event, copy)
                    if isinstance(outcome, Reject):  # as the engine records a rejection
                        await store.record(copy, kind=outcome.kind, reason=outcome.reason,
                                           event_id=event.event_id)  # fmt: skip
                    outcomes.append(outcome)
                records = await _records(pool, "order_cancel_after_ship")
                outcomes.append(await handler(event, _copy("orders", value, 7, records[0])))
            return outcomes, records
        finally:
            await pool.close()

    (first, redelivered, retried), records = anyio.run(main)
    assert isinstance(first, Reject), first
    assert first.kind == "order_cancel_after_ship"
    assert redelivered is DONE, redelivered  # its record exists: nothing more
    assert len(records) == 1, records
    assert isinstance(retried, Reject), retried  # a retry is judged again (the same record)
