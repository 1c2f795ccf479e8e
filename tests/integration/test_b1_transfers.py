"""``StockTransfers`` in the Service Layer simulator, over real HTTP: what it accepts, answers,
refuses, and how the fault knobs apply to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from devstack.sims.b1 import model as b1_model
from devstack.sims.b1.server import B1Simulator

pytestmark = pytest.mark.integration

COMPANY, USER, PASSWORD = "SBODEMO", "manager", "b1-transfer-password"


@dataclass
class Stack:
    sim: B1Simulator
    session: aiohttp.ClientSession
    cookie: dict[str, str]

    async def post(
        self, entity: str, body: Any, timeout: float | None = None
    ) -> tuple[int, dict[str, Any]]:
        url, limit = f"{self.sim.url}/{entity}", aiohttp.ClientTimeout(total=timeout)
        async with self.session.post(url, json=body, cookies=self.cookie, timeout=limit) as r:
            return r.status, await r.json()

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.session.get(f"{self.sim.url}/{path}", cookies=self.cookie) as response:
            return response.status, await response.json()

    def unmoved(self) -> None:
        """Nothing was written: the stock of setup() and no document."""
        sim = self.sim
        assert sim.documents == []
        assert at(sim, "A-100", "01", "02") == (10, 0)
        assert at(sim, "C-400", "01", "02") == (4, 1)
        assert sim.batch_stock("B-200", "01", "LOT-1") == 5
        assert sim.serials("S-300", "01") == {"SN-1", "SN-2"}


@asynccontextmanager
async def stack(window_ms: float = 0.0) -> AsyncIterator[Stack]:
    sim = B1Simulator(COMPANY, USER, PASSWORD)
    sim.set_faults(conflict_window_ms=window_ms)
    for code in ("01", "02", "03"):
        sim.add_warehouse(code)
    sim.add_item("A-100", stock={"01": 10})
    sim.add_item("C-400", stock={"01": 4, "02": 1})
    sim.add_item("B-200", batches=True)
    sim.add_batch("B-200", "01", "LOT-1", 5)
    sim.add_item("S-300", serials=True)
    sim.add_serials("S-300", "01", "SN-1", "SN-2")
    sim.add_item("OLD-1", valid=False, stock={"01": 3})
    sim.add_item("FRZ-1", frozen=True, stock={"01": 3})
    sim.add_item("SVC-1", inventory=False)
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            login = {"CompanyDB": COMPANY, "UserName": USER, "Password": PASSWORD}
            async with session.post(f"{sim.url}/Login", json=login) as response:
                assert response.status == 200
                cookie = {"B1SESSION": response.cookies["B1SESSION"].value}
            yield Stack(sim, session, cookie)
    finally:
        await sim.stop()


def at(sim: B1Simulator, item: str, *warehouses: str) -> tuple[float, ...]:
    """The item's stock in each warehouse."""
    return tuple(float(sim.stock(item, warehouse)) for warehouse in warehouses)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def ln(item: str, quantity: int | str, source: str = "01", to: str = "02", **extra: Any) -> Any:
    return {"ItemCode": item, "Quantity": quantity, "FromWarehouseCode": source} | (
        {"WarehouseCode": to} | extra
    )


def transfer(key: str, *lines: dict[str, Any], **header: Any) -> dict[str, Any]:
    return {"Reference2": key, "Comments": f"skuflow posting {key}", **header} | {
        "StockTransferLines": list(lines)
    }


def error(answer: dict[str, Any]) -> tuple[int, str]:
    return answer["error"]["code"], answer["error"]["message"]["value"]


# --- what a transfer moves and how it is answered and read back ---


