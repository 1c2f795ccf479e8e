"""The sample traffic of ``skuflow dev`` follows the event contract (no broker needed)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from devstack.traffic import WAREHOUSES, SampleEvents
from handlers.events import DispatchConfirmed, StockAdjusted
from handlers.families import default_families
from handlers.router import DomainRouter
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
            assert decoded.warehouse in WAREHOUSES
            assert decoded.sku in events.skus
        else:
            assert isinstance(decoded, DispatchConfirmed)
            assert sample.kind == "dispatch"
            assert sample.key == decoded.order_id.encode()
            assert re.fullmatch(r"\d{3}-\d{7}-\d{7}", decoded.order_id)
            assert now < decoded.ship_by <= now + timedelta(hours=7)
            assert 1 <= len(decoded.lines) <= 3
            assert all(line.quantity == line.quantity.to_integral_value() for line in decoded.lines)
        outcomes[type(decoded).__name__] += 1
    assert outcomes["StockAdjusted"] > 3 * outcomes["DispatchConfirmed"] > 0
    assert {"undecodable", "schema_violation", "unknown_type"} <= set(outcomes)
    bad = sum(outcomes[kind] for kind in ("undecodable", "schema_violation", "unknown_type"))
    assert 20 <= bad <= 100  # about 1%
