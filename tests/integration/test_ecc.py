"""The SAP ECC connector against the ECC simulator (HTTP) and a real PostgreSQL: master data,
IDocs followed to their application, never two in flight for one material, never twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import anyio
import asyncpg
import pytest

from config.settings import Secret
from devstack.sims.ecc.server import EccSimulator
from handlers.connectors.ecc.client import EccClient
from handlers.connectors.ecc.idoc import ControlRecord, parse_audit
from handlers.connectors.ecc.port import EccErp, EccOptions, record_audit
from handlers.flows import migrations as domain_migrations
from handlers.ports.erp import (
    DocumentLine,
    ErpAuthFailed,
    ErpLocked,
    ErpRejected,
    ErpUnavailable,
    PostedDocument,
    StockDocument,
)
from worker.store import create_pool, migrate

pytestmark = pytest.mark.integration

SID, CLIENT, USER, PASSWORD = "ECD", "100", "SKUFLOW_RFC", "ecc-secret-not-in-logs-51f"
PARTNER, PORT = "SKUFLOW", "SKUFLOWPRT"
MAT, OTHER, PLAIN = "4711", "815", "900"  # numeric materials as the ERP item codes
MATNR, OTHER_NR, PLAIN_NR = MAT.zfill(18), OTHER.zfill(18), PLAIN.zfill(18)


@dataclass
class Stack:
    sim: EccSimulator
    erp: EccErp
    pool: asyncpg.Pool
    client: EccClient


@asynccontextmanager
async def stack(database_url: str, **options: Any) -> AsyncIterator[Stack]:
    sim = EccSimulator(sid=SID, client=CLIENT, user=USER, password=PASSWORD, seed=3)
    sim.add_partner(PARTNER, PORT)
    for werks, lgort in (("1000", "0001"), ("1000", "0002"), ("2000", "0001")):
        sim.add_storage_location(werks, lgort, f"Store {werks}/{lgort}")
    sim.add_material(MATNR, ["1000", "2000"])
    sim.add_material(OTHER_NR, ["1000"], batches=True)
    sim.add_material(PLAIN_NR, ["1000"])
    sim.set_stock(PLAIN_NR, "1000", "0001", 5)
    sim.set_stock(MATNR, "1000", "0001", 100)
    sim.set_processing(tick_ms=5)
    await sim.start()
    pool = await create_pool(database_url)
    try:
        await migrate(pool, domain_migrations())
        async with aiohttp.ClientSession() as session:
            client = EccClient(sim.url, CLIENT, USER, Secret(PASSWORD), session, timeout=5)
            control = ControlRecord(
                client=CLIENT, sid=SID, sender_port=PORT, sender_partner=PARTNER
            )
            defaults: dict[str, Any] = {"poll_seconds": 0.01, "poll_max_seconds": 0.05}
            erp = EccErp(client, control, pool, EccOptions(**{**defaults, **options}))
            yield Stack(sim, erp, pool, client)
    finally:
        await pool.close()
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    anyio.run(scenario)


def document(
    key: str, *lines: tuple[str, str, str], kind: str = "exit", reason_class: str = ""
) -> StockDocument:
    return StockDocument(
        kind=kind,  # type: ignore[arg-type]
        key=key,
        reason_class=reason_class,
        lines=tuple(
            DocumentLine(
                item_code=item,
                warehouse_code=warehouse,
                quantity=Decimal(quantity),
                sources=(f"adj-{key}-{index}",),
            )
            for index, (item, warehouse, quantity) in enumerate(lines)
        ),
        remarks="",
    )


async def posted_eventually(erp: EccErp, doc: StockDocument) -> PostedDocument:
    """Attempts as the poster makes them: again after each wait, until the document posts."""
    for _ in range(100):
        try:
            return await erp.post_document(doc)
        except ErpLocked:
            await anyio.sleep(0.05)
    raise AssertionError(f"{doc.key} never posted")


async def idocs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM skuflow_ecc_idocs ORDER BY docnum"))


@pytest.mark.timeout(30)
def test_master_data_comes_from_mara_marc_and_t001l(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            s.sim.update_plant_data(MATNR, "2000", status="01")
            item = await s.erp.get_item(MAT)
            assert item is not None
            assert item.unit == "EA"
            assert item.plants is not None
            assert set(item.plants) == {"1000", "2000"}
            assert item.at("1000") is not None
            assert not item.at("1000").frozen  # type: ignore[union-attr]
            assert item.at("2000").frozen  # type: ignore[union-attr]
            assert item.at("3000") is None
            batched = await s.erp.get_item(OTHER)
            assert batched is not None
            assert batched.at("1000").manages_batches  # type: ignore[union-attr]
            assert await s.erp.get_item("999") is None
            warehouse = await s.erp.get_warehouse("1000/0002")
            assert warehouse is not None
            assert (warehouse.plant, warehouse.name) == ("1000", "Store 1000/0002")
            assert await s.erp.get_warehouse("1000/0009") is None
            assert await s.erp.get_warehouse("1000") is None

    run(scenario)


@pytest.mark.timeout(30)
def test_a_document_is_posted_once_ecc_applied_its_idoc(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            posted = await s.erp.post_document(document("SKF1", (MAT, "1000/0001", "7")))
            assert s.sim.stock(MATNR, "1000", "0001") == 93
            (history,) = [h for h in s.sim.history(MATNR, "1000", "0001")]
            assert history.bwart == "201"
            assert int(history.mblnr) == posted.doc_num
            (row,) = await idocs(s.pool)
            assert (row["state"], row["status"], row["key"]) == ("posted", "53", "SKF1")
            assert int(row["mat_doc"]) == posted.doc_num
            entry = await s.erp.post_document(
                document("SKF2", (MAT, "1000/0001", "3"), kind="entry")
            )
            assert entry.doc_num != posted.doc_num
            assert s.sim.stock(MATNR, "1000", "0001") == 96
            assert await s.erp.find_document("exit", "SKF1") == posted
            assert await s.erp.find_document("exit", "SKF9") is None

    run(scenario)


@pytest.mark.timeout(30)
def test_each_reason_posts_with_its_own_movement_types(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            assert s.erp.reason_class(" Damaged") == "damaged"
            assert s.erp.reason_class("relabelled") == "*"
            for key, kind, reason_class in (
                ("SKF21", "exit", "damaged"), ("SKF22", "entry", "damaged"),
                ("SKF23", "entry", "count"), ("SKF24", "exit", "count"),
                ("SKF25", "entry", "*"), ("SKF26", "exit", "issue"),
            ):  # fmt: skip
                doc = document(key, (MAT, "1000/0001", "1"), kind=kind, reason_class=reason_class)
                await s.erp.post_document(doc)
            applied = [h.bwart for h in s.sim.history(MATNR, "1000", "0001")]
            assert applied == ["551", "552", "701", "702", "501", "201"]

    run(scenario)


@pytest.mark.timeout(30)
def test_a_transfer_posts_as_311_within_a_plant_and_301_between_plants(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            doc = StockDocument(
                kind="transfer", key="SKF30", remarks="",
                lines=(
                    DocumentLine(item_code=MAT, warehouse_code="1000/0001",
                                 to_warehouse_code="1000/0002", quantity=Decimal(4),
                                 sources=("trf-1",)),
                    DocumentLine(item_code=MAT, warehouse_code="1000/0001",
                                 to_warehouse_code="2000/0001", quantity=Decimal(6),
                                 sources=("trf-2", "trf-3")),
                ),
            )  # fmt: skip
            posted = await s.erp.post_document(doc)
            assert posted.doc_num > 0
            assert s.sim.stock(MATNR, "1000", "0001") == 90
            assert s.sim.stock(MATNR, "1000", "0002") == 4
            assert s.sim.stock(MATNR, "2000", "0001") == 6
            assert {h.bwart for h in s.sim.history(MATNR, "1000", "0002")} == {"311"}
            assert {h.bwart for h in s.sim.history(MATNR, "2000", "0001")} == {"301"}
            (row,) = await idocs(s.pool)
            assert sorted(row["materials"]) == [f"1000/{MATNR}", f"2000/{MATNR}"]

    run(scenario)


@pytest.mark.timeout(30)
def test_an_idoc_in_flight_in_a_transfers_receiving_plant_holds_the_transfer(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(database_url, application_wait_seconds=0.1) as s:
            s.sim.set_processing(delay_ms=300)
            receipt = document("SKF31", (MAT, "2000/0001", "5"), kind="entry")
            with pytest.raises(ErpLocked):
                await s.erp.post_document(receipt)  # in flight in plant 2000
            transfer = StockDocument(
                kind="transfer", key="SKF32", remarks="",
                lines=(DocumentLine(item_code=MAT, warehouse_code="1000/0001",
                                    to_warehouse_code="2000/0001", quantity=Decimal(1),
                                    sources=("trf-9",)),),
            )  # fmt: skip
            with pytest.raises(ErpLocked, match="SKF31"):
                await s.erp.post_document(transfer)
            await posted_eventually(s.erp, receipt)
            await posted_eventually(s.erp, transfer)
            assert s.sim.stock(MATNR, "2000", "0001") == 6

    run(scenario)


@pytest.mark.timeout(30)
def test_an_application_error_names_its_line_with_saps_message(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            doc = document("SKF3", (PLAIN, "1000/0001", "1"), (MAT, "1000/0001", "500"))
            with pytest.raises(ErpRejected) as caught:
                await s.erp.post_document(doc)
            assert caught.value.code == "M7 021"
            assert "Deficit" in caught.value.message
            assert caught.value.line == 1  # the material in the message: the second line
            assert s.sim.stock(MATNR, "1000", "0001") == 100  # all or nothing
            (row,) = await idocs(s.pool)
            assert row["state"] == "failed"
            # The failed IDoc is final: the same key may be sent again (its bad line dropped).
            again = await s.erp.post_document(document("SKF3", (MAT, "1000/0001", "5")))
            assert again.doc_num > 0
            assert s.sim.stock(MATNR, "1000", "0001") == 95

    run(scenario)


@pytest.mark.timeout(40)
def test_two_documents_of_one_material_are_never_in_flight_together(database_url: str) -> None:
    """ECC applies in parallel (a second IDoc of the material would collide on its lock):
    while one IDoc of the material is on its way, another key's document is refused."""

    async def scenario() -> None:
        async with stack(database_url, application_wait_seconds=0.2) as s:
            s.sim.set_processing(ordering="parallel", delay_ms=400, apply_ms=50)
            first = document("SKF4", (MAT, "1000/0001", "1"))
            with pytest.raises(ErpLocked, match="in process"):
                await s.erp.post_document(first)  # its wait runs out before ECC applies it
            second = document("SKF5", (MAT, "1000/0002", "1"), kind="entry")
            with pytest.raises(ErpLocked, match=r"IDoc \d+ \(posting SKF4\)"):
                await s.erp.post_document(second)
            assert (await posted_eventually(s.erp, first)).doc_num > 0  # followed, not re-sent
            assert (await posted_eventually(s.erp, second)).doc_num > 0
            assert len(s.sim.idocs) == 2
            assert s.sim.counters["lock_errors"] == 0
            assert [h.xblnr for h in s.sim.history(MATNR, "1000", "0001")] == ["SKF4"]

    run(scenario)