@pytest.mark.timeout(20)
def test_a_transfer_moves_stock_batches_and_serials_and_is_answered_like_a_document() -> None:
    async def scenario() -> None:
        async with stack() as s:
            assert (await s.post("InventoryGenExits", {
                "Reference2": "X1",
                "DocumentLines": [{"ItemCode": "C-400", "Quantity": 1, "WarehouseCode": "02"}],
            }))[0] == 201  # fmt: skip
            body = transfer(
                "T1",
                ln("A-100", "2.5"),
                ln("B-200", 3, BatchNumbers=[
                    {"BatchNumber": "LOT-1", "Quantity": 3},
                ]),
                ln("S-300", 1, to="03", SerialNumbers=[{"InternalSerialNumber": "SN-2"}]),
                DocDate="2026-11-23",
                U_SkuflowKey="T1",
            )  # fmt: skip
            status, answer = await s.post("StockTransfers", body)
            assert status == 201
            assert answer == {
                "odata.metadata": f"{s.sim.url}/$metadata#StockTransfers/@Element",
                "DocEntry": 1,  # numbered apart from the goods issue
                "DocNum": 1,
                "DocDate": "2026-11-23",
                "Reference1": "1",
                "Reference2": "T1",
                "Comments": "skuflow posting T1",
                "JournalMemo": "Inventory Transfer",
                "FromWarehouse": "01",
                "ToWarehouse": "02",
                "DocumentStatus": "bost_Close",
                "StockTransferLines": [
                    {
                        "LineNum": 0,
                        "ItemCode": "A-100",
                        "Quantity": 2.5,
                        "FromWarehouseCode": "01",
                        "WarehouseCode": "02",
                        "BatchNumbers": [],
                        "SerialNumbers": [],
                    },
                    {
                        "LineNum": 1,
                        "ItemCode": "B-200",
                        "Quantity": 3,
                        "FromWarehouseCode": "01",
                        "WarehouseCode": "02",
                        "BatchNumbers": [{"BatchNumber": "LOT-1", "Quantity": 3}],
                        "SerialNumbers": [],
                    },
                    {
                        "LineNum": 2,
                        "ItemCode": "S-300",
                        "Quantity": 1,
                        "FromWarehouseCode": "01",
                        "WarehouseCode": "03",
                        "BatchNumbers": [],
                        "SerialNumbers": [{"InternalSerialNumber": "SN-2"}],
                    },
                ],
                "U_SkuflowKey": "T1",
            }
            sim = s.sim
            assert at(sim, "A-100", "01", "02") == (7.5, 2.5)
            assert sim.batch_stock("B-200", "01", "LOT-1") == 2
            assert sim.batch_stock("B-200", "02", "LOT-1") == 3
            assert at(sim, "B-200", "01", "02") == (2, 3)
            assert (sim.serials("S-300", "01"), sim.serials("S-300", "03")) == ({"SN-1"}, {"SN-2"})
            assert at(sim, "S-300", "01", "03") == (1, 1)
            [_, posted] = sim.documents
            assert (posted.kind, posted.entity, posted.doc_entry) == (
                "transfer",
                "StockTransfers",
                1,
            )

            status, read = await s.get("StockTransfers(1)")
            assert status == 200
            assert read == answer
            status, found = await s.get(
                "StockTransfers?$filter=Reference2 eq 'T1'&$select=DocEntry,DocNum"
            )
            assert (status, found["value"]) == (200, [{"DocEntry": 1, "DocNum": 1}])
            _, other = await s.get("StockTransfers?$filter=Reference2 eq 'X1'")
            assert other["value"] == []  # the goods issue is not a transfer
            _, by_udf = await s.get("StockTransfers?$filter=U_SkuflowKey eq 'T1'&$select=DocEntry")
            assert by_udf["value"] == [{"DocEntry": 1}]
            assert (await s.get("StockTransfers(2)"))[0] == 404
            status, bad = await s.get("StockTransfers?$select=Nope")
            assert (status, error(bad)) == (
                400,
                (-1000, "Property 'Nope' of 'StockTransfer' is invalid"),
            )
            base = sim.url.removesuffix("/b1s/v1")
            async with s.session.get(f"{base}/_sim/stock") as response:
                rows = {(r["ItemCode"], r["WarehouseCode"]): r for r in await response.json()}
            assert rows["B-200", "02"]["Batches"] == {"LOT-1": 3}
            assert rows["S-300", "03"]["SerialNumbers"] == ["SN-2"]

    run(scenario)


