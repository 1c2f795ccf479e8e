"""Regression tests for the bugs the fault suite found, each reproduced in a few seconds.

1. **A crash between an ERP post and the posting's ledger write duplicated the document.**
   ``StockPoster`` saved the posting's plan only after B1 answered; the process killed in
   between left the posting ``pending`` and *not* ambiguous, so the restarted worker posted
   it again without searching B1 for its key — the crash test's SIGKILL after a post found a
   second document with the same key and the stock moved twice. The plan is now saved as
   ambiguous before every call.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import anyio
import pytest

from config.settings import Secret
from devstack.sims.b1.server import B1Simulator
from handlers.connectors.b1.client import B1Client
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.ports.erp import PostedDocument, StockDocument
from handlers.stock.posting import StockPoster
from skuflow.app import connect_database
from tests.support.stack import settings_for

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
