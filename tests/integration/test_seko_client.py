"""SekoClient against the Seko simulator over real HTTP: orders submitted once (a repeat, a lost
answer, a number held by another order), no free stock told apart, cancellations, products,
stock reads split under the query cap, the v1 retrieves with iHub's object-or-array artefact,
refused credentials and outages — and the api_key in no error text or log line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from config.settings import Secret, SekoSettings
from devstack.sims.seko.model import Knobs
from devstack.sims.seko.server import SekoSimulator
from handlers.connectors.seko.client import (
    SekoAuthFailed,
    SekoClient,
    SekoNoFreeStock,
    SekoRejected,
    SekoUnavailable,
    seko_client_from_settings,
)
from handlers.connectors.seko.protocol import (
    ProductMaster,
    SalesOrder,
    SalesOrderLine,
    order_guid,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

KEY, DC = "client-test-key-7f3a", "DCIW01"
HOUR = timedelta(hours=1)


@dataclass
class Stack:
    sim: SekoSimulator
    client: SekoClient
    session: aiohttp.ClientSession

    def window(self) -> tuple[datetime, datetime]:
        now = self.sim.now()
        return now - HOUR, now + HOUR


@asynccontextmanager
async def stack(*, timeout: float = 5.0, **knobs: Any) -> AsyncIterator[Stack]:
    knobs.setdefault("status_delays", {})
    sim = SekoSimulator(KEY, knobs=Knobs(**knobs), seed=5)
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = SekoClient(sim.url, Secret(KEY), session, timeout=timeout)
            yield Stack(sim, client, session)
    finally:
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def order(number: str, *lines: tuple[str, int], dc: str = DC) -> SalesOrder:
    return SalesOrder(
        number=number,
        dc=dc,
        lines=tuple(
            SalesOrderLine(line_number=n, product_code=code, quantity=quantity)
            for n, (code, quantity) in enumerate(lines, 1)
        ),
    )


def stocked(sim: SekoSimulator, **units: int) -> None:
    for code, quantity in units.items():
        sim.add_product(code)
        sim.add_stock(DC, code, quantity)


# --- sales orders ---


def test_an_order_is_submitted_once_and_a_repeat_is_success() -> None:
    async def scenario() -> None:
        async with stack() as s:
            stocked(s.sim, A1=5)
            so = order("000042", ("A1", 2))
            first = await s.client.submit_order(so)
            assert (first.already, first.guid) == (False, order_guid(so))
            again = await s.client.submit_order(so)
            assert again.already
            assert again.status == "In Production"
            assert len(s.sim.orders) == 1
            placed = s.sim.order("000042")
            assert placed is not None
            assert placed.number == "000042"  # leading zeros kept: sent as a string [DOC]
            assert s.sim.stock(DC, "A1") == (5, 3)

    run(scenario)


def test_a_number_held_by_a_different_order_is_a_conflict() -> None:
    async def scenario() -> None:
        async with stack() as s:
            stocked(s.sim, A1=5)
            await s.client.submit_order(order("SO-1", ("A1", 1)))
            with pytest.raises(SekoRejected) as refused:
                await s.client.submit_order(order("SO-1", ("A1", 2)))
            assert refused.value.conflict
            assert refused.value.code == 100
            assert "already exists" in refused.value.message

    run(scenario)


def test_no_free_stock_is_its_own_error_and_the_order_goes_through_once_stock_arrives() -> None:
    async def scenario() -> None:
        async with stack() as s:
            stocked(s.sim, A1=5, B2=0)
            so = order("SO-1", ("A1", 1), ("B2", 3))
            with pytest.raises(SekoNoFreeStock) as short:
                await s.client.submit_order(so)
            assert short.value.product == "B2"
            assert not isinstance(short.value, SekoRejected)
            assert s.sim.order("SO-1") is None  # the whole order refused [DOC]
            s.sim.receive([("B2", 3)], dc=DC)
            assert not (await s.client.submit_order(so)).already

    run(scenario)


def test_a_lost_answer_is_ambiguous_and_the_retry_finds_the_order() -> None:
    async def scenario() -> None:
        async with stack(timeout=0.3, latency_ms=600.0) as s:
            stocked(s.sim, A1=1)
            so = order("SO-1", ("A1", 1))
            with pytest.raises(SekoUnavailable) as lost:
                await s.client.submit_order(so)
            assert lost.value.ambiguous
            deadline = time.monotonic() + 5
            while s.sim.order("SO-1") is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            s.sim.set_knobs(latency_ms=0.0)
            # iHub checks stock before uniqueness here: the landed order took the last unit
            s.sim.set_knobs(duplicate_before_stock=False)
            again = await s.client.submit_order(so)
            assert again.already
            assert len(s.sim.orders) == 1

    run(scenario)


def test_cancel_before_picking_twice_and_refused_after_dispatch() -> None:
    async def scenario() -> None:
        delays = {"In Production": 60.0}
        async with stack(status_delays=delays) as s:
            stocked(s.sim, A1=5)
            for number in ("SO-1", "SO-2"):
                await s.client.submit_order(order(number, ("A1", 1)))
            assert not (await s.client.cancel_order("SO-1", "001")).already
            assert (await s.client.cancel_order("SO-1")).already
            status = await s.client.order_status(order_guid(order("SO-1", ("A1", 1))))
            assert status is not None
            assert status.cancelled
            await s.sim.advance(61)
            with pytest.raises(SekoRejected, match="can no longer be cancelled"):
                await s.client.cancel_order("SO-2")
            with pytest.raises(SekoRejected, match="No results"):
                await s.client.cancel_order("SO-404")

    run(scenario)


def test_status_and_tracking_of_an_unknown_guid_are_none() -> None:
    async def scenario() -> None:
        async with stack() as s:
            assert await s.client.order_status("f0000000-0000-4000-8000-000000000000") is None
            assert await s.client.order_tracking("f0000000-0000-4000-8000-000000000000") is None

    run(scenario)


# --- products and stock ---


def test_products_are_loaded_once_and_their_flags_cannot_change() -> None:
    async def scenario() -> None:
        async with stack() as s:
            mug = ProductMaster(product_code="MUG-1", description="Mug", lot_controlled=True)
            assert await s.client.submit_product(mug) is True
            assert await s.client.submit_product(mug) is False
            await s.client.update_product(
                ProductMaster(product_code="MUG-1", lot_controlled=True, description="Big mug")
            )
            with pytest.raises(SekoRejected, match="SerialNumberControlled cannot be updated"):
                await s.client.update_product(
                    ProductMaster(product_code="MUG-1", lot_controlled=True, serial_controlled=True)
                )
            with pytest.raises(SekoRejected, match="does not accept"):
                await s.client.submit_product(ProductMaster(product_code="MUG|2"))

    run(scenario)


def test_stock_reads_are_split_under_the_query_cap_and_zero_means_missing() -> None:
    async def scenario() -> None:
        async with stack(query_cap=200) as s:
            codes = [f"SKU-{n:05d}" for n in range(40)]
            for n, code in enumerate(codes):
                s.sim.add_product(code)
                s.sim.add_stock(DC, code, n)  # SKU-00000 holds nothing
            client = SekoClient(s.sim.url, Secret(KEY), s.session, query_cap=200)
            rows = await client.stock_quantity(codes, DC)
            assert {r.product_code: r.quantity for r in rows} == {
                code: n for n, code in enumerate(codes) if n
            }
            reads = [r for r in s.sim.requests if r.operation == "stock.quantity"]
            assert len(reads) > 1
            assert all(r.status == 200 for r in reads)
            assert await client.stock_quantity(["SKU-00000"]) == []  # iHub's "no results"

    run(scenario)


# --- retrieves ---


def test_dispatches_are_read_whether_one_comes_as_an_object_or_several_as_an_array() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.add_product("LOT-1", lot_controlled=True)
            s.sim.add_stock(DC, "LOT-1", 1, lot="L1")
            s.sim.add_stock(DC, "LOT-1", 9, lot="L2")
            assert await s.client.dispatches(*s.window()) == []
            await s.client.submit_order(order("SO-1", ("LOT-1", 3)))
            await s.sim.advance(1)
            (one,) = await s.client.dispatches(*s.window(), dc=DC)
            assert one.sales_order_number == "SO-1"
            assert one.guid == order_guid(order("SO-1", ("LOT-1", 3)))
            assert [(ln.quantity, ln.lot_no) for ln in one.lines] == [(1, "L1"), (2, "L2")]
            assert one.tracking_number
            await s.client.submit_order(order("SO-2", ("LOT-1", 1)))
            await s.sim.advance(1)
            both = await s.client.dispatches(*s.window())
            assert [d.sales_order_number for d in both] == ["SO-1", "SO-2"]
            (single,) = [d for d in both if d.sales_order_number == "SO-2"]
            assert [(ln.quantity, ln.lot_no) for ln in single.lines] == [(1, "L2")]  # (an object)
            tracking = await s.client.order_tracking(single.guid or "")
            assert tracking is not None
            assert tracking.tracking_number == single.tracking_number

    run(scenario)


def test_grns_and_adjustments_are_read_by_window() -> None:
    async def scenario() -> None:
        async with stack() as s:
            stocked(s.sim, A1=5)
            grn = s.sim.receive([("A1", 4)], dc=DC, hb_reference="PO-9")
            s.sim.adjust(DC, [("A1", -1, "DMG")])
            (line,) = await s.client.grns(*s.window(), dc=DC)
            assert (line.product_code, line.quantity, line.hb_reference) == ("A1", 4, "PO-9")
            assert [ln.quantity for ln in await s.client.grn(grn.guid)] == [4]
            (adjustment,) = await s.client.adjustments(*s.window())
            assert (adjustment.kind, adjustment.sign, adjustment.dc) == ("Decrease", -1, DC)
            assert [(ln.product_code, ln.quantity, ln.reason_code) for ln in adjustment.lines] == [
                ("A1", 1, "DMG")
            ]
            later = s.sim.now() + 2 * HOUR
            assert await s.client.adjustments(later, later + HOUR) == []

    run(scenario)


# --- failures at the edge ---


def test_a_refused_api_key_is_auth_failed_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with stack() as s:
            wrong = SekoClient(s.sim.url, Secret("wrong-key-123456"), s.session)
            with pytest.raises(SekoAuthFailed) as denied:
                await wrong.stock_quantity(["A1"])
            assert "wrong-key-123456" not in str(denied.value)
            assert "wrong-key" not in repr(wrong)
            with pytest.raises(SekoRejected) as unknown:  # iHub echoes the URI, key and all
                await s.client.grn("no/such/path")
            assert KEY not in str(unknown.value)
            assert "api_key=***" in str(unknown.value)

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    assert KEY not in caplog.text


def test_outages_are_unavailable_and_ambiguous_only_when_a_write_may_have_landed() -> None:
    async def scenario() -> None:
        async with stack() as s:
            stocked(s.sim, A1=5)
            s.sim.set_knobs(outage_until=datetime.now(UTC) + HOUR)
            with pytest.raises(SekoUnavailable) as outage:
                await s.client.submit_order(order("SO-1", ("A1", 1)))
            assert (outage.value.status, outage.value.ambiguous) == (503, False)
            s.sim.set_knobs(outage_until=None, error_rate=1.0)
            with pytest.raises(SekoUnavailable) as failed:
                await s.client.submit_order(order("SO-1", ("A1", 1)))
            assert (failed.value.status, failed.value.ambiguous) == (500, True)
            with pytest.raises(SekoUnavailable) as read:
                await s.client.stock_quantity(["A1"])
            assert not read.value.ambiguous
            url = s.sim.url
        async with aiohttp.ClientSession() as session:
            closed = SekoClient(url, Secret(KEY), session)
            with pytest.raises(SekoUnavailable) as refused:
                await closed.submit_order(order("SO-1", ("A1", 1)))
            assert not refused.value.ambiguous  # never connected: nothing sent
            assert KEY not in str(refused.value)

    run(scenario)


def test_the_client_from_settings_needs_its_api_key() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(SekoAuthFailed, match=r"seko\.api_key"):
                seko_client_from_settings(SekoSettings(), session)
            settings = SekoSettings(url="http://127.0.0.1:9/api", api_key=Secret(KEY))
            client = seko_client_from_settings(settings, session)
            assert KEY not in repr(client)

    run(scenario)
