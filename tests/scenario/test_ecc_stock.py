"""User story (seed 000): "IDocs are not always processed in the exact sequence they are
received, meaning a rapid series of adjustments to the same SKU could be applied in the wrong
order in SAP ECC" — with skuflow in between, they cannot be.

Real Kafka, real PostgreSQL, the real worker (``erp.kind = "ecc"``) and the ECC simulator
processing IDocs out of sequence and in parallel (a second IDoc of a material collides on its
plant-data lock). Each SKU gets a rapid series of receipts and issues from an empty stock, one
window per movement: applied out of order, an issue would find no stock (M7 021). The check is
ECC's own: per material and storage location, the movements it applied, in the order it
applied them, are exactly the produced ones; its stock is their sum; nothing was refused.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import anyio
import msgspec
import pytest

from config.settings import (
    EccSettings,
    ErpSettings,
    MappingsSettings,
    Secret,
    StockSettings,
)
from devstack.sims.ecc.server import EccSimulator
from handlers.stock.events import StockAdjusted
from skuflow.app import Worker
from tests.support.stack import produce, settings_for

pytestmark = [pytest.mark.scenario]

CreateTopics = Callable[..., None]
SID, CLIENT, USER, PASSWORD = "ECD", "100", "SKUFLOW", "ecc-scenario-secret"
MATERIALS = [str(4700 + n) for n in range(8)]
LOCATIONS = {"LOC-A": "1000/0001", "LOC-B": "1000/0002"}


@pytest.mark.timeout(240)
def test_rapid_same_sku_sequences_reach_ecc_in_order_although_it_reorders_idocs(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    base = settings_for(kafka_bootstrap, database_url, f"{unique}.group", f"{unique}.stock")
    create_topics(base.topics.stock, base.topics.dispatch, base.topics.dead_letter)
    rng = random.Random(15)
    produced: dict[tuple[str, str], list[int]] = defaultdict(list)  # (material, sloc) → deltas
    records = []
    for n in range(240):
        material, location = rng.choice(MATERIALS), rng.choice(list(LOCATIONS))
        place = (material, LOCATIONS[location].split("/")[1])
        on_hand = sum(produced[place])
        # From empty stock: an issue is only ever of stock an earlier receipt brought.
        quantity = -rng.randint(1, on_hand) if on_hand and rng.random() < 0.5 else rng.randint(1, 5)
        produced[place].append(quantity)
        event = StockAdjusted(
            event_id=f"adj-{n}", occurred_at=datetime.now(UTC), source="ims",
            source_ref=f"IMS-{n}", sku=material, warehouse=location,
            quantity=Decimal(quantity), reason="count",
        )  # fmt: skip
        records.append((material.encode(), msgspec.json.encode(event)))

    sim = EccSimulator(sid=SID, client=CLIENT, user=USER, password=PASSWORD, seed=15)
    sim.add_partner("SKUFLOW", "SKUFLOWPRT")
    for sloc in ("0001", "0002"):
        sim.add_storage_location("1000", sloc)
    for material in MATERIALS:
        sim.add_material(material.zfill(18), ["1000"])
    # Out of sequence and in parallel, as ECC's inbound processing may run.
    sim.set_processing(ordering="parallel", delay_ms=20, tick_ms=5, apply_ms=5)
    settings = msgspec.structs.replace(
        base,
        erp=ErpSettings(kind="ecc"),
        ecc=EccSettings(
            url=sim.url or "http://127.0.0.1:1",
            client=CLIENT,
            sid=SID,
            user=USER,
            password=Secret(PASSWORD),
            sender_port="SKUFLOWPRT",
            sender_partner="SKUFLOW",
            poll_seconds=0.01,
            poll_max_seconds=0.05,
            timeout_seconds=5.0,
        ),
        mappings=MappingsSettings(warehouses=LOCATIONS),
        # One movement per window: every movement is its own IDoc, the harshest case.
        stock=StockSettings(window_seconds=0.05, window_max_lines=1, retry_max_seconds=1.0),
    )

    async def main() -> None:
        await sim.start()
        try:
            ecc = msgspec.structs.replace(settings.ecc, url=sim.url)
            worker = Worker(msgspec.structs.replace(settings, ecc=ecc))
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                assert worker.pool is not None
                await produce(kafka_bootstrap, settings.topics.stock, records)
                with anyio.fail_after(180):
                    while await worker.pool.fetchval(
                        "SELECT count(*) FROM skuflow_stock_lines WHERE state = 'posted'"
                    ) < len(records):
                        await anyio.sleep(0.2)
                exceptions = await worker.pool.fetchval("SELECT count(*) FROM skuflow_exceptions")
                worker.request_stop()
            assert exceptions == 0
        finally:
            await sim.stop()

    anyio.run(main)
    for (material, sloc), deltas in produced.items():
        applied = sim.history(material.zfill(18), "1000", sloc)
        assert [int(a.delta) for a in applied] == deltas, (material, sloc)
        assert sim.stock(material.zfill(18), "1000", sloc) == sum(deltas)
    assert sim.counters["lock_errors"] == 0  # never two IDocs of a material in flight
    assert sim.counters["status_51"] == 0
    assert len(sim.idocs) == len(records)
