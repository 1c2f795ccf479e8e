"""The B1 users of ``skuflow dev`` against the Service Layer simulator over HTTP: the approval
customer's big orders become drafts the approver approves; credit holds read on its orders."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest

from devstack.backoffice import (
    APPROVAL_MARKETPLACE,
    B1_CUSTOMERS,
    HOLD_MARKETPLACES,
    B1BackOffice,
    seed_b1_customers,
)
from devstack.sims.b1.server import B1Simulator

pytestmark = pytest.mark.integration

COMPANY, USER, PASSWORD = "SBODEMO", "manager", "dev-backoffice-password"


async def _order(session: aiohttp.ClientSession, url: str, customer: str, ref: str, n: int) -> Any:
    body = {
        "CardCode": customer, "NumAtCard": ref, "DocDueDate": "2026-12-01",
        "DocumentLines": [{"ItemCode": "ABC-100", "Quantity": n, "UnitPrice": 10}],
    }  # fmt: skip
    async with session.post(f"{url}/Orders", json=body) as response:
        return response.status, await response.json()


@pytest.mark.timeout(30)
def test_the_b1_approver_approves_drafts_only_and_a_credit_hold_reads_on_the_orders() -> None:
    async def main() -> None:
        sim = B1Simulator(COMPANY, USER, PASSWORD)
        sim.set_faults(conflict_window_ms=0)  # as skuflow dev has it
        sim.add_warehouse("01")
        sim.add_item("ABC-100", stock={"01": 100})
        seed_b1_customers(sim)
        office, approval = B1BackOffice(sim), B1_CUSTOMERS[APPROVAL_MARKETPLACE]
        await sim.start()
        try:
            jar = aiohttp.CookieJar(unsafe=True)  # B1SESSION from 127.0.0.1
            async with aiohttp.ClientSession(cookie_jar=jar) as session:
                login = {"CompanyDB": COMPANY, "UserName": USER, "Password": PASSWORD}
                async with session.post(f"{sim.url}/Login", json=login) as response:
                    assert response.status == 200
                assert office.approve("DE-BIG") == "waiting"  # not in the ERP yet
                status, answer = await _order(session, sim.url, approval, "DE-BIG", 20)
                assert (status, answer["error"]["code"]) == (400, -2028), answer  # > 50: a draft
                status, answer = await _order(session, sim.url, approval, "DE-SMALL", 2)
                assert status == 201, answer
                assert office.approve("DE-SMALL") == "none"
                assert office.approve("DE-BIG") == "approved"
                orders = list(sim.sales.rows("Orders", [[("NumAtCard", "DE-BIG")]]))
                assert len(orders) == 1  # saved as an order
                assert office.approve("DE-BIG") == "none"
                held = B1_CUSTOMERS[HOLD_MARKETPLACES[0]]
                status, answer = await _order(session, sim.url, held, "FR-1", 1)
                assert status == 201
                office.hold(held, ["FR-1"])
                document = sim.sales.document("Orders", int(answer["DocEntry"]))
                assert document is not None
                assert document["Confirmed"] == "tNO"
                office.release(held, ["FR-1"])
                document = sim.sales.document("Orders", int(answer["DocEntry"]))
                assert document is not None
                assert document["Confirmed"] == "tYES"
        finally:
            await sim.stop()

    anyio.run(main)
