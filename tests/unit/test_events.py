"""The contract's events decode exactly; bad input becomes a precise DecodeFailure."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from handlers.common.router import DomainRouter
from handlers.dispatch.events import DispatchConfirmed
from handlers.flows import default_families
from handlers.stock.events import StockAdjusted
from worker.messages import DecodeFailure, Message

pytestmark = pytest.mark.timeout(10)

STOCK: dict[str, Any] = {
    "type": "stock.adjusted",
    "event_id": "adj-000001",
    "occurred_at": "2026-11-23T10:15:00Z",
    "source": "ims",
    "source_ref": "IMS-ADJ-100234",
    "sku": "ABC-123",
    "warehouse": "LOC-01",
    "quantity": -3,
    "reason": "damaged",
    "batch_number": None,
    "serial_numbers": [],
}
DISPATCH: dict[str, Any] = {
    "type": "dispatch.confirmed", "event_id": "dsp-000001", "occurred_at": "2026-11-23T09:58:00Z",
    "source": "seko", "source_ref": "SEKO-DSP-778", "channel": "amazon",
    "order_id": "171-1234567-1234567", "marketplace_id": "A1F83G8C2ARO7P",
    "ship_by": "2026-11-23T18:00:00Z", "ship_date": "2026-11-23T09:58:00Z",
    "carrier_code": "Royal Mail", "carrier_name": None, "shipping_method": "Tracked 24",
    "tracking_number": "RM123456789GB", "package_reference_id": "1", "warehouse": "LOC-01",
    "lines": [{"order_item_id": "12345678901234", "sku": "ABC-123", "quantity": 1}],
}  # fmt: skip

ROUTER = DomainRouter(default_families())


def decode(payload: dict[str, Any] | bytes) -> Any:
    value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    message = Message(
        topic="t", partition=0, offset=0, key=None, value=value, headers=(), timestamp_ms=0
    )
    return ROUTER.decode(message)


def test_the_contracts_stock_example_decodes_with_a_decimal_quantity() -> None:
    event = decode(STOCK)
    assert isinstance(event, StockAdjusted)
    assert event.quantity == Decimal(-3)
    info = ROUTER.describe(event)
    assert (info.event_type, info.ordering_key, info.sku) == (
        "stock.adjusted",
        "sku:ABC-123",
        "ABC-123",
    )


def test_the_contracts_dispatch_example_decodes_and_is_urgent_and_ordered_by_order() -> None:
    event = decode(DISPATCH)
    assert isinstance(event, DispatchConfirmed)
    info = ROUTER.describe(event)
    assert info.priority == "urgent"
    assert info.ordering_key == "order:amazon:171-1234567-1234567"


@pytest.mark.parametrize("quantity", ["1.25", 1.25, "-0.5", 7])
def test_quantities_are_decimals_from_numbers_or_strings(quantity: object) -> None:
    event = decode({**STOCK, "quantity": quantity})
    assert isinstance(event, StockAdjusted)
    assert event.quantity == Decimal(str(quantity))


def test_unknown_extra_fields_are_ignored() -> None:
    assert isinstance(decode({**STOCK, "colour": "red", "extra": {"a": 1}}), StockAdjusted)


@pytest.mark.parametrize(
    ("change", "kind", "fragment"),
    [
        ({"quantity": 0}, "schema_violation", "non-zero - at `$.quantity`"),
        ({"quantity": "NaN"}, "schema_violation", "finite"),
        ({"quantity": "1.1234567"}, "schema_violation", "decimal places"),
        ({"quantity": 1e12}, "schema_violation", "magnitude"),
        ({"quantity": "three"}, "schema_violation", "$.quantity"),
        ({"sku": ""}, "schema_violation", "$.sku"),
        ({"occurred_at": "2026-11-23T10:15:00"}, "schema_violation", "timezone"),
        ({"sku": None}, "schema_violation", "$.sku"),
        ({"type": "stock.moved"}, "unknown_type", "known types: stock.adjusted"),
        ({"serial_numbers": ["S1", "S1"]}, "schema_violation", "unique"),
    ],
)
def test_bad_stock_events_fail_with_kind_and_path(
    change: dict[str, Any], kind: str, fragment: str
) -> None:
    failure = decode({**STOCK, **change})
    assert isinstance(failure, DecodeFailure)
    assert failure.kind == kind
    assert fragment in failure.reason


def test_a_missing_required_field_is_named() -> None:
    payload = {k: v for k, v in STOCK.items() if k != "warehouse"}
    failure = decode(payload)
    assert isinstance(failure, DecodeFailure)
    assert "missing required field `warehouse`" in failure.reason


def test_dispatch_lines_need_whole_positive_quantities() -> None:
    lines = [
        {"order_item_id": "1", "sku": "A", "quantity": "1.5"},
        {"order_item_id": "2", "sku": "B", "quantity": -1},
    ]
    failure = decode({**DISPATCH, "lines": lines})
    assert isinstance(failure, DecodeFailure)
    assert "whole number of units - at `$.lines[0].quantity`" in failure.reason
    assert "positive - at `$.lines[1].quantity`" in failure.reason


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"\xff\xfe", "undecodable"),
        (b'{"type": "stock.adjusted"', "undecodable"),
        (b"[]", "schema_violation"),
        (b"{}", "unknown_type"),
        (b'{"type": "skuflow.unroutable"}', "unknown_type"),
        (b" " * (1024 * 1024 + 1), "payload_too_large"),
    ],
)
def test_undecodable_payloads_say_why(raw: bytes, kind: str) -> None:
    failure = decode(raw)
    assert isinstance(failure, DecodeFailure)
    assert failure.kind == kind