@pytest.mark.timeout(20)
def test_line_warehouses_override_the_headers_and_the_header_fills_lines_without_them() -> None:
    async def scenario() -> None:
        async with stack() as s:
            body = {
                "FromWarehouse": "01",
                "ToWarehouse": "02",
                "JournalMemo": "skuflow T2",
                "StockTransferLines": [
                    {"ItemCode": "A-100", "Quantity": 1},  # header → 01 to 02
                    {"ItemCode": "A-100", "Quantity": 2, "WarehouseCode": "03"},  # 01 to 03
                    ln("C-400", 1, "02", "03"),  # both overridden: 02 to 03
                ],
            }
            status, answer = await s.post("StockTransfers", body)
            assert status == 201
            ends = [
                (x["FromWarehouseCode"], x["WarehouseCode"]) for x in answer["StockTransferLines"]
            ]
            assert ends == [("01", "02"), ("01", "03"), ("02", "03")]
            assert (answer["FromWarehouse"], answer["ToWarehouse"]) == ("01", "02")
            assert answer["JournalMemo"] == "skuflow T2"
            sim = s.sim
            assert at(sim, "A-100", "01", "02", "03") == (7, 1, 2)
            assert at(sim, "C-400", "01", "02", "03") == (4, 0, 1)
            lines_only = {"StockTransferLines": [ln("A-100", 1, "02", "01")]}
            status, answer = await s.post("StockTransfers", lines_only)
            assert status == 201
            assert (answer["FromWarehouse"], answer["ToWarehouse"]) == ("02", "01")  # line 1's
            assert answer["DocEntry"] == 2
            assert at(sim, "A-100", "01", "02", "03") == (8, 0, 2)

    run(scenario)


# --- refusals: all lines or none ---

