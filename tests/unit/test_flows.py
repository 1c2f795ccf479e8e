"""The flow registry: every family routed, migrations numbered across flows, capabilities named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from handlers import stock
from handlers.common.events import event_type_name
from handlers.domain import observed
from handlers.flows import FLOWS, default_families, event_types, migrations
from handlers.ports.erp import (
    DocumentKind,
    ItemMaster,
    PostedDocument,
    StockDocument,
    WarehouseMaster,
    capabilities,
    missing_capabilities,
)
from worker.messages import Message
from worker.outcomes import DONE, Outcome, Park, Reject, Retry

pytestmark = pytest.mark.timeout(30)


class _MasterDataOnly:
    async def get_item(self, item_code: str) -> ItemMaster | None:
        return None

    async def get_warehouse(self, code: str) -> WarehouseMaster | None:
        return None


class _Both(_MasterDataOnly):
    async def post_document(self, document: StockDocument) -> PostedDocument:
        return PostedDocument(doc_entry=1, doc_num=1)

    async def find_document(self, kind: DocumentKind, key: str) -> PostedDocument | None:
        return None


def test_every_family_of_every_flow_is_routed_once() -> None:
    names = [event_type_name(cls) for cls in event_types()]
    assert names == [
        "stock.adjusted", "stock.transferred", "dispatch.confirmed",
        "order.received", "order.changed", "order.cancelled", "return.received",
    ]  # fmt: skip
    assert len(set(names)) == len(names)
    families = default_families({"stock.adjusted": _handler})
    assert [f.handler for f in families] == [_handler] + [None] * 6
    assert [f.priority for f in families] == ["normal", "normal", "urgent"] + ["normal"] * 4


async def _handler(_event: Any, _message: Message) -> Outcome:
    return DONE


def test_migrations_are_numbered_across_flows_and_keep_their_recorded_names() -> None:
    found = migrations()
    assert [m.version for m in found] == [
        "0001_dispatch",
        "0002_stock",
        "0003_stock_trace",
        "0004_rate_buckets",
        "0005_posting_collisions",
        "0006_ecc_idocs",
        "0007_posting_numbers",
        "0008_posting_reason_class",
        "0009_stock_transfers",
        "0010_orders",
        "0011_order_capture",
    ]  # 0001-0005: the names applied databases recorded before flows had packages of their own
    assert {m.component for m in found} == {"handlers"}
    assert {flow.package for flow in FLOWS} == {
        "handlers.stock", "handlers.dispatch", "handlers.orders"
    }  # fmt: skip


def test_an_erp_names_what_it_can_and_the_stock_flow_what_it_misses() -> None:
    assert capabilities(_Both()) == ["master data", "stock documents"]
    assert capabilities(_MasterDataOnly()) == ["master data"]
    assert missing_capabilities(_MasterDataOnly(), stock.NEEDS) == ["stock documents"]
    assert missing_capabilities(_Both(), stock.NEEDS) == []


class _Calls:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def handler(self, name: str, outcome: Outcome) -> Any:
        async def handle(_event: Any, _message: Message) -> Outcome:
            self.seen.append(name)
            return outcome

        return handle


_MESSAGE = Message(
    topic="t", partition=0, offset=0, key=None, value=b"", headers=(), timestamp_ms=0
)


@pytest.mark.parametrize(
    ("owner", "observer", "expected", "ran"),
    [
        (DONE, DONE, DONE, ["owner", "observer"]),
        (Reject("k", "r"), DONE, Reject("k", "r"), ["owner", "observer"]),
        (DONE, Reject("x", "y"), Reject("x", "y"), ["owner", "observer"]),
        (Retry("later"), DONE, Retry("later"), ["owner"]),
        (Park("later", datetime(2030, 1, 1, tzinfo=UTC)), DONE, None, ["owner"]),
        (DONE, Retry("db"), Retry("db"), ["owner", "observer"]),
    ],
)
def test_an_observer_runs_after_its_owners_final_outcome(
    owner: Outcome, observer: Outcome, expected: Outcome | None, ran: list[str]
) -> None:
    calls = _Calls()
    handle = observed(calls.handler("owner", owner), [calls.handler("observer", observer)])
    outcome = anyio.run(handle, object(), _MESSAGE)
    assert outcome == (expected if expected is not None else owner)
    assert calls.seen == ran
