"""The sample traffic of ``skuflow dev`` follows the event contract (no broker needed)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from devstack.traffic import (
    BATCH_LOTS,
    UNMAPPED_LOCATION,
    WAREHOUSES,
    SampleEvents,
    SampleOrder,
)
from handlers.common.router import DomainRouter
from handlers.dispatch.events import DispatchConfirmed
from handlers.flows import default_families
from handlers.stock.events import StockAdjusted
from worker.messages import DecodeFailure, Message


@pytest.mark.timeout(60)
def test_sample_traffic_follows_the_contract() -> None:
    router = DomainRouter(default_families())
    events = SampleEvents(50, seed=3)
    now = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
    outcomes: Counter[str] = Counter()
    for offset in range(5000):
        sample = events.next(now)
        message = Message(
            topic="t",
            partition=0,
            offset=offset,
            key=sample.key,
            value=sample.value,
            headers=(),
            timestamp_ms=0,
        )
        decoded = router.decode(message)
        if sample.kind == "bad":
            assert isinstance(decoded, DecodeFailure), sample
            outcomes[decoded.kind] += 1
            continue
        assert not isinstance(decoded, DecodeFailure), (sample, decoded)
        assert decoded.occurred_at.utcoffset() is not None
        if isinstance(decoded, StockAdjusted):
            assert sample.kind == "stock"
            assert sample.key == decoded.sku.encode()
            assert isinstance(decoded.quantity, Decimal)
            assert decoded.quantity != 0
            if decoded.sku not in events.skus:
                assert decoded.sku.startswith("GHOST-")
                outcomes["ghost"] += 1
            if decoded.warehouse not in WAREHOUSES:
                assert decoded.warehouse == UNMAPPED_LOCATION
                outcomes["ghost"] += 1
        else:
            assert isinstance(decoded, DispatchConfirmed)
            assert sample.kind == "dispatch"
            assert sample.key == decoded.order_id.encode()
            assert re.fullmatch(r"\d{3}-\d{7}-\d{7}", decoded.order_id)
            assert now - timedelta(hours=2) <= decoded.ship_by <= now + timedelta(hours=8)
            assert 1 <= len(decoded.lines) <= 3
            assert all(line.quantity == line.quantity.to_integral_value() for line in decoded.lines)
        outcomes[type(decoded).__name__] += 1
    assert outcomes["StockAdjusted"] > 3 * outcomes["DispatchConfirmed"] > 0
    assert {"undecodable", "schema_violation", "unknown_type"} <= set(outcomes)
    bad = sum(outcomes[kind] for kind in ("undecodable", "schema_violation", "unknown_type"))
    assert 20 <= bad <= 100  # about 1%
    assert 10 <= outcomes["ghost"] <= 80  # about 1% of the stock events


def test_batches_come_from_the_lots_and_serial_exits_take_the_opening_serials() -> None:
    """What ``skuflow dev`` seeds the SAP B1 simulator with is what the traffic moves."""
    events = SampleEvents(200, seed=7)
    assert events.batch_skus
    assert events.serial_skus
    assert not events.batch_skus & events.serial_skus
    router, now = DomainRouter(default_families()), datetime(2026, 11, 23, tzinfo=UTC)
    issued: Counter[tuple[str, str]] = Counter()
    exits = 0
    for _ in range(20_000):
        sample = events.next(now)
        if sample.kind != "stock":
            continue
        message = Message(
            topic="t", partition=0, offset=0, key=b"", value=sample.value, headers=(),
            timestamp_ms=0,
        )  # fmt: skip
        event = router.decode(message)
        assert isinstance(event, StockAdjusted)
        assert (event.batch_number is not None) == (event.sku in events.batch_skus)
        assert event.batch_number is None or event.batch_number in BATCH_LOTS
        assert bool(event.serial_numbers) == (event.sku in events.serial_skus)
        if event.serial_numbers and event.quantity < 0:
            place = (event.sku, event.warehouse)  # the next ones (a bad sample may skip some)
            first = int(event.serial_numbers[0].rsplit("-S", 1)[1])
            wanted = [f"{event.sku}-S{first + n}" for n in range(-int(event.quantity))]
            assert event.serial_numbers == wanted
            assert first >= issued[place]
            issued[place] = first + len(wanted)
            exits += 1
        elif event.serial_numbers:
            assert all(re.fullmatch(r"SN\d{10}", n) for n in event.serial_numbers)
    assert exits > 10


def _dispatch(sample_value: bytes) -> DispatchConfirmed:
    message = Message(
        topic="t", partition=0, offset=0, key=b"", value=sample_value, headers=(), timestamp_ms=0
    )
    decoded = DomainRouter(default_families()).decode(message)
    assert isinstance(decoded, DispatchConfirmed), decoded
    return decoded


@pytest.mark.timeout(60)
def test_every_dispatch_order_reaches_the_hook_first_and_the_deadline_shares_hold() -> None:
    """The hook sees each dispatch's order before the event exists (``skuflow dev`` registers it
    with the SP-API simulator); ~2% are due within 2 h, ~0.5% late, ~1% name an unknown item."""
    orders: list[SampleOrder] = []
    events = SampleEvents(50, seed=11, dispatch_share=0.5, on_order=orders.append)
    now = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
    shares: Counter[str] = Counter()
    for _ in range(8000):
        seen = len(orders)
        sample = events.next(now)
        if sample.kind != "dispatch":
            assert len(orders) == seen
            assert sample.order is None
            continue
        assert len(orders) == seen + 1
        assert orders[-1] is sample.order
        order, event = orders[-1], _dispatch(sample.value)
        assert (event.order_id, event.marketplace_id) == (order.order_id, order.marketplace_id)
        assert event.ship_by == order.latest_ship_date
        lines = [(line.order_item_id, line.sku, int(line.quantity)) for line in event.lines]
        known = {item_id for item_id, _sku, _quantity in order.items}
        unknown = [line for line in lines if line[0] not in known]
        assert [(sku, n) for _i, sku, n in lines] == [(sku, n) for _i, sku, n in order.items]
        slack = event.ship_by - now
        shares["dispatch"] += 1
        if unknown:
            assert len(unknown) == 1
            assert order.scenario == "unknown_item"
            shares["unknown_item"] += 1
        else:
            assert lines == list(order.items)
        if slack < timedelta(0):
            assert order.scenario == "missed"
            shares["missed"] += 1
        elif slack < timedelta(hours=2):
            assert order.scenario == "at_risk"
            shares["at_risk"] += 1
        else:  # the others stay clear of the 2 h at-risk threshold by an hour
            assert slack >= timedelta(hours=3)
    dispatches = shares["dispatch"]
    assert 3600 <= dispatches <= 4400
    assert 0.012 <= shares["at_risk"] / dispatches <= 0.03, shares
    assert 0.0015 <= shares["missed"] / dispatches <= 0.01, shares
    assert 0.005 <= shares["unknown_item"] / dispatches <= 0.016, shares


def test_dispatch_share_can_be_capped_and_bad_input_stays_about_one_percent() -> None:
    events = SampleEvents(50, seed=5, dispatch_share=0.01)
    kinds = Counter(events.next(datetime(2026, 11, 23, tzinfo=UTC)).kind for _ in range(20_000))
    assert 100 <= kinds["dispatch"] <= 300, kinds
    assert 100 <= kinds["bad"] <= 300, kinds
    with pytest.raises(ValueError, match="dispatch_share"):
        SampleEvents(5, dispatch_share=1.5)