LOT_9 = [{"BatchNumber": "LOT-9", "Quantity": 1}]
REFUSALS = [
    pytest.param(
        transfer("T", ln("A-100", 1), ln("NOPE", 1)), -2028, b1_model.NOT_FOUND[1],
        id="unknown item",
    ),
    pytest.param(
        transfer("T", ln("A-100", 1), ln("A-100", 1, to="99")), -2028, "No matching records",
        id="unknown destination",
    ),
    pytest.param(
        transfer("T", ln("A-100", 1, source="99")), -2028, "No matching records",
        id="unknown source",
    ),
    pytest.param(
        {"StockTransferLines": [{"ItemCode": "A-100", "Quantity": 1, "WarehouseCode": "02"}]},
        -2028, "No matching records", id="no source anywhere",
    ),
    pytest.param(
        transfer("T", ln("A-100", 1), ToWarehouse="99"), -2028, "No matching records",
        id="unknown header warehouse",
    ),
    pytest.param(
        transfer("T", ln("A-100", 1), ln("C-400", 1, source="02", to="02")), -10,
        "Source and target warehouses must differ  [WTR1.WhsCode][line: 2]",
        id="source is destination",
    ),
    pytest.param(
        {"FromWarehouse": "01", "ToWarehouse": "01",
         "StockTransferLines": [{"ItemCode": "A-100", "Quantity": 1}]},
        -10, "[WTR1.WhsCode][line: 1]", id="source is destination by the header",
    ),
    pytest.param(
        transfer("T", ln("A-100", 1), ln("OLD-1", 1)), -10, "10001069 - Item OLD-1 is inactive",
        id="inactive item",
    ),
    pytest.param(
        transfer("T", ln("FRZ-1", 1)), -10, "10001069 - Item FRZ-1 is inactive", id="frozen item",
    ),
    pytest.param(
        transfer("T", ln("A-100", 1), ln("SVC-1", 1)), -10,
        "Item SVC-1 is not an inventory item  [WTR1.ItemCode][line: 2]", id="non-inventory item",
    ),
    pytest.param(
        transfer("T", ln("A-100", 0)), -10, "Quantity must be positive  [WTR1.Quantity][line: 1]",
        id="zero quantity",
    ),
    pytest.param(
        transfer("T", ln("A-100", 4), ln("C-400", 2, source="02", to="01")), -10,
        "Quantity falls into negative inventory  [WTR1.ItemCode][line: 2]",
        id="deficit at the source",
    ),
    pytest.param(
        transfer("T", ln("A-100", 6), ln("A-100", 5, to="03")), -10,
        "Quantity falls into negative inventory  [WTR1.ItemCode][line: 2]",
        id="deficit over two lines",
    ),
    pytest.param(
        transfer("T", ln("C-400", 1), ln("C-400", 2, source="02", to="03")), -10,
        "Quantity falls into negative inventory  [WTR1.ItemCode][line: 2]",
        id="stock arriving by one line is not there for another",
    ),
    pytest.param(
        transfer("T", ln("B-200", 1)), -4014,
        "Cannot add row without complete selection of batch/serial numbers", id="missing batch",
    ),
    pytest.param(
        transfer("T", ln("B-200", 2, BatchNumbers=LOT_9[:1] * 2)), -10,
        "480000112 - Batch/serial number LOT-9 selected in row 1 does not exist",
        id="unknown batch",
    ),
    pytest.param(
        transfer("T", ln("B-200", 3, BatchNumbers=[{"BatchNumber": "LOT-1", "Quantity": 3}]),
                 ln("B-200", 3, BatchNumbers=[{"BatchNumber": "LOT-1", "Quantity": 3}], to="03")),
        -10, "10001153 - Insufficient quantity for item B-200 with batch LOT-1",
        id="batch short over two lines",
    ),
    pytest.param(
        transfer("T", ln("S-300", 1)), -4014, "complete selection of batch/serial numbers",
        id="missing serials",
    ),
    pytest.param(
        transfer("T", ln("S-300", 1, SerialNumbers=[{"InternalSerialNumber": "SN-7"}])), -10,
        "Batch/serial number SN-7 selected in row 1 does not exist", id="unknown serial",
    ),
    pytest.param(
        transfer("T", ln("S-300", 1, SerialNumbers=[{"InternalSerialNumber": "SN-1"}], source="02",
                         to="01")),
        -10, "Batch/serial number SN-1 selected in row 1 does not exist",
        id="serial not at the source",
    ),
    pytest.param(
        transfer("T", ln("A-100", 1), DocumentLines=[]), -1000,
        "Property 'DocumentLines' of 'StockTransfer' is invalid", id="a document's lines",
    ),
    pytest.param(
        transfer("T", ln("A-100", 1, Remarks="x")), -1000,
        "Property 'Remarks' of 'StockTransferLine' is invalid", id="unknown line property",
    ),
    pytest.param(
        transfer("T123456789012", ln("A-100", 1)), -1000,
        "Value too long in property 'Reference2' of 'StockTransfer'", id="key too long",
    ),
    pytest.param(
        {"FromWarehouse": "01", "StockTransferLines": []}, -5002,
        "StockTransfers: the document must have at least one row", id="no lines",
    ),
]  # fmt: skip


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("body", "code", "message"), REFUSALS)
def test_a_refused_transfer_is_answered_as_b1_answers_and_moves_nothing(
    body: dict[str, Any], code: int, message: str
) -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, answer = await s.post("StockTransfers", body)
            assert status == 400
            assert error(answer)[0] == code
            assert message in error(answer)[1]
            s.unmoved()

    run(scenario)


# --- the fault knobs apply to transfers as to the other documents ---


@pytest.mark.timeout(20)
def test_lock_storms_and_2035_collisions_refuse_a_transfer_and_write_nothing() -> None:
    async def scenario() -> None:
        async with stack() as s:
            body = transfer("T1", ln("A-100", 1))
            s.sim.set_faults(lock_storm_rate=1.0)
            status, answer = await s.post("StockTransfers", body)
            assert (status, error(answer)) == (400, b1_model.MODIFIED)
            s.sim.set_faults(lock_storm_rate=0.0, collision_count=1)
            status, answer = await s.post("StockTransfers", body)
            assert (status, error(answer)) == (400, b1_model.DUPLICATE)
            s.unmoved()
            assert (await s.post("StockTransfers", body))[0] == 201
            assert s.sim.collisions == 1
            assert at(s.sim, "A-100", "01", "02") == (9, 1)

    run(scenario)