@pytest.mark.timeout(40)
def test_an_answer_lost_after_ecc_stored_the_idoc_is_found_not_sent_again(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(database_url, lookup_grace_seconds=0.0) as s:
            s.sim.set_faults(lost_answer_next=1, lost_answer_mode="reset")
            doc = document("SKF6", (MAT, "1000/0001", "2"))
            with pytest.raises(ErpUnavailable) as caught:
                await s.erp.post_document(doc)
            assert caught.value.ambiguous
            (row,) = await idocs(s.pool)
            assert row["state"] == "sending"
            await s.sim.settle()
            found = await s.erp.find_document("exit", "SKF6")
            assert found is not None
            assert len(s.sim.idocs) == 1
            assert s.sim.stock(MATNR, "1000", "0001") == 98
            assert await s.erp.post_document(doc) == found  # the poster's next attempt

    run(scenario)


@pytest.mark.timeout(40)
def test_an_idoc_ecc_never_stored_is_given_up_and_sent_anew(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url, lookup_grace_seconds=0.0) as s:
            s.sim.set_faults(error_rate=1.0)  # 500 before anything is stored: ambiguous to us
            doc = document("SKF7", (MAT, "1000/0001", "2"))
            with pytest.raises(ErpUnavailable):
                await s.erp.post_document(doc)
            s.sim.set_faults(error_rate=0.0)
            assert await s.erp.find_document("exit", "SKF7") is None
            states = [r["state"] for r in await idocs(s.pool)]
            assert states == ["lost"]
            assert (await s.erp.post_document(doc)).doc_num > 0
            assert s.sim.stock(MATNR, "1000", "0001") == 98

    run(scenario)


@pytest.mark.timeout(40)
def test_a_lock_error_waits_and_the_next_attempt_posts_once(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            s.sim.set_faults(lock_next=1)
            doc = document("SKF8", (MAT, "1000/0001", "4"))
            with pytest.raises(ErpLocked, match="M3 897"):
                await s.erp.post_document(doc)
            assert (await s.erp.post_document(doc)).doc_num > 0
            assert s.sim.stock(MATNR, "1000", "0001") == 96
            assert [r["state"] for r in await idocs(s.pool)] == ["failed", "posted"]

    run(scenario)


@pytest.mark.timeout(40)
def test_where_ecc_reposts_lock_errors_itself_the_same_idoc_is_followed(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with stack(
            database_url, lock_errors="reprocessed", application_wait_seconds=0.1
        ) as s:
            s.sim.set_processing(reprocess_locks_ms=300)
            s.sim.set_faults(lock_next=1)
            doc = document("SKF9", (MAT, "1000/0001", "4"))
            with pytest.raises(ErpLocked, match="RBDMANIN"):
                await s.erp.post_document(doc)
            await anyio.sleep(0.5)
            await s.sim.settle()
            assert (await s.erp.post_document(doc)).doc_num > 0
            assert len(s.sim.idocs) == 1  # never re-sent: ECC posted the same IDoc
            assert s.sim.stock(MATNR, "1000", "0001") == 96

    run(scenario)


@pytest.mark.timeout(30)
def test_a_partner_profile_problem_is_a_configuration_error(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            s.erp._control = ControlRecord(  # a sender partner ECC has no profile for
                client=CLIENT, sid=SID, sender_port=PORT, sender_partner="NOBODY"
            )
            with pytest.raises(ErpAuthFailed, match="status 56"):
                await s.erp.post_document(document("SKF10", (MAT, "1000/0001", "1")))

    run(scenario)


@pytest.mark.timeout(40)
def test_audit_idocs_resolve_the_tracker_where_tables_cannot_be_read(database_url: str) -> None:
    async def scenario() -> None:
        received: list[bytes] = []
        async with stack(database_url, application_wait_seconds=0.05) as s:
            from aiohttp import web

            from devstack.sims.http import LocalServer

            async def intake(request: web.Request) -> web.Response:
                received.append(await request.read())
                return web.Response(status=200)

            app = web.Application()
            app.router.add_post("/aleaud", intake)
            server = LocalServer(app)
            url = await server.start("127.0.0.1", 0)
            try:
                s.sim.set_processing(delay_ms=200)
                s.sim.set_audit(url=f"{url}/aleaud", user="u", password="p", interval_ms=50)
                with pytest.raises(ErpLocked):
                    await s.erp.post_document(document("SKF11", (MAT, "1000/0001", "1")))
                await s.sim.settle()
                await s.sim.send_audit()
            finally:
                await server.stop()
            assert received
            changed = sum([await record_audit(s.pool, parse_audit(raw)) for raw in received])
            assert changed == 1
            (row,) = await idocs(s.pool)
            assert row["state"] == "posted"
            assert row["mat_doc"]
            assert await record_audit(s.pool, parse_audit(received[0])) == 0  # repeated

    run(scenario)


@pytest.mark.timeout(30)
def test_the_password_never_reaches_a_message_or_repr(database_url: str) -> None:
    async def scenario() -> None:
        async with stack(database_url) as s:
            assert PASSWORD not in repr(s.erp)
            assert PASSWORD not in repr(s.client)
            s.sim.set_faults(error_rate=1.0)
            with pytest.raises(ErpUnavailable) as caught:
                await s.erp.post_document(document("SKF12", (MAT, "1000/0001", "1")))
            assert PASSWORD not in str(caught.value)

    run(scenario)
