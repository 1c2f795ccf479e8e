"""Orders the ERP would refuse never reach it: every problem of an order named at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import msgspec
import pytest

from config.settings import OrdersSettings
from handlers.common.mappings import Mappings
from handlers.common.masterdata import MasterData
from handlers.orders.events import OrderLine, OrderReceived
from handlers.orders.mapping import OrderMapper
from handlers.ports.erp import ItemMaster, SalesLine, SalesOrder, WarehouseMaster
from worker.outcomes import Reject

pytestmark = pytest.mark.timeout(10)

PURCHASED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


class Items:
    """The ERP's master data, as the unit tier needs it (reads only)."""

    async def get_item(self, item_code: str) -> ItemMaster | None:
        flags = {"OLD": {"valid": False}, "ICE": {"frozen": True}}
        if item_code not in ("A1", "A2", "OLD", "ICE"):
            return None
        values: dict[str, Any] = {
            "valid": True, "frozen": False, "inventory_item": True, "manages_batches": False,
            "manages_serials": False, **flags.get(item_code, {}),
        }  # fmt: skip
        return ItemMaster(item_code=item_code, **values)

    async def get_warehouse(self, code: str) -> WarehouseMaster | None:
        return WarehouseMaster(code=code) if code in ("01", "02") else None


def order(*lines: OrderLine, **extra: Any) -> OrderReceived:
    values: dict[str, Any] = {
        "event_id": "ord-1", "occurred_at": PURCHASED, "source": "amazon",
        "source_ref": "171-1", "channel": "amazon", "order_id": "171-1",
        "marketplace_id": "A1F83G8C2ARO7P", "revision": PURCHASED, "purchased_at": PURCHASED,
        "warehouse": "LOC-01", "currency": "GBP", **extra,
    }  # fmt: skip
    return OrderReceived(lines=list(lines), **values)


def line(item_id: str, sku: str, quantity: int = 1, **extra: Any) -> OrderLine:
    return OrderLine(order_item_id=item_id, sku=sku, quantity=Decimal(quantity), **extra)


def mapped(event: OrderReceived, **settings: Any) -> SalesOrder | Reject:
    options = {"default_customers": {"*": "C-AMAZON"}, "tax_codes": {}, **settings}
    mapper = OrderMapper(
        OrdersSettings(**options),
        Mappings({"SKU-1": "A1", "SKU-2": "A2", "SKU-OLD": "OLD", "SKU-ICE": "ICE",
                  "SKU-GONE": "ZZ"}, {"LOC-01": "01", "LOC-09": "09"}),
        MasterData(Items()),
    )  # fmt: skip
    return anyio.run(mapper.sales_order, event)


def test_an_order_maps_to_one_sales_order_for_the_marketplaces_customer() -> None:
    ship_by = PURCHASED + timedelta(days=2)
    result = mapped(
        order(
            line("i1", "SKU-1", 2, unit_price=Decimal("9.99"), promotion_discount=Decimal(1),
                 tax_code="A_GEN_STANDARD"),
            line("i2", "SKU-2", 1, unit_price=Decimal("5.00")),
            ship_by=ship_by,
        ),
        default_customers={"A1F83G8C2ARO7P": "C-AMZ-UK", "*": "C-AMAZON"},
        tax_codes={"A_GEN_STANDARD": "S1", "*": "S0"},
    )  # fmt: skip
    assert result == SalesOrder(
        reference="171-1",
        customer_code="C-AMZ-UK",
        order_date=PURCHASED.date(),
        due_date=ship_by.date(),
        currency="GBP",
        remarks="amazon order 171-1 (A1F83G8C2ARO7P)",
        lines=(
            SalesLine(line_id="i1", item_code="A1", quantity=Decimal(2), warehouse_code="01",
                      unit_price=Decimal("9.99"), discount=Decimal(1), tax_code="S1"),
            SalesLine(line_id="i2", item_code="A2", quantity=Decimal(1), warehouse_code="01",
                      unit_price=Decimal("5.00"), tax_code="S0"),
        ),
    )  # fmt: skip


def test_every_missing_mapping_of_an_order_is_named_in_one_record() -> None:
    result = mapped(
        order(line("i1", "SKU-X"), line("i2", "SKU-1", tax_code="B_ODD"), warehouse="LOC-77"),
        default_customers={"A13V1IB3VIYZZH": "C-FR"},
        tax_codes={"A_GEN_STANDARD": "S1"},
    )
    assert isinstance(result, Reject)
    assert result.kind == "order_unmapped"
    assert "i1: tax" not in result.reason  # no classification: the ERP's default tax code
    for part in ("no default customer", "'LOC-77' has no ERP warehouse",
                 "'SKU-X' is not in the SKU", "i2: tax classification 'B_ODD'"):  # fmt: skip
        assert part in result.reason, (part, result.reason)


@pytest.mark.parametrize(
    ("sku", "kind", "text"),
    [
        ("SKU-GONE", "unknown_sku", "item 'ZZ' not in the ERP"),
        ("SKU-OLD", "inactive_item", "item 'OLD' is inactive"),
        ("SKU-ICE", "inactive_item", "item 'ICE' is frozen"),
    ],
)
def test_an_item_the_erp_would_refuse_is_an_exception_of_its_kind(
    sku: str, kind: str, text: str
) -> None:
    result = mapped(order(line("i1", "SKU-1"), line("i2", sku)))
    assert isinstance(result, Reject)
    assert (result.kind, text in result.reason) == (kind, True), result.reason


def test_an_unknown_erp_warehouse_is_named() -> None:
    result = mapped(order(line("i1", "SKU-1"), warehouse="LOC-09"))
    assert isinstance(result, Reject)
    assert result.kind == "unknown_warehouse"
    assert "'09' does not exist" in result.reason


def test_an_order_naming_no_warehouse_ships_from_the_default_location() -> None:
    result = mapped(order(line("i1", "SKU-1"), warehouse=None), default_warehouse="LOC-01")
    assert isinstance(result, SalesOrder)
    assert result.lines[0].warehouse_code == "01"
    unset = mapped(order(line("i1", "SKU-1"), warehouse=None))
    assert isinstance(unset, Reject)
    assert "default_warehouse is unset" in unset.reason


def _decoded(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return msgspec.convert(payload, OrderReceived).problems()


def test_order_events_refuse_what_no_erp_order_can_hold() -> None:
    event = msgspec.to_builtins(order(line("i1", "SKU-1"), line("i1", "SKU-2")))
    event["lines"][0]["quantity"] = "1.5"
    event["lines"][1]["unit_price"] = "-1"
    event["currency"] = None
    problems = dict(_decoded(event))
    assert problems == {
        "$.lines[0].quantity": "must be a whole number of units",
        "$.lines[1].unit_price": "must be a finite amount >= 0",
        "$.lines[1].order_item_id": "order item ids must be unique",
        "$.currency": "required when lines carry prices",
    }