@pytest.mark.timeout(20)
def test_a_transfer_applied_then_answered_2035_is_found_by_its_key() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(collision_after_apply=1)
            status, answer = await s.post("StockTransfers", transfer("T7", ln("A-100", 2)))
            assert (status, error(answer)) == (400, b1_model.DUPLICATE)
            _, found = await s.get(
                "StockTransfers?$filter=Reference2 eq 'T7'&$select=DocEntry,DocNum"
            )
            assert found["value"] == [{"DocEntry": 1, "DocNum": 1}]
            assert at(s.sim, "A-100", "01", "02") == (8, 2)

    run(scenario)


@pytest.mark.timeout(20)
def test_a_unique_key_field_answers_2035_for_a_second_transfer_with_the_key() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(unique_key_field="JournalMemo")
            body = transfer("T1", ln("A-100", 1), JournalMemo="skuflow T1")
            assert (await s.post("StockTransfers", body))[0] == 201
            status, answer = await s.post("StockTransfers", body)
            assert (status, error(answer)) == (400, b1_model.DUPLICATE)
            exit_ = {
                "JournalMemo": "skuflow T1",  # another entity: its own set of keys
                "DocumentLines": [{"ItemCode": "A-100", "Quantity": 1, "WarehouseCode": "01"}],
            }
            assert (await s.post("InventoryGenExits", exit_))[0] == 201
            other = transfer("T2", ln("A-100", 1), JournalMemo="skuflow T2")
            assert (await s.post("StockTransfers", other))[0] == 201
            assert [d.body["JournalMemo"] for d in s.sim.documents] == ["skuflow T1"] * 2 + [
                "skuflow T2"
            ]
            assert at(s.sim, "A-100", "01", "02") == (7, 2)

    run(scenario)


@pytest.mark.timeout(20)
def test_a_transfer_touches_its_items_for_the_conflict_window() -> None:
    async def scenario() -> None:
        async with stack(window_ms=300) as s:
            assert (await s.post("StockTransfers", transfer("T1", ln("A-100", 1))))[0] == 201
            exit_ = {"DocumentLines": [{"ItemCode": "A-100", "Quantity": 1, "WarehouseCode": "02"}]}
            status, answer = await s.post("InventoryGenExits", exit_)
            assert (status, error(answer)) == (400, b1_model.MODIFIED)
            other = transfer("T2", ln("C-400", 1))  # another item
            assert (await s.post("StockTransfers", other))[0] == 201
            await asyncio.sleep(0.35)
            assert (await s.post("InventoryGenExits", exit_))[0] == 201
            assert s.sim.stock("A-100", "02") == 0

    run(scenario)


@pytest.mark.timeout(20)
def test_a_transfer_being_written_holds_its_items() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(post_ms=300)
            slow = asyncio.create_task(s.post("StockTransfers", transfer("T1", ln("C-400", 1))))
            await asyncio.sleep(0.1)
            entry = {"DocumentLines": [{"ItemCode": "C-400", "Quantity": 1, "WarehouseCode": "03"}]}
            status, answer = await s.post("InventoryGenEntries", entry)
            assert (status, error(answer)) == (400, b1_model.MODIFIED)
            assert s.sim.held_conflicts == 1
            assert (await slow)[0] == 201
            assert at(s.sim, "C-400", "01", "02") == (3, 2)
            assert s.sim.stock("C-400", "03") == 0

    run(scenario)


@pytest.mark.timeout(20)
def test_a_transfer_answered_after_the_client_gave_up_is_there_to_be_found() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(timeout_after_apply_ms=800)
            with pytest.raises(TimeoutError):
                await s.post("StockTransfers", transfer("T9", ln("A-100", 3)), timeout=0.3)
            _, found = await s.get(
                "StockTransfers?$filter=Reference2 eq 'T9'&$select=DocEntry,DocNum"
            )
            assert found["value"] == [{"DocEntry": 1, "DocNum": 1}]
            assert at(s.sim, "A-100", "01", "02") == (7, 3)

    run(scenario)
