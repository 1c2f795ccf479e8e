"""The SAP Business One connector against the Service Layer simulator, over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from config.settings import Secret
from devstack.sims.b1 import model as b1_model
from devstack.sims.b1.server import B1Simulator
from handlers.connectors.b1.client import (
    B1AuthError,
    B1Client,
    B1DuplicateEntry,
    B1Error,
    B1Locked,
    B1Rejected,
    B1Unavailable,
    BatchQuantity,
    DocumentKind,
    PostedDocument,
    StockDocument,
    StockLine,
)

pytestmark = pytest.mark.integration

COMPANY, USER = "SBODEMO", "manager"
PASSWORD = "b1-password-DO-NOT-LEAK-5e1d"


@dataclass
class Stack:
    sim: B1Simulator
    client: B1Client
    session: aiohttp.ClientSession
    cookie_headers: list[str] = field(default_factory=list)  # Cookie header of every request

    def statuses(self, operation: str | None = None) -> list[int]:
        return [r.status for r in self.sim.requests if operation in (None, r.operation)]

    def client_for(self, password: str = PASSWORD, **options: Any) -> B1Client:
        return B1Client(self.sim.url, COMPANY, USER, Secret(password), self.session, **options)


@asynccontextmanager
async def stack(
    *, password: str = PASSWORD, window_ms: float = 0.0, **options: Any
) -> AsyncIterator[Stack]:
    sim = B1Simulator(COMPANY, USER, PASSWORD)
    sim.set_faults(conflict_window_ms=window_ms)
    sim.add_warehouse("01", "General Warehouse")
    sim.add_warehouse("02", "Returns")
    sim.add_item("A-100", stock={"01": 10})
    sim.add_item("C-400", stock={"01": 4, "02": 1})
    sim.add_item("B-200", batches=True)
    sim.add_batch("B-200", "01", "LOT-1", 5)
    sim.add_item("S-300", serials=True)
    sim.add_serials("S-300", "01", "SN-1", "SN-2")
    await sim.start()
    cookie_headers: list[str] = []

    async def sent(
        _: aiohttp.ClientSession,
        __: SimpleNamespace,
        params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        cookie_headers.append(params.headers.get("Cookie", ""))

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(sent)
    try:
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            options.setdefault("timeout", 5.0)
            client = B1Client(sim.url, COMPANY, USER, Secret(password), session, **options)
            yield Stack(sim, client, session, cookie_headers)
    finally:
        await sim.stop()


async def raw_login(s: Stack) -> dict[str, str]:
    """A session of our own, for requests the connector never makes."""
    body = {"CompanyDB": COMPANY, "UserName": USER, "Password": PASSWORD}
    async with s.session.post(f"{s.sim.url}/Login", json=body) as response:
        return {"B1SESSION": response.cookies["B1SESSION"].value}


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def line(item: str, quantity: str | int, warehouse: str = "01", **extra: Any) -> StockLine:
    return StockLine(item_code=item, warehouse_code=warehouse, quantity=Decimal(quantity), **extra)


def document(key: str, *lines: StockLine, remarks: str = "") -> StockDocument:
    return StockDocument(key=key, lines=lines, doc_date=date(2026, 11, 23), remarks=remarks)


# --- session ---


@pytest.mark.timeout(20)
def test_login_sends_the_credentials_and_every_call_carries_both_cookies() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.get_item("A-100")
            await s.client.get_warehouse("01")
            login = s.sim.requests[0]
            assert (login.path, login.status) == ("/b1s/v1/Login", 200)
            assert login.body == {"CompanyDB": COMPANY, "UserName": USER, "Password": "***"}
            assert s.client.session_timeout == 30
            for header in s.cookie_headers[1:]:
                assert "B1SESSION=" in header
                assert "ROUTEID=.node1" in header
            assert s.statuses() == [200, 200, 200]
            assert s.client.logins == 1

    run(scenario)


@pytest.mark.timeout(20)
def test_an_expired_session_is_renewed_once_and_the_call_repeated() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.get_item("A-100")
            s.sim.expire_sessions()
            posted = await s.client.post_document("entry", document("P1", line("A-100", 1)))
            assert posted == PostedDocument(doc_entry=1, doc_num=1)
            assert s.statuses() == [200, 200, 401, 200, 201]
            assert s.client.logins == 2
            assert s.sim.stock("A-100", "01") == 11  # posted once, not twice

    run(scenario)


@pytest.mark.timeout(20)
def test_a_session_that_idled_past_its_timeout_is_renewed() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.session_timeout_minutes = 0.5 / 60  # half a second of idling
            await s.client.get_item("A-100")
            await asyncio.sleep(0.8)
            assert await s.client.get_item("A-100") is not None
            assert s.statuses("Items") == [200, 401, 200]
            assert s.statuses("Login") == [200, 200]

    run(scenario)


@pytest.mark.timeout(20)
def test_concurrent_callers_share_one_login() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await asyncio.gather(*(s.client.get_item("A-100") for _ in range(20)))
            assert s.client.logins == 1
            assert s.statuses("Login") == [200]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_refused_login_is_an_auth_error_shared_by_concurrent_callers() -> None:
    async def scenario() -> None:
        async with stack(password="wrong-password") as s:
            outcomes = await asyncio.gather(
                *(s.client.get_item("A-100") for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(o, B1AuthError) for o in outcomes)
            assert "Login failed" in str(outcomes[0])
            assert s.statuses() == [401]  # one login attempt, no item request

    run(scenario)


@pytest.mark.timeout(20)
def test_a_session_refused_right_after_login_is_an_auth_error() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.session_timeout_minutes = 0.0  # every session is dead on arrival
            with pytest.raises(B1AuthError, match="fresh session"):
                await s.client.get_item("A-100")
            assert s.statuses("Items") == [401, 401]

    run(scenario)


@pytest.mark.timeout(20)
def test_logout_ends_the_session_and_a_later_call_logs_in_again() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.login()
            assert s.sim.active_sessions == 1
            await s.client.logout()
            assert s.sim.active_sessions == 0
            assert s.statuses("Logout") == [204]
            await s.client.get_warehouse("01")
            assert s.client.logins == 2

    run(scenario)


# --- master data ---


@pytest.mark.timeout(20)
def test_an_item_is_read_with_its_flags_and_stock_per_warehouse() -> None:
    async def scenario() -> None:
        async with stack() as s:
            item = await s.client.get_item("C-400")
            assert item is not None
            assert (item.item_code, item.active, item.inventory_item) == ("C-400", True, True)
            assert (item.manage_batches, item.manage_serials) == (False, False)
            assert item.in_stock == {"01": Decimal(4), "02": Decimal(1)}
            [request] = [r for r in s.sim.requests if r.operation == "Items"]
            assert request.path == "/b1s/v1/Items('C-400')"
            assert request.query.startswith("$select=ItemCode,Valid,Frozen,InventoryItem,")

    run(scenario)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"valid": False}, {"valid": False, "active": False}),
        ({"frozen": True}, {"frozen": True, "active": False}),
        ({"inventory": False}, {"inventory_item": False, "active": True}),
        ({"batches": True}, {"manage_batches": True}),
        ({"serials": True}, {"manage_serials": True}),
    ],
)
def test_item_master_flags_are_reported_as_b1_holds_them(
    flags: dict[str, bool], expected: dict[str, bool]
) -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.add_item("X'1 2")  # a quote and a space: escaped and encoded
            s.sim.update_item("X'1 2", **flags)
            item = await s.client.get_item("X'1 2")
            assert item is not None
            assert {name: getattr(item, name) for name in expected} == expected

    run(scenario)


@pytest.mark.timeout(20)
def test_unknown_items_and_warehouses_are_none() -> None:
    async def scenario() -> None:
        async with stack() as s:
            assert await s.client.get_item("NOPE") is None
            assert await s.client.get_warehouse("99") is None
            warehouse = await s.client.get_warehouse("02")
            assert warehouse is not None
            assert (warehouse.warehouse_code, warehouse.name, warehouse.inactive) == (
                "02",
                "Returns",
                False,
            )
            assert s.statuses("Items") == [404]

    run(scenario)


# --- postings ---


@pytest.mark.timeout(20)
def test_an_entry_and_an_exit_move_the_simulators_stock_exactly() -> None:
    async def scenario() -> None:
        async with stack() as s:
            entry = document("P000000001", line("A-100", "2.125"), line("C-400", 3, "02"))
            exit_ = document("P000000002", line("A-100", "0.125"), remarks="damaged")
            await s.client.post_document("entry", entry)
            await s.client.post_document("exit", exit_)
            assert s.sim.stock("A-100", "01") == Decimal("12.000")
            assert s.sim.stock("C-400", "02") == 4
            [receipt] = [r for r in s.sim.requests if r.operation == "InventoryGenEntries"]
            assert receipt.body == {
                "Reference2": "P000000001",
                "Comments": "skuflow posting P000000001",
                "DocDate": "2026-11-23",
                "DocumentLines": [
                    {"ItemCode": "A-100", "Quantity": Decimal("2.125"), "WarehouseCode": "01"},
                    {"ItemCode": "C-400", "Quantity": 3, "WarehouseCode": "02"},
                ],
            }
            kinds = [(d.kind, d.body["Reference2"]) for d in s.sim.documents]
            assert kinds == [("entry", "P000000001"), ("exit", "P000000002")]
            assert s.sim.documents[1].body["Comments"] == "skuflow posting P000000002: damaged"

    run(scenario)


@pytest.mark.timeout(20)
def test_batch_and_serial_lines_move_their_batches_and_serials() -> None:
    async def scenario() -> None:
        async with stack() as s:
            lot = (BatchQuantity("LOT-1", Decimal(2)), BatchQuantity("LOT-2", Decimal(1)))
            await s.client.post_document("entry", document("P1", line("B-200", 3, batches=lot)))
            await s.client.post_document(
                "exit", document("P2", line("S-300", 1, serial_numbers=("SN-2",)))
            )
            assert s.sim.batch_stock("B-200", "01", "LOT-1") == 7
            assert s.sim.batch_stock("B-200", "01", "LOT-2") == 1
            assert s.sim.stock("B-200", "01") == 8
            assert s.sim.serials("S-300", "01") == {"SN-1"}
            assert s.sim.stock("S-300", "01") == 1

    run(scenario)


REJECTIONS = [
    pytest.param(
        "exit", (line("A-100", 1), line("NOPE", 1)), -2028, b1_model.NOT_FOUND[1], None,
        id="unknown item",
    ),
    pytest.param(
        "entry", (line("A-100", 1, "99"),), -2028, "No matching records found", None,
        id="unknown warehouse",
    ),
    pytest.param(
        "entry", (line("A-100", 1), line("OLD-1", 1)), -10, "10001069 - Item OLD-1 is inactive", 1,
        id="inactive item",
    ),
    pytest.param(
        "exit", (line("FRZ-1", 1),), -10, "10001069 - Item FRZ-1 is inactive", 0,
        id="frozen item",
    ),
    pytest.param(
        "entry", (line("A-100", 1), line("SVC-1", 1)), -10, "is not an inventory item", 1,
        id="non-inventory item",
    ),
    pytest.param(
        "exit", (line("A-100", 4), line("C-400", 5)), -10,
        "Quantity falls into negative inventory  [IGE1.ItemCode][line: 2]", 1,
        id="negative stock",
    ),
    pytest.param(
        "exit", (line("A-100", 6), line("A-100", 5)), -10, "negative inventory", 1,
        id="negative stock over two lines",
    ),
    pytest.param(
        "entry", (line("B-200", 1),), -4014,
        "Cannot add row without complete selection of batch/serial numbers", None,
        id="missing batch",
    ),
    pytest.param(
        "exit", (line("A-100", 1), line("B-200", 1, batches=(BatchQuantity("LOT-9", Decimal(1)),))),
        -10, "480000112 - Batch/serial number LOT-9 selected in row 2 does not exist", 1,
        id="unknown batch",
    ),
    pytest.param(
        "exit", (line("B-200", 6, batches=(BatchQuantity("LOT-1", Decimal(6)),)),), -10,
        "10001153 - Insufficient quantity for item B-200 with batch LOT-1", 0,
        id="batch short",
    ),
    pytest.param(
        "exit", (line("S-300", 1, serial_numbers=("SN-7",)),), -10,
        "Batch/serial number SN-7 selected in row 1 does not exist", 0,
        id="unknown serial",
    ),
]  # fmt: skip


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("kind", "lines", "code", "message", "failed"), REJECTIONS)
def test_each_rejection_is_b1_rejected_with_b1s_code_message_and_line(
    kind: DocumentKind,
    lines: tuple[StockLine, ...],
    code: int,
    message: str,
    failed: int | None,
) -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.add_item("OLD-1", valid=False, stock={"01": 3})
            s.sim.add_item("FRZ-1", frozen=True, stock={"01": 3})
            s.sim.add_item("SVC-1", inventory=False)
            with pytest.raises(B1Rejected) as raised:
                await s.client.post_document(kind, document("P9", *lines))
            error = raised.value
            assert (error.code, error.line, error.status) == (code, failed, 400)
            assert message in error.message
            assert s.sim.documents == []
            assert s.sim.stock("A-100", "01") == 10  # nothing moved
            assert len(s.statuses("InventoryGenEntries") + s.statuses("InventoryGenExits")) == 1

    run(scenario)


@pytest.mark.timeout(20)
def test_an_item_deactivated_after_validation_is_rejected_at_posting() -> None:
    async def scenario() -> None:
        async with stack() as s:
            item = await s.client.get_item("C-400")
            assert item is not None
            assert item.active
            s.sim.update_item("C-400", frozen=True)
            with pytest.raises(B1Rejected, match="is inactive") as raised:
                await s.client.post_document("exit", document("P1", line("C-400", 1)))
            assert raised.value.line == 0

    run(scenario)


# --- locks ---


@pytest.mark.timeout(20)
def test_two_postings_touching_one_item_within_the_window_are_locked() -> None:
    async def scenario() -> None:
        async with stack(window_ms=300) as s:
            await s.client.post_document("entry", document("P1", line("A-100", 1)))
            with pytest.raises(B1Locked) as raised:
                await s.client.post_document("exit", document("P2", line("A-100", 1)))
            assert (raised.value.code, raised.value.status) == (-2039, 400)
            assert raised.value.message == b1_model.MODIFIED[1]
            await s.client.post_document("exit", document("P3", line("C-400", 1)))  # other item
            await asyncio.sleep(0.35)
            await s.client.post_document("exit", document("P2", line("A-100", 1)))  # window over
            assert [d.body["Reference2"] for d in s.sim.documents] == ["P1", "P3", "P2"]
            assert s.sim.stock("A-100", "01") == 10

    run(scenario)


@pytest.mark.timeout(20)
def test_a_posting_overlapping_one_still_in_flight_is_locked() -> None:
    async def scenario() -> None:
        async with stack(timeout=5.0) as s:
            s.sim.set_faults(timeout_after_apply_ms=300)  # the first holds its lock while slow
            slow = asyncio.create_task(
                s.client.post_document("entry", document("P1", line("A-100", 1)))
            )
            await asyncio.sleep(0.1)
            with pytest.raises(B1Locked):
                await s.client.post_document("entry", document("P2", line("A-100", 1)))
            assert await slow == PostedDocument(doc_entry=1, doc_num=1)

    run(scenario)


@pytest.mark.timeout(20)
def test_a_lock_storm_refuses_its_share_of_postings_and_writes_nothing() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(lock_storm_rate=1.0)
            with pytest.raises(B1Locked, match="ODBC -2039"):
                await s.client.post_document("exit", document("P1", line("A-100", 1)))
            s.sim.set_faults(lock_storm_rate=0.0)
            await s.client.post_document("exit", document("P1", line("A-100", 1)))
            assert s.sim.stock("A-100", "01") == 9
            assert s.statuses("InventoryGenExits") == [400, 201]

    run(scenario)


# --- ODBC -2035, "This entry already exists" (our model of when B1 answers it: see b1_sim) ---


@pytest.mark.timeout(20)
def test_a_collision_is_answered_as_service_layer_answers_2035_and_writes_nothing() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(collision_count=2)
            for _ in range(2):
                with pytest.raises(B1DuplicateEntry) as raised:
                    await s.client.post_document("exit", document("P1", line("A-100", 1)))
                error = raised.value
                assert (error.code, error.status, error.message) == (
                    -2035,
                    400,
                    b1_model.DUPLICATE[1],
                )
            await s.client.post_document("exit", document("P1", line("A-100", 1)))
            assert s.statuses("InventoryGenExits") == [400, 400, 201]
            assert (s.sim.collisions, len(s.sim.documents)) == (2, 1)
            assert s.sim.stock("A-100", "01") == 9  # moved once
            s.sim.set_faults(collision_count=1)
            cookie = await raw_login(s)
            body = {"DocumentLines": [{"ItemCode": "A-100", "Quantity": 1, "WarehouseCode": "01"}]}
            url = f"{s.sim.url}/InventoryGenEntries"
            async with s.session.post(url, json=body, cookies=cookie) as response:
                assert response.status == 400
                assert await response.json() == {
                    "error": {
                        "code": -2035,
                        "message": {
                            "lang": "en-us",
                            "value": "This entry already exists in the following tables "
                            "(ODBC -2035)",
                        },
                    }
                }

    run(scenario)


@pytest.mark.timeout(20)
def test_a_collision_window_set_over_http_refuses_postings_until_it_ends() -> None:
    async def scenario() -> None:
        async with stack() as s:
            base = s.sim.url.removesuffix("/b1s/v1") + "/_sim"
            until = (datetime.now(UTC) + timedelta(seconds=0.4)).isoformat()
            async with s.session.post(f"{base}/faults", json={"collision_until": until}) as r:
                assert r.status == 200
            with pytest.raises(B1DuplicateEntry):
                await s.client.post_document("entry", document("P1", line("A-100", 1)))
            await asyncio.sleep(0.5)
            await s.client.post_document("entry", document("P1", line("A-100", 1)))
            assert s.statuses("InventoryGenEntries") == [400, 201]
            assert s.sim.stock("A-100", "01") == 11

    run(scenario)


@pytest.mark.timeout(20)
def test_a_posting_applied_then_answered_2035_is_there_to_be_found() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(collision_after_apply=1)
            with pytest.raises(B1DuplicateEntry):
                await s.client.post_document("exit", document("P7", line("A-100", 2)))
            [applied] = s.sim.documents
            found = await s.client.find_document("exit", "P7")
            assert found == PostedDocument(doc_entry=applied.doc_entry, doc_num=applied.doc_num)
            assert s.sim.stock("A-100", "01") == 8
            assert s.sim.faults.collision_after_apply == 0  # one posting only

    run(scenario)


@pytest.mark.timeout(20)
def test_a_unique_key_field_answers_2035_instead_of_a_second_document() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(unique_key_field="Reference2")
            await s.client.post_document("entry", document("P1", line("A-100", 1)))
            with pytest.raises(B1DuplicateEntry):
                await s.client.post_document("entry", document("P1", line("A-100", 1)))
            await s.client.post_document("exit", document("P1", line("A-100", 1)))  # other set
            await s.client.post_document("entry", document("P2", line("A-100", 1)))
            assert [d.body["Reference2"] for d in s.sim.documents] == ["P1", "P1", "P2"]
            assert s.sim.stock("A-100", "01") == 11

    run(scenario)


@pytest.mark.timeout(20)
def test_collision_codes_are_the_clients_to_choose() -> None:
    async def scenario() -> None:
        async with stack(collision_codes=()) as s:  # -2035 read as a rejection again
            s.sim.set_faults(collision_count=1)
            with pytest.raises(B1Rejected) as raised:
                await s.client.post_document("entry", document("P1", line("A-100", 1)))
            assert (raised.value.code, raised.value.line) == (-2035, None)

    run(scenario)


# --- ambiguity and unavailability ---


@pytest.mark.timeout(20)
def test_timeout_after_apply_is_ambiguous_and_find_document_prevents_a_duplicate() -> None:
    async def scenario() -> None:
        async with stack(timeout=0.3) as s:
            s.sim.set_faults(timeout_after_apply_ms=800)
            posting = document("P000001234", line("A-100", 2))
            with pytest.raises(B1Unavailable) as raised:
                await s.client.post_document("exit", posting)
            assert raised.value.ambiguous
            s.sim.set_faults(timeout_after_apply_ms=0)
            found = await s.client.find_document("exit", posting.key)
            [applied] = s.sim.documents
            assert found == PostedDocument(doc_entry=applied.doc_entry, doc_num=applied.doc_num)
            assert await s.client.find_document("entry", posting.key) is None
            assert await s.client.find_document("exit", "P000009999") is None
            assert len(s.sim.documents) == 1  # found, so never posted again
            assert s.sim.stock("A-100", "01") == 8

    run(scenario)


@pytest.mark.timeout(20)
def test_find_document_matches_keys_with_quotes_exactly() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.post_document("entry", document("it's", line("A-100", 1)))
            await s.client.post_document("entry", document("its", line("C-400", 1)))
            assert await s.client.find_document("entry", "it's") == PostedDocument(1, 1)
            assert await s.client.find_document("entry", "its") == PostedDocument(2, 2)

    run(scenario)


@pytest.mark.timeout(20)
def test_a_server_error_is_ambiguous_for_a_posting_and_not_for_a_read() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.login()
            s.sim.set_faults(error_rate=1.0)
            with pytest.raises(B1Unavailable) as posting:
                await s.client.post_document("exit", document("P1", line("A-100", 1)))
            assert (posting.value.status, posting.value.ambiguous) == (500, True)
            with pytest.raises(B1Unavailable) as read:
                await s.client.get_item("A-100")
            assert (read.value.status, read.value.ambiguous) == (500, False)

    run(scenario)


@pytest.mark.timeout(20)
def test_an_outage_is_unavailable_and_not_ambiguous() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(outage_until=datetime.now(UTC) + timedelta(minutes=5))
            with pytest.raises(B1Unavailable) as raised:
                await s.client.post_document("exit", document("P1", line("A-100", 1)))
            assert (raised.value.status, raised.value.ambiguous) == (503, False)
            assert raised.value.operation == "Login"
            s.sim.set_faults(outage_until=None)
            await s.client.post_document("exit", document("P1", line("A-100", 1)))
            assert s.statuses() == [503, 200, 201]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_refused_connection_is_unavailable_and_not_ambiguous() -> None:
    async def scenario() -> None:
        async with stack() as s:
            closed = B1Simulator()
            await closed.start()
            url = closed.url
            await closed.stop()
            client = B1Client(url, COMPANY, USER, Secret(PASSWORD), s.session, timeout=2.0)
            with pytest.raises(B1Unavailable) as raised:
                await client.post_document("exit", document("P1", line("A-100", 1)))
            assert not raised.value.ambiguous

    run(scenario)


# --- the write bound ---


@pytest.mark.timeout(20)
def test_concurrent_postings_never_exceed_the_write_bound() -> None:
    async def scenario() -> None:
        async with stack(max_concurrent_writes=2) as s:
            codes = [f"M-{n}" for n in range(8)]
            for code in codes:
                s.sim.add_item(code, stock={"01": 5})
            await s.client.login()
            s.sim.set_faults(latency_ms=60)
            started = time.monotonic()
            await asyncio.gather(
                *(
                    s.client.post_document("exit", document(f"P{n}", line(code, 1)))
                    for n, code in enumerate(codes)
                )
            )
            assert time.monotonic() - started >= 4 * 0.06 * 0.9  # 8 postings, 2 at a time
            statistics = s.client.write_statistics()
            assert (statistics.limit, statistics.peak, statistics.in_flight) == (2, 2, 0)
            assert len(s.sim.documents) == 8

    run(scenario)


# --- inputs the connector refuses before sending ---


@pytest.mark.timeout(20)
def test_a_key_longer_than_reference2_holds_is_refused_before_sending() -> None:
    async def scenario() -> None:
        async with stack() as s:
            with pytest.raises(ValueError, match="Reference2 holds 11 characters"):
                await s.client.post_document("entry", document("SKF1234567.8", line("A-100", 1)))
            assert s.sim.requests == []

    run(scenario)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("field", ["JournalMemo", "U_SkuflowKey"])
def test_longer_keys_can_ride_in_journal_memo_or_a_user_defined_field(field: str) -> None:
    async def scenario() -> None:
        async with stack(key_field=field) as s:
            await s.client.post_document("entry", document("P1", line("C-400", 1)))  # no key
            key = "SKF123456789.1024"
            posted = await s.client.post_document("entry", document(key, line("A-100", 1)))
            assert s.sim.documents[-1].body[field] == key
            assert await s.client.find_document("entry", key) == posted
            assert await s.client.find_document("entry", "SKF1") is None

    run(scenario)


@pytest.mark.timeout(20)
def test_documents_b1_would_refuse_are_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="> 0"):
        line("A-100", 0)
    with pytest.raises(ValueError, match="add up"):
        line("B-200", 2, batches=(BatchQuantity("LOT-1", Decimal(1)),))
    long = document("P1", line("A-100", 1), remarks="x" * 400)
    assert len(long.comments) == 254
    same = document("P1", line("A-100", 1), remarks="skuflow posting P1 (3 sources)")
    assert same.comments == "skuflow posting P1 (3 sources)"  # the prefix is not repeated


@pytest.mark.timeout(20)
def test_the_simulator_refuses_what_service_layer_refuses() -> None:
    async def scenario() -> None:
        async with stack() as s:
            cookie = await raw_login(s)
            url = f"{s.sim.url}/InventoryGenEntries"
            too_long = {"Reference2": "P0000000001X", "DocumentLines": []}
            unknown = {"Remarks": "x", "DocumentLines": []}
            for body, text in [
                (too_long, "Value too long in property 'Reference2' of 'Document'"),
                (unknown, "Property 'Remarks' of 'Document' is invalid"),
            ]:
                async with s.session.post(url, json=body, cookies=cookie) as response:
                    assert response.status == 400
                    assert text in (await response.json())["error"]["message"]["value"]
            async with s.session.get(f"{s.sim.url}/Items('A-100')") as response:  # no cookie
                assert response.status == 401
                assert (await response.json())["error"]["code"] == 301

    run(scenario)


# --- secrets ---


@pytest.mark.timeout(30)
def test_no_secret_appears_in_any_error_text_repr_or_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    objects: list[object] = []
    sessions: list[str] = []

    async def collect(call: Coroutine[Any, Any, object]) -> None:
        try:
            await call
        except B1Error as exc:
            errors.append(exc)

    async def scenario() -> None:
        async with stack(timeout=0.3) as s:
            await collect(s.client.post_document("exit", document("P1", line("NOPE", 1))))
            s.sim.set_faults(error_rate=1.0)
            await collect(s.client.get_item("A-100"))
            s.sim.set_faults(error_rate=0.0, timeout_after_apply_ms=500)
            await collect(s.client.post_document("exit", document("P2", line("A-100", 1))))
            s.sim.expire_sessions()
            s.sim.session_timeout_minutes = 0.0
            await collect(s.client.get_item("A-100"))
            await collect(s.client_for("wrong").get_item("A-100"))
            await collect(s.client_for(PASSWORD).get_warehouse("01"))
            objects.extend([s.client, s.client_for(PASSWORD)])
            sessions.extend(
                h.split("B1SESSION=")[1].split(";")[0] for h in s.cookie_headers if "B1SES" in h
            )

    run(scenario)
    assert len(errors) == 6
    assert sessions
    texts = [f"{e!s} {e!r} {e.__dict__!r}" for e in errors] + [caplog.text]
    texts += [f"{o!s} {o!r} {vars(o)!r}" for o in objects]
    for secret in (PASSWORD, *sessions):
        assert not any(secret in text for text in texts), secret


# --- the simulator's own surface ---


@pytest.mark.timeout(20)
def test_the_inspection_endpoints_show_documents_stock_and_set_faults() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.post_document("exit", document("P1", line("A-100", "1.5")))
            base = s.sim.url.removesuffix("/b1s/v1") + "/_sim"
            async with s.session.get(f"{base}/documents") as response:
                [posted] = await response.json()
            assert (posted["kind"], posted["doc_entry"]) == ("exit", 1)
            assert posted["body"]["DocumentLines"][0]["Quantity"] == 1.5
            async with s.session.get(f"{base}/stock") as response:
                rows = {(r["ItemCode"], r["WarehouseCode"]): r for r in await response.json()}
            assert rows["A-100", "01"]["InStock"] == 8.5
            assert rows["B-200", "01"]["Batches"] == {"LOT-1": 5}
            assert rows["S-300", "01"]["SerialNumbers"] == ["SN-1", "SN-2"]
            async with s.session.post(f"{base}/faults", json={"lock_storm_rate": 0.25}) as r:
                assert (await r.json())["lock_storm_rate"] == 0.25
            assert s.sim.faults.lock_storm_rate == 0.25
            async with s.session.post(f"{base}/faults", json={"outage_until": "soon"}) as r:
                assert r.status == 400
            async with s.session.post(f"{base}/expire-sessions") as r:
                assert r.status == 204
            assert s.sim.active_sessions == 0
            assert [r.operation for r in s.sim.requests] == ["Login", "InventoryGenExits"]

    run(scenario)


@pytest.mark.timeout(20)
def test_collections_filter_select_and_page_like_service_layer() -> None:
    async def scenario() -> None:
        async with stack() as s:
            for n in range(25):
                s.sim.add_item(f"Z-{n:02d}", valid=n % 5 != 0)
            cookie = await raw_login(s)
            url = f"{s.sim.url}/Items?$select=ItemCode&$filter=Valid eq 'tYES'"
            async with s.session.get(url, cookies=cookie) as response:
                first = await response.json()
            assert len(first["value"]) == 20
            assert first["value"][0] == {"ItemCode": "A-100"}
            next_link = f"{s.sim.url}/{first['odata.nextLink']}"
            async with s.session.get(next_link, cookies=cookie) as response:
                rest = await response.json()
            assert "odata.nextLink" not in rest
            assert len(first["value"]) + len(rest["value"]) == 4 + 20

    run(scenario)
