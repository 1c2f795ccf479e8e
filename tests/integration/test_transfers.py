"""Transfers in the poster, on a real PostgreSQL and the SAP ECC or B1 simulator: a transfer posts
as one transfer in its source's window, and a later movement of its SKU at the destination waits
for it — per-SKU order across the two warehouses a transfer touches."""

from __future__ import annotations

import argparse
from decimal import Decimal

import aiohttp
import anyio
import asyncpg
import pytest

from config.settings import B1Settings, Secret
from devstack.sims.b1.server import B1Simulator
from devstack.sims.ecc.server import EccSimulator
from handlers.connectors.b1.client import b1_client_from_settings
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.connectors.ecc.client import EccClient
from handlers.connectors.ecc.idoc import ControlRecord
from handlers.connectors.ecc.port import EccErp, EccOptions
from handlers.flows import migrations as domain_migrations
from handlers.stock.posting import StockPoster
from skuflow.postings_cli import postings_command
from worker.backoff import Backoff
from worker.store import create_pool, migrate, package_migrations

pytestmark = pytest.mark.integration

MAT = "4711"
MATNR = MAT.zfill(18)
SOURCE, TARGET = "1000/0001", "1000/0002"


async def stage(
    pool: asyncpg.Pool, event_id: str, warehouse: str, quantity: int, to: str | None = None
) -> None:
    await pool.execute(
        """INSERT INTO skuflow_stock_lines (event_id, sku, location, item_code, warehouse_code,
             quantity, reason, source, source_ref, occurred_at, topic, partition, "offset",
             payload, to_warehouse_code)
           VALUES ($1, $2, $3, $2, $3, $4, 'count', 'wms', $1, now(), 't', 0, 0, '\\x00', $5)""",
        event_id, MAT, warehouse, Decimal(quantity), to,
    )  # fmt: skip


@pytest.mark.timeout(60)
def test_a_movement_at_the_destination_waits_for_the_transfer_staged_before_it(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        sim = EccSimulator(sid="ECD", client="100", user="U", password="p", seed=1)
        sim.add_partner("SKUFLOW", "SKUFLOWPRT")
        sim.add_storage_location("1000", "0001")
        sim.add_storage_location("1000", "0002")
        sim.add_material(MATNR, ["1000"])
        sim.set_stock(MATNR, "1000", "0001", 10)
        sim.set_processing(tick_ms=5)
        await sim.start()
        pool = await create_pool(database_url)
        try:
            await migrate(pool, [*package_migrations("worker", "engine"), *domain_migrations()])
            async with aiohttp.ClientSession() as session:
                client = EccClient(sim.url, "100", "U", Secret("p"), session, timeout=5)
                control = ControlRecord(
                    client="100", sid="ECD", sender_port="SKUFLOWPRT", sender_partner="SKUFLOW"
                )
                options = EccOptions(poll_seconds=0.01, poll_max_seconds=0.05)
                erp = EccErp(client, control, pool, options)
                poster = StockPoster(pool, erp, backoff=Backoff(0.05, 0.2))
                await stage(pool, "trf-1", SOURCE, 6, to=TARGET)  # 6 from 0001 to 0002
                await stage(pool, "adj-2", TARGET, -6)  # then 6 issued at 0002
                await stage(pool, "adj-3", TARGET, 2)  # and 2 received there
                await poster.flush(TARGET)  # first: must not issue stock not moved yet
                assert sim.history(MATNR, "1000", "0002") == []
                await poster.flush(SOURCE)
                await poster.flush(TARGET)
                kinds = [
                    (r["kind"], r["status"])
                    for r in await pool.fetch("SELECT * FROM skuflow_postings ORDER BY id")
                ]
                exceptions = await pool.fetchval("SELECT count(*) FROM skuflow_exceptions")
                transfer_id = await pool.fetchval(
                    "SELECT id FROM skuflow_postings WHERE kind = 'transfer'"
                )
                shown = argparse.Namespace(postings_command="show", id=transfer_id, json=False)
                await postings_command(shown, pool)
        finally:
            await pool.close()
            await sim.stop()
        assert ("transfer", "posted") in kinds
        printed = capsys.readouterr().out
        assert "line 0: 4711 x 6 to 1000/0002" in printed
        assert "status 53): posted, material document 49" in printed
        assert exceptions == 0
        # (the window at 0002 nets its -6 and +2: one issue of 4, after the transfer)
        assert [int(h.delta) for h in sim.history(MATNR, "1000", "0002")] == [6, -4]
        assert sim.stock(MATNR, "1000", "0001") == 4
        assert sim.stock(MATNR, "1000", "0002") == 2

    anyio.run(scenario)


@pytest.mark.timeout(60)
def test_with_b1_a_transfer_posts_as_one_stock_transfer_and_the_destination_waits(
    database_url: str,
) -> None:
    async def scenario() -> None:
        sim = B1Simulator(password="b1-secret")
        await sim.start()
        for code in ("01", "02"):
            sim.add_warehouse(code)
        sim.set_faults(conflict_window_ms=0)  # (its default refuses an item touched just now)
        sim.add_item(MAT, stock={"01": 10})
        pool = await create_pool(database_url)
        try:
            await migrate(pool, [*package_migrations("worker", "engine"), *domain_migrations()])
            async with aiohttp.ClientSession() as session:
                settings = B1Settings(url=sim.url, password=Secret("b1-secret"))
                erp = B1Erp(b1_client_from_settings(settings, session, key_field=KEY_FIELD))
                poster = StockPoster(pool, erp, backoff=Backoff(0.05, 0.2))
                await stage(pool, "trf-1", "01", 6, to="02")
                await stage(pool, "adj-2", "02", -6)
                await poster.flush("02")  # the issue at 02 waits for the transfer
                assert sim.stock(MAT, "02") == 0
                await poster.flush("01")
                await poster.flush("02")
                exceptions = await pool.fetchval("SELECT count(*) FROM skuflow_exceptions")
        finally:
            await pool.close()
            await sim.stop()
        assert exceptions == 0
        entities = [doc.entity for doc in sim.documents]
        assert entities == ["StockTransfers", "InventoryGenExits"]
        (transfer,) = [doc for doc in sim.documents if doc.entity == "StockTransfers"]
        (line,) = transfer.body["StockTransferLines"]
        assert (line["FromWarehouseCode"], line["WarehouseCode"]) == ("01", "02")
        assert (sim.stock(MAT, "01"), sim.stock(MAT, "02")) == (Decimal(4), Decimal(0))

    anyio.run(scenario)
