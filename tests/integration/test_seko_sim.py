"""The Seko iHub simulator over real HTTP: its load rules, statuses, stock reads, retrieves and
the iHub artefacts; and its pushes to a tiny aiohttp receiver — parts, sequence numbers,
batches, retries (never after a 400), resends and the drop/duplicate/reorder faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from devstack.sims.http import LocalServer
from devstack.sims.seko.model import STATUSES, Knobs
from devstack.sims.seko.server import SekoSimulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

KEY, DC = "sim-key", "DCIW01"
JSON = {"Accept": "application/json"}
EVER = "2000-01-01T00:00:00Z/2100-01-01T00:00:00Z"
TEN_SECONDS_EACH = dict.fromkeys(STATUSES[:-1], 10.0)  # in each status before Dispatched


@dataclass
class Receiver:
    """The webhook: records every POST and answers ``statuses`` in turn (then 200)."""

    statuses: list[int] = field(default_factory=list)
    posts: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = msgspec.json.decode(raw) if "json" in request.content_type else raw.decode()
        self.posts.append((request.path, dict(request.headers), body))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def responses(self, service_key: str | None = None) -> list[dict[str, Any]]:
        """Every ``Response`` received (of one entity key), in arrival order."""
        found = [r["Response"] for _, _, body in self.posts for r in body["Responses"]]
        return [r for r in found if service_key is None or service_key in r]


@dataclass
class Stack:
    sim: SekoSimulator
    session: aiohttp.ClientSession
    hook: Receiver

    async def call(
        self, method: str, path: str, body: Any = None, *, key: str = KEY, **query: str
    ) -> tuple[int, Any]:
        params = {"api_key": key, **query}
        async with self.session.request(
            method, f"{self.sim.url}/{path}", json=body, params=params, headers=JSON
        ) as response:
            text = await response.text()
            parsed = msgspec.json.decode(text) if "json" in response.content_type else text
            return response.status, parsed

    async def submit(self, number: str, *lines: tuple[str, int], **header: Any) -> Any:
        status, body = await self.call(
            "POST", "salesorders/v4/submit", order(number, *lines, **header)
        )
        assert status == 200
        return body

    def stock_up(self, code: str, units: int) -> None:
        self.sim.add_product(code)
        self.sim.add_stock(DC, code, units)

    async def control(self, path: str, body: Any = None) -> Any:
        async with self.session.post(f"{self.sim.sim_base}/{path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()


def order(number: str, *lines: tuple[str, int], dc: str = DC, **header: Any) -> dict[str, Any]:
    items = [
        {"LineNumber": n, "ProductCode": code, "Quantity": quantity}
        for n, (code, quantity) in enumerate(lines, 1)
    ]
    return {
        "SalesOrder": {"SalesOrderNumber": number, **header},
        "SalesOrderHeader": {"DCCode": dc},
        "List": {"SalesOrderLineItem": items},
    }


@asynccontextmanager
async def stack(**knobs: Any) -> AsyncIterator[Stack]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    receiver = LocalServer(app)
    hook.url = await receiver.start() + "/seko"
    knobs.setdefault("status_delays", {})  # (orders ship at the next tick unless a test says)
    sim = SekoSimulator(KEY, knobs=Knobs(webhook_url=hook.url, **knobs), seed=3)
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Stack(sim, session, hook)
    finally:
        await sim.stop()
        await receiver.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def refused(body: Any) -> str:
    assert body["CallStatus"]["Success"] is False, body
    assert body["CallStatus"]["Code"] == 100
    return str(body["CallStatus"]["Message"])


# --- transport, auth, envelope ---


def test_api_key_and_token_are_interchangeable_and_a_wrong_key_is_401() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.add_product("A-1")
            s.sim.add_stock(DC, "A-1", 2)
            assert (await s.call("GET", "stock/v3/quantity", productCodes="A-1"))[0] == 200
            async with s.session.get(
                f"{s.sim.url}/stock/v3/quantity", params={"token": KEY}, headers=JSON
            ) as response:
                assert response.status == 200
            status, body = await s.call("GET", "stock/v3/quantity", key="wrong")
            assert status == 401
            assert body == {"Message": "Authorization has been denied for this request."}
            assert all("sim-key" not in r.query for r in s.sim.requests)

    run(scenario)


def test_a_get_without_accept_answers_xml_and_a_v1_json_path_answers_json() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.add_product("A-1")
            s.sim.add_stock(DC, "A-1", 2)
            url = f"{s.sim.url}/stock/v3/quantity"
            async with s.session.get(url, params={"api_key": KEY}) as response:
                assert response.content_type == "application/xml"
                text = await response.text()
            assert "<StockQuantityLineItem><ProductCode>A-1</ProductCode>" in text
            await s.submit("SO-1", ("A-1", 1))
            await s.sim.advance(1)
            url = f"{s.sim.url}/dispatches/v1/status/{EVER}.json"
            async with s.session.get(url, params={"token": KEY}) as response:
                assert response.content_type == "application/json"
                assert (await response.json())["Response"]["CallStatus"]["Success"] is True

    run(scenario)


def test_a_single_row_is_an_object_and_empty_values_are_empty_objects() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.stock_up("A-1", 5)
            await s.submit("SO-1", ("A-1", 1))
            await s.sim.advance(1)
            _, body = await s.call("GET", f"dispatches/v1/status/{EVER}")
            row = body["Response"]["List"]["DispatchLineItem"]
            assert isinstance(row, dict)  # one dispatch: an object [OBS]
            assert row["GUID"]
            assert row["DCCode"] == DC
            assert row["SalesOrderReference"] == {}
            assert body["Response"]["CallStatus"]["Message"] == {}
            await s.submit("SO-2", ("A-1", 1))
            await s.sim.advance(1)
            _, body = await s.call("GET", f"dispatches/v1/status/{EVER}")
            assert len(body["Response"]["List"]["DispatchLineItem"]) == 2
            s.sim.set_knobs(single_as_object=False, empty_as_object=False)
            await s.control("knobs", {"single_as_object": False})
            _, body = await s.call("GET", f"dispatches/v1/status/{EVER}", dc=DC)
            assert isinstance(body["Response"]["List"]["DispatchLineItem"], list)

    run(scenario)


# --- sales order loads ---


def test_an_order_is_accepted_once_and_a_repeated_number_is_refused() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.stock_up("A-1", 5)
            first = await s.submit("000123", ("A-1", 2), GUID="ours-1")
            assert first == {
                "CallStatus": {"Success": True, "Code": 0, "Message": ""},
                "GUID": "ours-1",
            }
            again = refused(await s.submit("000123", ("A-1", 2)))
            assert (
                again
                == "Error Submitting SalesOrder: 000123 - Error. Sales order 000123 already exists."
            )
            assert s.sim.stock(DC, "A-1") == (5, 3)  # held once

    run(scenario)


def test_the_whole_order_is_refused_when_one_line_lacks_free_stock() -> None:
    async def scenario() -> None:
        async with stack() as s:
            for code in ("A-1", "B-2"):
                s.sim.add_product(code)
            s.sim.add_stock(DC, "A-1", 5)
            s.sim.add_stock(DC, "B-2", 1)
            await s.submit("SO-1", ("B-2", 1))  # takes B-2's last unit
            message = refused(await s.submit("SO-2", ("A-1", 2), ("B-2", 1)))
            assert (
                message
                == "Error Submitting SalesOrder: SO-2 - Error. Product B-2 has no free stock."
            )
            assert s.sim.order("SO-2") is None
            assert s.sim.stock(DC, "A-1") == (5, 5)  # nothing held by the refused order

    run(scenario)


def test_one_line_per_product_code_compared_without_case() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.stock_up("A-1", 5)
            message = refused(await s.submit("SO-1", ("A-1", 1), ("a-1", 1)))
            assert message.endswith("Product a-1 is on more than one line.")

    run(scenario)


def test_product_code_rules_refuse_unknown_products_bad_characters_and_length() -> None:
    async def scenario() -> None:
        async with stack() as s:
            assert refused(await s.submit("SO-1", ("NOPE", 1))).endswith(
                "Product NOPE does not exist."
            )
            status, body = await s.call(
                "POST", "products/v4/submit", {"ProductMaster": {"ProductCode": "A|1"}}
            )
            assert status == 200
            assert refused(body) == "ProductCode A|1 contains a character iHub does not accept."
            _, body = await s.call(
                "POST", "products/v4/submit", {"ProductMaster": {"ProductCode": "X" * 101}}
            )
            assert (
                refused(body)
                == "The field ProductCode must be a string with a maximum length of 100."
            )
            s.sim.set_knobs(product_rules={"max_length": 8, "forbidden": "/", "ascii_only": True})
            _, body = await s.call(
                "POST", "products/v4/submit", {"ProductMaster": {"ProductCode": "Ä-1"}}
            )
            assert "does not accept" in refused(body)
            _, body = await s.call(
                "POST", "products/v4/submit", {"ProductMaster": {"ProductCode": "A|1"}}
            )
            assert body["CallStatus"]["Success"] is True  # the rule set is the knob's

    run(scenario)


def test_a_double_quote_in_any_text_fails_the_load() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.stock_up("A-1", 5)
            message = refused(await s.submit("SO-1", ("A-1", 1), SpecialInstructions='12" box'))
            assert message.endswith("The field SpecialInstructions contains a '\"' character.")

    run(scenario)


def test_orders_move_through_the_statuses_and_an_order_on_hold_waits() -> None:
    async def scenario() -> None:
        async with stack(status_delays=TEN_SECONDS_EACH) as s:
            s.stock_up("A-1", 5)
            guid = (await s.submit("SO-1", ("A-1", 1)))["GUID"]
            await s.submit("SO-2", ("A-1", 1), OnHold=True)
            _, body = await s.call("GET", f"salesorders/v1/{guid}/status")
            assert body["Response"]["Status"] == "In Production"
            await s.sim.advance(25)
            _, body = await s.call("GET", f"salesorders/v1/{guid}/status")
            assert body["Response"]["Status"] == "To Be Picked"
            await s.sim.advance(60)
            order_one, order_two = s.sim.order("SO-1"), s.sim.order("SO-2")
            assert order_one is not None
            assert order_two is not None
            assert [st for st, _ in order_one.history][-1] == "Dispatched"
            assert order_two.status == "In Production"
            await s.control("orders/SO-2/release")
            await s.sim.advance(60)
            assert order_two.status == "Dispatched"
            _, body = await s.call("GET", "salesorders/v1/no-such-guid/status")
            assert body["Response"]["CallStatus"] == {
                "Success": False,
                "Code": 100,
                "Message": "No results found for search criteria",
            }

    run(scenario)


def test_a_cancellation_frees_the_stock_before_picking_and_is_refused_after() -> None:
    async def scenario() -> None:
        async with stack(status_delays=TEN_SECONDS_EACH) as s:
            s.stock_up("A-1", 5)
            await s.submit("SO-1", ("A-1", 2))
            await s.submit("SO/2", ("A-1", 2))
            status, body = await s.call("POST", "salesorders/v3/SO-1/cancel", reasonCode="001")
            assert (status, body) == (
                200,
                {"CallStatus": {"Success": True, "Code": 0, "Message": ""}, "GUID": None},
            )
            assert s.sim.stock(DC, "A-1") == (5, 3)
            _, body = await s.call("POST", "salesorders/v3/SO-1/cancel")
            assert refused(body).endswith("Sales order is already cancelled.")
            await s.sim.advance(35)  # SO/2 is being picked
            _, body = await s.call("POST", "salesorders/v3/SO%2F2/cancel")
            assert refused(body).endswith(
                "Sales order is Being Picked and can no longer be cancelled."
            )
            _, body = await s.call("POST", "salesorders/v3/SO-9/cancel", reasonCode="999")
            assert refused(body) == "Invalid reasonCode 999."

    run(scenario)


def test_product_updates_keep_the_immutable_fields_and_erase_blank_ones() -> None:
    async def scenario() -> None:
        async with stack() as s:
            master = {
                "ProductCode": "A-1",
                "LotControlled": True,
                "ProductDescription": "Mug",
                "EAN": "5012345678900",
            }
            _, body = await s.call("POST", "products/v4/submit", {"ProductMaster": master})
            assert body["CallStatus"]["Success"] is True
            _, body = await s.call("POST", "products/v4/submit", {"ProductMaster": master})
            assert refused(body) == "Product A-1 already exists."
            change = {"ProductCode": "a-1", "LotControlled": False}
            _, body = await s.call("POST", "products/v4/update", {"ProductMaster": change})
            assert refused(body) == "The field LotControlled cannot be updated."
            change = {"ProductCode": "A-1", "ProductDescription": "Big mug"}
            _, body = await s.call("POST", "products/v4/update", {"ProductMaster": change})
            assert body["CallStatus"]["Success"] is True
            product = s.sim.warehouse.product("A-1")
            assert product is not None
            assert product.lot_controlled
            assert product.fields.get("ProductDescription") == "Big mug"
            assert "EAN" not in product.fields  # a blank field erases [DOC]

    run(scenario)


# --- stock reads ---


def test_stock_quantity_is_free_stock_without_zero_or_negative_rows() -> None:
    async def scenario() -> None:
        async with stack() as s:
            for code in ("A-1", "B-2", "C-3"):
                s.sim.add_product(code)
            s.sim.add_stock(DC, "A-1", 5)
            s.sim.add_stock(DC, "B-2", 1)
            s.sim.adjust(DC, [("C-3", -2, "LST")])  # negative
            await s.submit("SO-1", ("A-1", 2), ("B-2", 1))
            _, body = await s.call("GET", "stock/v3/quantity", productCodes="A-1,B-2,C-3", dc=DC)
            assert body["List"]["StockQuantityLineItem"] == {
                "ProductCode": "A-1",
                "DCCode": DC,
                "LocationType": "Available Stock",
                "Quantity": 3,
            }
            _, body = await s.call("GET", "stock/v3/quantity", productCodes="B-2")
            assert body == {
                "CallStatus": {
                    "Success": False,
                    "Code": 100,
                    "Message": "No results found for search criteria",
                },
                "List": {},
            }

    run(scenario)


def test_stock_quantity_lags_new_orders_and_caps_the_query_string() -> None:
    async def scenario() -> None:
        async with stack(stock_lag_seconds=300.0) as s:
            s.stock_up("A-1", 5)
            await s.submit("SO-1", ("A-1", 2))
            _, body = await s.call("GET", "stock/v3/quantity", productCodes="A-1")
            assert body["List"]["StockQuantityLineItem"]["Quantity"] == 5  # not seen yet
            await s.sim.advance(301)
            s.sim.set_knobs(status_delays={"In Production": 10_000.0})
            await s.submit("SO-2", ("A-1", 1))
            _, body = await s.call("GET", "stock/v3/quantity", productCodes="A-1")
            assert (
                body["List"]["StockQuantityLineItem"]["Quantity"] == 3
            )  # SO-1 shipped, SO-2 not seen
            status, text = await s.call("GET", "stock/v3/quantity", productCodes="X" * 2100)
            assert status == 404
            assert "404.15" in text

    run(scenario)


# --- shipping and the dispatch push ---


def test_a_dispatch_is_pushed_with_its_lots_serials_and_tracking() -> None:
    async def scenario() -> None:
        async with stack(webhook_headers={"X-Seko-Token": "hook-secret"}) as s:
            s.sim.add_product("LOT-1", lot_controlled=True)
            s.sim.add_product("SER-1", serial_controlled=True)
            s.sim.add_stock(DC, "LOT-1", 2, lot="L1")
            s.sim.add_stock(DC, "LOT-1", 5, lot="L2")
            s.sim.add_stock(DC, "SER-1", 3)
            guid = (
                await s.submit("SO-1", ("LOT-1", 4), ("SER-1", 2), SalesOrderReference="AMZ-1")
            )["GUID"]
            await s.sim.advance(1)
            await s.sim.run_scheduler()
            ((path, headers, _),) = s.hook.posts
            assert path == "/seko"
            assert headers["X-Seko-Token"] == "hook-secret"
            (response,) = s.hook.responses()
            header = response["DispatchConfirmation"]
            assert header["IntegrationId"] == "SKUFLOW"
            assert (header["SequenceNumber"], header["MessagePart"], header["MessageTotal"]) == (
                "1",
                1,
                1,
            )
            assert header["InterfaceRecordId"] == guid
            assert header["SalesOrderNumber"] == "SO-1"
            assert header["SalesOrderReference"] == "AMZ-1"
            assert header["TrackingNumber"]
            assert header["CourierName"]
            lines = [
                (ln["LineNumber"], ln["Quantity"], ln["LotNo"], ln["SerialNo"])
                for ln in response["List"]["DispatchLineItem"]
            ]
            assert lines == [
                (1, 2, "L1", {}),
                (1, 2, "L2", {}),
                (2, 1, {}, "SER-1-S1"),
                (2, 1, {}, "SER-1-S2"),
            ]
            assert s.sim.stock(DC, "LOT-1") == (3, 3)
            _, body = await s.call("GET", f"salesorders/v1/{guid}/tracking")
            assert body["Response"]["TrackingNumber"] == header["TrackingNumber"]

    run(scenario)


def test_a_partial_shipment_is_several_dispatches_as_parts_and_a_line_left_out_shows_zero() -> None:
    async def scenario() -> None:
        delays = {"In Production": 10.0}
        async with stack(status_delays=delays) as s:
            s.sim.add_product("LOT-1", lot_controlled=True)
            s.sim.add_product("B-2")
            s.sim.add_stock(DC, "LOT-1", 5, lot="L1")
            s.sim.add_stock(DC, "B-2", 5)
            await s.submit("SO-1", ("LOT-1", 3), ("B-2", 2))
            await s.control("orders/SO-1/plan", {"shipments": [{"LOT-1": 1}, {"LOT-1": 2}]})
            await s.sim.advance(11)
            await s.sim.run_scheduler()
            first, second = s.hook.responses("DispatchConfirmation")
            heads = [r["DispatchConfirmation"] for r in (first, second)]
            assert [(h["MessagePart"], h["MessageTotal"], h["SequenceNumber"]) for h in heads] == [
                (1, 2, "1"),
                (2, 2, "2"),
            ]
            assert heads[0]["MessageGroupId"] == heads[1]["MessageGroupId"]
            assert heads[0]["DispatchId"] != heads[1]["DispatchId"]
            assert first["List"]["DispatchLineItem"]["Quantity"] == 1  # one line: an object
            zero = second["List"]["DispatchLineItem"][-1]
            assert (zero["ProductCode"], zero["Quantity"]) == ("B-2", 0)
            assert "LotNo" not in zero  # not visible when nothing shipped [DOC]
            assert s.sim.stock(DC, "B-2") == (5, 5)  # what was not shipped is free again
            order = s.sim.order("SO-1")
            assert order is not None
            assert order.status == "Dispatched"

    run(scenario)


# --- push delivery ---


def test_a_failed_push_is_retried_three_times_at_the_interval_then_given_up() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.stock_up("A-1", 5)
            s.hook.statuses = [500, 503, 502, 504]
            await s.submit("SO-1", ("A-1", 1))
            await s.sim.advance(1)
            (batch,) = await s.sim.run_scheduler()
            assert batch.state == "retrying"
            await s.sim.advance(899)
            assert len(s.hook.posts) == 1  # not before the interval
            for _ in range(3):
                await s.sim.advance(901)
            assert [a.status for a in batch.attempts] == [500, 503, 502, 504]
            assert batch.state == "failed"
            await s.sim.advance(901)
            assert len(s.hook.posts) == 4
            resent = await s.sim.resend(batch.id)  # the Activity report
            assert resent.state == "delivered"
            assert s.hook.posts[-1][2] == s.hook.posts[0][2]  # the same message again

    run(scenario)


def test_a_400_is_never_retried_and_an_unreachable_webhook_is() -> None:
    async def scenario() -> None:
        async with stack(retries=1, retry_interval_seconds=60.0) as s:
            s.stock_up("A-1", 5)
            s.hook.statuses = [400]
            await s.submit("SO-1", ("A-1", 1))
            await s.sim.advance(1)
            (batch,) = await s.sim.run_scheduler()
            await s.sim.advance(3600)
            assert (batch.state, len(batch.attempts)) == ("failed", 1)
            s.sim.set_knobs(webhook_url="http://127.0.0.1:9/nowhere")
            await s.submit("SO-2", ("A-1", 1))
            await s.sim.advance(1)
            (lost,) = await s.sim.run_scheduler()
            assert lost.state == "retrying"
            assert lost.attempts[0].status is None
            assert lost.attempts[0].error
            await s.sim.advance(61)
            assert (lost.state, len(lost.attempts)) == ("failed", 2)

    run(scenario)


def test_a_dropped_push_leaves_a_sequence_gap_and_only_the_retrieve_has_it() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.stock_up("A-1", 5)
            for number in ("SO-1", "SO-2", "SO-3"):
                await s.submit(number, ("A-1", 1))
                await s.sim.advance(1)
                if number == "SO-2":
                    s.sim.set_knobs(push_drop_next=1)
                await s.sim.run_scheduler()
            received = [r["DispatchConfirmation"] for r in s.hook.responses()]
            assert [(h["SalesOrderNumber"], h["SequenceNumber"]) for h in received] == [
                ("SO-1", "1"),
                ("SO-3", "3"),
            ]
            _, body = await s.call("GET", f"dispatches/v1/status/{EVER}", status="Dispatched")
            rows = body["Response"]["List"]["DispatchLineItem"]
            assert [row["SalesOrderNumber"] for row in rows] == ["SO-1", "SO-2", "SO-3"]

    run(scenario)


def test_duplicated_and_reordered_pushes() -> None:
    async def scenario() -> None:
        async with stack(push_duplicate_next=1) as s:
            s.sim.add_product("A-1")
            s.sim.add_stock(DC, "A-1", 50)
            await s.submit("SO-1", ("A-1", 1))
            await s.sim.advance(1)
            await s.sim.run_scheduler()
            assert len(s.hook.posts) == 2
            assert s.hook.posts[0][2] == s.hook.posts[1][2]
            s.sim.set_knobs(push_reorder=True, push_batch_size=1)
            for n in range(8):
                await s.submit(f"SO-R{n}", ("A-1", 1))
            await s.sim.advance(1)
            await s.sim.run_scheduler()
            sequences = [
                int(r["DispatchConfirmation"]["SequenceNumber"]) for r in s.hook.responses()[2:]
            ]
            assert sorted(sequences) == list(range(2, 10))
            assert sequences != sorted(sequences)
            assert len(s.hook.posts) == 10  # one message a POST: batch size 1

    run(scenario)


def test_the_scheduler_runs_by_itself_every_interval() -> None:
    async def scenario() -> None:
        async with stack(push_interval_seconds=0.2) as s:
            s.stock_up("A-1", 5)
            await s.submit("SO-1", ("A-1", 1))
            deadline = time.monotonic() + 5
            while not s.hook.posts and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert len(s.hook.responses("DispatchConfirmation")) == 1

    run(scenario)


def test_goods_received_against_an_asn_are_pushed_and_manual_receipts_only_when_enabled() -> None:
    async def scenario() -> None:
        async with stack(push_path_suffix=True) as s:
            s.sim.add_product("A-1")
            s.sim.add_product("LOT-1", lot_controlled=True)
            asn = {
                "Request": {
                    "List": {
                        "ReceiptLineItem": [
                            {"LineNumber": 1, "ProductCode": "A-1", "Quantity": 10},
                            {"LineNumber": 2, "ProductCode": "LOT-1", "Quantity": 4},
                        ]
                    },
                    "Receipt": {"ASNNumber": "ASN-1", "HBReference": "PO-77"},
                    "ReceiptHeader": {"DCCode": DC},
                }
            }
            status, body = await s.call("POST", "receipts/v1/submit", asn)
            assert status == 200
            guid = body["Response"]["GUID"]
            await s.control(
                "receipts",
                {
                    "asn_number": "ASN-1",
                    "lines": [["A-1", 9], ["LOT-1", 2, "B7"], ["LOT-1", 2, "B8"]],
                },
            )
            await s.control("receipts", {"dc": DC, "lines": [["A-1", 1]]})  # manual
            await s.sim.run_scheduler()
            ((path, _, _),) = s.hook.posts
            assert path == "/seko/PushGoodsReceivedNotice"
            (grn,) = s.hook.responses("GRN")
            assert grn["GRN"]["InterfaceRecordId"] == guid
            assert (grn["GRN"]["ASNNumber"], grn["GRN"]["HBReference"]) == ("ASN-1", "PO-77")
            lots = [
                (ln["LineNumber"], ln["Quantity"], ln["LotNo"]) for ln in grn["List"]["GRNLineItem"]
            ]
            assert lots == [(1, 9, {}), (2, 2, "B7"), (2, 2, "B8")]  # lots keep their line
            _, body = await s.call("GET", f"grns/v1/{guid}")
            assert len(body["Response"]["List"]["GRNResponseItem"]) == 3
            assert s.sim.stock(DC, "A-1") == (10, 10)
            s.sim.set_knobs(push_manual_records=True)
            await s.control("receipts", {"dc": DC, "lines": [["A-1", 1]]})
            await s.sim.run_scheduler()
            assert len(s.hook.responses("GRN")) == 2

    run(scenario)


def test_adjustments_push_increases_and_decreases_as_separate_messages() -> None:
    async def scenario() -> None:
        async with stack() as s:
            for code in ("A-1", "B-2"):
                s.sim.add_product(code)
            s.sim.add_stock(DC, "A-1", 5)
            await s.control(
                "adjustments", {"dc": DC, "changes": [["A-1", -2, "DMG"], ["B-2", 3, "FND"]]}
            )
            await s.sim.run_scheduler()
            kinds = [
                (
                    r["StockAdjustment"]["StockAdjustmentType"],
                    r["StockAdjustment"]["SequenceNumber"],
                    r["List"]["StockAdjustmentLineItem"]["ProductCode"],
                )
                for r in s.hook.responses("StockAdjustment")
            ]
            assert kinds == [("Increase", "1", "B-2"), ("Decrease", "2", "A-1")]
            _, body = await s.call("GET", f"stock/v1/adjustment/{EVER}", dc=DC)
            assert len(body["Response"]["List"]["StockAdjustment"]) == 2
            assert s.sim.stock(DC, "A-1") == (3, 3)

    run(scenario)


def test_the_overnight_summary_omits_zero_and_negative_skus_in_parts() -> None:
    async def scenario() -> None:
        async with stack(summary_part_size=2) as s:
            for code in ("A-1", "B-2", "C-3", "D-4", "E-5"):
                s.sim.add_product(code)
            for code in ("A-1", "B-2", "C-3"):
                s.sim.add_stock(DC, code, 1)
            s.sim.add_stock(DC, "D-4", 0)
            s.sim.adjust(DC, [("E-5", -1, "LST")])
            s.sim.overnight_summary()
            await s.sim.run_scheduler()
            parts = s.hook.responses("StockSummary")
            heads = [
                (p["StockSummary"]["MessagePart"], p["StockSummary"]["MessageTotal"]) for p in parts
            ]
            assert heads == [(1, 2), (2, 2)]
            codes = [
                ln["ProductCode"] for p in parts for ln in _many(p["List"]["StockSummaryLineItem"])
            ]
            assert codes == ["A-1", "B-2", "C-3"]
            assert parts[0]["StockSummary"]["MessageGroupId"].startswith(f"{DC}-")

    run(scenario)


def _many(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
