"""Ghost stock is impossible: every invalid movement is rejected with a precise kind."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio
import pytest

from handlers.common.mappings import Mappings as StockMappings
from handlers.common.masterdata import MasterData
from handlers.ports.erp import (
    DocumentKind,
    ItemMaster,
    PostedDocument,
    StockDocument,
    WarehouseMaster,
)
from handlers.stock import check_warehouses
from handlers.stock.events import StockAdjusted, StockTransferred
from handlers.stock.handler import StockHandler
from worker.groupcommit import GroupCommitWriter
from worker.outcomes import Reject

pytestmark = pytest.mark.timeout(10)


class MasterDataOnly:
    """An ERP that only answers master-data reads (the unit tier never posts)."""

    def __init__(self, items: dict[str, ItemMaster], warehouses: set[str]) -> None:
        self.items = items
        self.warehouses = warehouses
        self.item_reads = 0

    async def get_item(self, item_code: str) -> ItemMaster | None:
        self.item_reads += 1
        return self.items.get(item_code)

    async def get_warehouse(self, code: str) -> WarehouseMaster | None:
        return WarehouseMaster(code=code) if code in self.warehouses else None

    async def post_document(self, document: StockDocument) -> PostedDocument:
        raise AssertionError("validation never posts")

    async def find_document(self, kind: DocumentKind, key: str) -> PostedDocument | None:
        raise AssertionError("validation never posts")


def item(code: str, plants: dict[str, ItemMaster] | None = None, **flags: bool) -> ItemMaster:
    values: dict[str, Any] = {
        "valid": True, "frozen": False, "inventory_item": True, "manages_batches": False,
        "manages_serials": False, **flags,
    }  # fmt: skip
    return ItemMaster(item_code=code, plants=plants, **values)


ERP = MasterDataOnly(
    {
        "A0001": item("A0001"),
        "OLD": item("OLD", valid=False),
        "ICE": item("ICE", frozen=True),
        "SVC": item("SVC", inventory_item=False),
        "LOT": item("LOT", manages_batches=True),
        "SER": item("SER", manages_serials=True),
    },
    {"01", "02"},
)


def adjusted(
    sku: str, location: str = "LOC-01", quantity: str = "-2", **extra: Any
) -> StockAdjusted:
    return StockAdjusted(
        event_id="adj-1", occurred_at=datetime.now(UTC), source="ims", source_ref="IMS-1",
        sku=sku, warehouse=location, quantity=Decimal(quantity), reason="count", **extra,
    )  # fmt: skip


def validate(
    event: StockAdjusted,
    skus: dict[str, str] | None = None,
    erp: MasterDataOnly = ERP,
    warehouses: dict[str, str] | None = None,
) -> Any:
    handler = StockHandler(
        pool=None,  # validation does not touch the database
        mappings=StockMappings(skus, warehouses or {"LOC-01": "01", "LOC-09": "09"}),
        master=MasterData(erp),
        writer=GroupCommitWriter(None),  # (not run: validation stages nothing)
    )

    async def run() -> Any:
        return await handler._validate(event)

    return anyio.run(run)


def test_a_valid_movement_maps_to_its_item_and_warehouse() -> None:
    assert validate(adjusted("A0001")) == ("A0001", "01", None)
    assert validate(adjusted("ABC-123"), skus={"ABC-123": "A0001"}) == ("A0001", "01", None)


@pytest.mark.parametrize(
    ("event", "skus", "kind", "fragment"),
    [
        (adjusted("ABC-999"), {"ABC-123": "A0001"}, "unknown_sku", "not in the SKU map"),
        (adjusted("NOPE"), None, "unknown_sku", "not an ERP item"),
        (adjusted("A0001", location="LOC-77"), None, "unmapped_warehouse", "LOC-77"),
        (adjusted("A0001", location="LOC-09"), None, "unknown_warehouse", "'09'"),
        (adjusted("OLD"), None, "inactive_item", "inactive"),
        (adjusted("ICE"), None, "inactive_item", "frozen"),
        (adjusted("SVC"), None, "not_inventory_item", "not an inventory item"),
        (adjusted("LOT"), None, "missing_batch", "batch-managed"),
        (adjusted("SER", serial_numbers=["S1"]), None, "missing_serials", "2 serial"),
    ],
)
def test_invalid_movements_are_rejected_with_a_precise_kind(
    event: StockAdjusted, skus: dict[str, str] | None, kind: str, fragment: str
) -> None:
    verdict = validate(event, skus)
    assert isinstance(verdict, Reject)
    assert verdict.kind == kind
    assert fragment in verdict.reason


class PlantErp(MasterDataOnly):
    """An ERP with plants (SAP ECC): a warehouse is ``<plant>/<storage location>``, an item is
    maintained per plant (its MARC views), each with flags of its own."""

    async def get_warehouse(self, code: str) -> WarehouseMaster | None:
        if code not in self.warehouses:
            return None
        return WarehouseMaster(code=code, plant=code.split("/")[0])


def test_with_plants_an_item_is_judged_by_its_view_in_the_warehouses_plant() -> None:
    erp = PlantErp(
        {
            "M1": item(
                "M1",
                plants={
                    "1000": item("M1"),
                    "2000": item("M1", frozen=True),
                    "3000": item("M1", manages_batches=True),
                },
            ),
        },
        {"1000/0001", "2000/0001", "3000/0001", "4000/0001"},
    )
    locations = {f"LOC-{p}": f"{p}/0001" for p in ("1000", "2000", "3000", "4000")}
    assert validate(adjusted("M1", "LOC-1000"), None, erp, locations) == ("M1", "1000/0001", None)
    frozen = validate(adjusted("M1", "LOC-2000"), None, erp, locations)
    assert isinstance(frozen, Reject)
    assert (frozen.kind, "frozen" in frozen.reason) == ("inactive_item", True)
    batch = validate(adjusted("M1", "LOC-3000"), None, erp, locations)
    assert isinstance(batch, Reject)
    assert batch.kind == "missing_batch"
    elsewhere = validate(adjusted("M1", "LOC-4000"), None, erp, locations)
    assert isinstance(elsewhere, Reject)
    assert elsewhere.kind == "unknown_sku"
    assert "not maintained in plant 4000" in elsewhere.reason


def test_batch_and_serial_managed_items_pass_with_what_they_need() -> None:
    assert validate(adjusted("LOT", batch_number="L-7")) == ("LOT", "01", None)
    assert validate(adjusted("SER", serial_numbers=["S1", "S2"])) == ("SER", "01", None)


def test_master_data_is_cached_and_a_miss_is_retried_after_the_negative_ttl() -> None:
    now = [0.0]
    erp = MasterDataOnly({"A": item("A")}, {"01"})
    master = MasterData(erp, ttl=300, negative_ttl=30, clock=lambda: now[0])

    async def run() -> list[bool]:
        seen = [await master.item("A") is not None for _ in range(3)]
        seen.append(await master.item("NEW") is not None)
        erp.items["NEW"] = item("NEW")  # created in the ERP
        seen.append(await master.item("NEW") is not None)  # still the cached miss
        now[0] = 31.0
        seen.append(await master.item("NEW") is not None)  # miss expired: asked again
        return seen

    assert anyio.run(run) == [True, True, True, False, False, True]
    assert erp.item_reads == 3


def test_concurrent_lookups_of_one_code_share_one_erp_call() -> None:
    erp = MasterDataOnly({"A": item("A")}, {"01"})
    master = MasterData(erp)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(master.item, "A")

    anyio.run(run)
    assert erp.item_reads == 1


def test_start_up_reports_every_mapped_warehouse_the_erp_does_not_have(
    caplog: pytest.LogCaptureFixture,
) -> None:
    erp = MasterDataOnly({}, {"01"})
    with caplog.at_level("ERROR", logger="skuflow.domain"):
        anyio.run(check_warehouses, MasterData(erp), {"LOC-01": "01", "LOC-07": "07"})
    errors = [(r.getMessage(), getattr(r, "warehouse", None)) for r in caplog.records]
    assert errors == [("mapped warehouse does not exist in the ERP", "07")]


def transferred(sku: str, source: str, target: str, quantity: str = "2", **extra: Any) -> Any:
    return StockTransferred(
        event_id="trf-1", occurred_at=datetime.now(UTC), source="wms", source_ref="WMS-T1",
        sku=sku, from_warehouse=source, to_warehouse=target, quantity=Decimal(quantity),
        **extra,
    )  # fmt: skip


def test_a_transfer_is_validated_at_both_ends() -> None:
    assert validate(transferred("A0001", "LOC-01", "LOC-02"), warehouses=TWO) == (
        "A0001",
        "01",
        "02",
    )
    for event, kind, fragment in (
        (transferred("A0001", "LOC-01", "LOC-77"), "unmapped_warehouse", "LOC-77"),
        (transferred("A0001", "LOC-01", "LOC-09"), "unknown_warehouse", "'09'"),
        (transferred("LOT", "LOC-01", "LOC-02"), "missing_batch", "batch-managed"),
        (transferred("A0001", "LOC-01", "LOC-01B"), "invalid_transfer", "nothing moves"),
    ):
        verdict = validate(event, warehouses=TWO)
        assert isinstance(verdict, Reject), event
        assert verdict.kind == kind
        assert fragment in verdict.reason


def test_with_plants_a_transfer_needs_the_material_in_both_plants() -> None:
    erp = PlantErp({"M1": item("M1", plants={"1000": item("M1")})}, {"1000/0001", "2000/0001"})
    locations = {"A": "1000/0001", "B": "2000/0001"}
    verdict = validate(transferred("M1", "A", "B"), None, erp, locations)
    assert isinstance(verdict, Reject)
    assert "not maintained in plant 2000" in verdict.reason


TWO = {"LOC-01": "01", "LOC-01B": "01", "LOC-02": "02", "LOC-09": "09"}
