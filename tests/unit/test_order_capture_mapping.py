"""Order capture's pure parts: a v2026 Order (the model's own example) as the order flow's
event, and which revision publishes what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from handlers.connectors.spapi.orders import Order
from handlers.orders.capture import Known, decide, event_id, lock_key
from handlers.orders.events import OrderCancelled, OrderChanged, OrderLine, OrderReceived

#: The getOrder response example of orders_2026-01-01.json (amzn/selling-partner-api-models
#: 96d516b), trimmed to the fields around the ones skuflow reads; ``buyer`` and the item's
#: ``condition``/``serialNumbers`` stay to show that unknown fields are ignored.
EXAMPLE: dict[str, Any] = {
    "orderId": "202-1234567-8901234",
    "orderAliases": [{"aliasId": "UK-MERCHANT-ORDER-2024-001", "aliasType": "SELLER_ORDER_ID"}],
    "createdTime": "2024-12-25T09:15:00Z",
    "lastUpdatedTime": "2024-12-25T16:30:00Z",
    "programs": ["PRIME"],
    "salesChannel": {
        "channelName": "AMAZON",
        "marketplaceId": "A1F83G8C2ARO7P",
        "marketplaceName": "Amazon.co.uk",
    },
    "buyer": {"buyerName": "John Smith"},
    "fulfillment": {
        "fulfillmentStatus": "SHIPPED",
        "fulfilledBy": "MERCHANT",
        "fulfillmentServiceLevel": "STANDARD",
        "shipByWindow": {
            "earliestDateTime": "2024-12-25T00:00:00Z",
            "latestDateTime": "2024-12-26T23:59:59Z",
        },
    },
    "orderItems": [
        {
            "orderItemId": "20212345678901",
            "quantityOrdered": 3,
            "product": {
                "asin": "B08DFPV54V",
                "sellerSku": "ECHO-DOT-4-UK-CHARCOAL-3PACK",
                "condition": {"conditionType": "NEW", "conditionSubtype": "NEW"},
                "price": {
                    "unitPrice": {"amount": "29.99", "currencyCode": "GBP"},
                    "priceDesignation": "BUSINESS_PRICE",
                },
                "serialNumbers": ["ED4UK-2024-ABC123456789"],
            },
            "proceeds": {
                "proceedsTotal": {"amount": "103.97", "currencyCode": "GBP"},
                "breakdowns": [
                    {"type": "ITEM", "subtotal": {"amount": "89.97", "currencyCode": "GBP"}},
                    {"type": "SHIPPING", "subtotal": {"amount": "10.00", "currencyCode": "GBP"}},
                    {
                        "type": "TAX",
                        "subtotal": {"amount": "4.00", "currencyCode": "GBP"},
                        "detailedBreakdowns": [
                            {"subtype": "ITEM", "value": {"amount": "3.00", "currencyCode": "GBP"}},
                            {
                                "subtype": "SHIPPING",
                                "value": {"amount": "1.00", "currencyCode": "GBP"},
                            },
                        ],
                    },
                ],
            },
            "promotion": {"breakdowns": [{"promotionId": "UK-BOXING-DAY-2024"}]},
        }
    ],
}
REVISION = datetime(2024, 12, 25, 16, 30, tzinfo=UTC)


def order(**changes: Any) -> Order:
    raw = {**EXAMPLE, **changes}
    return msgspec.json.decode(msgspec.json.encode(raw), type=Order)


def with_status(status: str, **changes: Any) -> Order:
    fulfillment = {**EXAMPLE["fulfillment"], "fulfillmentStatus": status}
    return order(fulfillment=fulfillment, **changes)


def test_the_models_example_order_is_an_order_received_with_unit_price_and_item_tax() -> None:
    event, record = decide(order(), None)
    assert record
    assert event == OrderReceived(
        event_id=f"amazon-order-202-1234567-8901234-{1735144200 * 10**6}",
        occurred_at=REVISION,
        source="amazon",
        source_ref="202-1234567-8901234",
        channel="amazon",
        order_id="202-1234567-8901234",
        marketplace_id="A1F83G8C2ARO7P",
        revision=REVISION,
        purchased_at=datetime(2024, 12, 25, 9, 15, tzinfo=UTC),
        status="SHIPPED",
        fulfilled_by="MERCHANT",
        ship_by=datetime(2024, 12, 26, 23, 59, 59, tzinfo=UTC),
        currency="GBP",
        lines=[
            OrderLine(
                order_item_id="20212345678901",
                sku="ECHO-DOT-4-UK-CHARCOAL-3PACK",
                quantity=Decimal(3),
                unit_price=Decimal("29.99"),  # per unit (the ITEM proceeds, 89.97, are the line)
                item_tax=Decimal("3.00"),  # the item's share of TAX 4.00 (1.00 is shipping's)
            )
        ],
    )
    assert event.problems() == []


def item_with(*breakdowns: dict[str, Any], **extra: Any) -> dict[str, Any]:
    line = {**EXAMPLE["orderItems"][0], "proceeds": {"breakdowns": list(breakdowns)}}
    return {**line, **extra}


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currencyCode": "GBP"}


@pytest.mark.parametrize("sign", ["-", ""])
def test_a_discount_is_positive_whatever_sign_amazon_gives_it(sign: str) -> None:
    discount = {"type": "DISCOUNT", "subtotal": money(f"{sign}2.50")}
    event, _ = decide(order(orderItems=[item_with(discount)]), None)
    assert isinstance(event, OrderReceived)
    assert event.lines[0].promotion_discount == Decimal("2.50")


def test_a_tax_without_a_detailed_breakdown_is_its_subtotal_and_the_scheme_its_tax_code() -> None:
    tax = {"type": "TAX", "subtotal": money("4.00")}
    scheme = {"taxCalculationBreakdowns": [{"reportingScheme": "IOSS"}]}
    event, _ = decide(order(orderItems=[item_with(tax, tax=scheme)]), None)
    assert isinstance(event, OrderReceived)
    assert (event.lines[0].item_tax, event.lines[0].tax_code) == (Decimal("4.00"), "IOSS")


def test_items_cancelled_to_quantity_zero_are_left_out_and_fba_is_fulfilled_by_amazon() -> None:
    second = {**EXAMPLE["orderItems"][0], "orderItemId": "20212345678902", "quantityOrdered": 0}
    fulfillment = {**EXAMPLE["fulfillment"], "fulfilledBy": "AMAZON"}
    raw = order(orderItems=[*EXAMPLE["orderItems"], second], fulfillment=fulfillment)
    event, _ = decide(raw, None)
    assert isinstance(event, OrderReceived)
    assert [line.order_item_id for line in event.lines] == ["20212345678901"]
    assert event.fulfilled_by == "AMAZON"


def test_a_pending_order_is_neither_published_nor_recorded() -> None:
    for status in ("PENDING", "PENDING_AVAILABILITY"):
        assert decide(with_status(status), None) == (None, False)


def test_the_same_or_an_older_revision_publishes_nothing() -> None:
    assert decide(order(), Known(REVISION, "SHIPPED")) == (None, False)
    later = Known(REVISION + timedelta(milliseconds=1), "UNSHIPPED")
    assert decide(order(), later) == (None, False)


def test_a_later_revision_is_an_order_changed_and_a_cancellation_an_order_cancelled() -> None:
    earlier = Known(REVISION - timedelta(seconds=1), "UNSHIPPED")
    changed, record = decide(order(), earlier)
    assert isinstance(changed, OrderChanged)
    assert record
    cancelled, record = decide(with_status("CANCELLED"), earlier)
    assert isinstance(cancelled, OrderCancelled)
    assert record
    assert cancelled.event_id == event_id("202-1234567-8901234", REVISION)


def test_an_order_first_seen_cancelled_or_changed_after_its_cancellation_is_only_recorded() -> None:
    assert decide(with_status("CANCELLED"), None) == (None, True)
    gone = Known(REVISION - timedelta(seconds=1), "CANCELLED")
    assert decide(order(), gone) == (None, True)
    assert decide(with_status("CANCELLED"), gone) == (None, True)


def test_an_order_searched_without_its_fulfillment_is_not_decided_on() -> None:
    raw = {k: v for k, v in EXAMPLE.items() if k != "fulfillment"}
    bare = msgspec.json.decode(msgspec.json.encode(raw), type=Order)
    assert decide(bare, None) == (None, False)


def test_the_lock_key_is_a_stable_signed_64_bit_number_per_seller() -> None:
    keys = {lock_key(seller) for seller in ("A2SELLER", "A3SELLER", "default")}
    assert len(keys) == 3
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert lock_key("A2SELLER") == lock_key("A2SELLER")
