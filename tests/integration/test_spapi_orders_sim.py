"""The SP-API simulator's Orders v2026-01-01 (searchOrders, getOrder) over real HTTP: the
model's rules, pages and tokens, includedData, usage plans per seller, and the order hooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from devstack.sims.spapi.orders import (
    EXPIRED,
    MISMATCH,
    UNDECODABLE,
    ItemSpec,
    OrderChange,
    OrderSpec,
    Window,
)
from devstack.sims.spapi.server import Faults, SpApiSimulator

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET = "amzn1.application-oa2-client.sim", "sim-secret"
SELLER_TOKEN, OTHER_TOKEN = "Atzr|seller-one", "Atzr|seller-two"
UK, DE = "A1F83G8C2ARO7P", "A1PN6A24D2BKL6"
SEARCH = "/orders/2026-01-01/orders"


@dataclass
class Sim:
    sim: SpApiSimulator
    session: aiohttp.ClientSession
    token: str

    async def token_for(self, refresh_token: str) -> str:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        async with self.session.post(self.sim.lwa_endpoint, data=form) as response:
            assert response.status == 200
            return str((await response.json())["access_token"])

    async def get(
        self, path: str, token: str | None = None, **query: str
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {"x-amz-access-token": token or self.token}
        url = self.sim.endpoint + path
        async with self.session.get(url, params=query, headers=headers) as response:
            return response.status, await response.json(), dict(response.headers)

    async def search(self, **query: str) -> Any:
        status, body, _ = await self.get(SEARCH, **query)
        assert status == 200, body
        return body

    async def refused(self, path: str = SEARCH, **query: str) -> list[str]:
        status, body, headers = await self.get(path, **query)
        assert status == 400, body
        assert headers["x-amzn-RateLimit-Limit"]  # (on 400s, as the model lists it)
        assert {e["code"] for e in body["errors"]} == {"InvalidInput"}
        return [e["message"] for e in body["errors"]]

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.post(self.sim.endpoint + path, json=body) as response:
            return response.status, await response.json(content_type=None)


@asynccontextmanager
async def simulator(**knobs: Any) -> AsyncIterator[Sim]:
    knobs.setdefault("min_before_age_seconds", 0.0)  # searches up to "now" unless a test says
    sim = SpApiSimulator(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=SELLER_TOKEN,
        seller_id="SELLER1",
        faults=Faults(**knobs),
        seed=7,
    )
    sim.add_seller(OTHER_TOKEN, "SELLER2")
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            stack = Sim(sim, session, "")
            stack.token = await stack.token_for(SELLER_TOKEN)
            yield stack
    finally:
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def item(sku: str = "ABC-123", quantity: int = 1, **terms: Any) -> ItemSpec:
    return ItemSpec(seller_sku=sku, quantity=quantity, **terms)


def spec(*items: ItemSpec, **fields: Any) -> OrderSpec:
    return OrderSpec(items=list(items or [item()]), **fields)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


AN_HOUR_AGO = iso(datetime.now(UTC) - timedelta(hours=1))


# --- the query's rules ---


@pytest.mark.timeout(20)
def test_exactly_one_of_created_after_and_last_updated_after_is_required() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            one = "Exactly one of createdAfter and lastUpdatedAfter must be provided."
            assert await s.refused() == [one]
            both = {"createdAfter": AN_HOUR_AGO, "lastUpdatedAfter": AN_HOUR_AGO}
            assert one in await s.refused(**both)

    run(scenario)


@pytest.mark.timeout(20)
def test_created_and_last_updated_bounds_cannot_be_mixed() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            assert await s.refused(createdAfter=AN_HOUR_AGO, lastUpdatedBefore=AN_HOUR_AGO) == [
                "lastUpdatedBefore cannot be set when createdAfter is set."
            ]
            assert await s.refused(lastUpdatedAfter=AN_HOUR_AGO, createdBefore=AN_HOUR_AGO) == [
                "createdBefore cannot be set when lastUpdatedAfter is set."
            ]

    run(scenario)


@pytest.mark.timeout(20)
def test_before_is_at_or_after_after_and_at_least_two_minutes_before_the_request() -> None:
    async def scenario() -> None:
        async with simulator(min_before_age_seconds=120.0) as s:
            now = datetime.now(UTC).replace(microsecond=0)
            minute_ago, hour_ago = iso(now - timedelta(minutes=1)), iso(now - timedelta(hours=1))
            assert await s.refused(lastUpdatedAfter=hour_ago, lastUpdatedBefore=minute_ago) == [
                "lastUpdatedBefore must be at least two minutes before the time of the request."
            ]
            earlier = iso(now - timedelta(hours=2))
            assert await s.refused(createdAfter=hour_ago, createdBefore=earlier) == [
                "createdBefore must be equal to or after createdAfter."
            ]
            three_minutes_ago = iso(now - timedelta(minutes=3))
            body = await s.search(lastUpdatedAfter=hour_ago, lastUpdatedBefore=three_minutes_ago)
            assert body == {"orders": [], "lastUpdatedBefore": three_minutes_ago}
            # Without a *Before, the search covers up to two minutes before the request.
            covered = datetime.fromisoformat(
                (await s.search(createdAfter=hour_ago))["createdBefore"]
            )
            assert abs(covered - (now - timedelta(minutes=2))).total_seconds() < 5

    run(scenario)


@pytest.mark.timeout(20)
def test_enums_page_size_marketplaces_and_dates_are_checked() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            after = {"lastUpdatedAfter": AN_HOUR_AGO}
            [message] = await s.refused(**after, fulfillmentStatuses="UNSHIPPED,Canceled")
            assert "Canceled" in message  # v0's spelling: v2026 says CANCELLED
            assert "fulfilledBy" in (await s.refused(**after, fulfilledBy="AFN"))[0]
            assert "includedData" in (await s.refused(**after, includedData="PRICES"))[0]
            for size in ("0", "101", "ten"):
                assert await s.refused(**after, maxResultsPerPage=size) == [
                    "maxResultsPerPage must be between 1 and 100."
                ]
            many = ",".join(f"M{i:02d}" for i in range(51))
            assert await s.refused(**after, marketplaceIds=many) == [
                "marketplaceIds: at most 50 values."
            ]
            assert await s.refused(lastUpdatedAfter="yesterday") == [
                "Invalid request parameter `lastUpdatedAfter`. Must be an ISO 8601 date-time."
            ]
            await s.search(**after, maxResultsPerPage="100", fulfillmentStatuses="CANCELLED")

    run(scenario)


# --- results and pages ---


@pytest.mark.timeout(20)
def test_orders_come_by_last_update_time_in_pages_until_pagination_is_absent() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            ids = [s.sim.create_order(spec(lag=float(10 - i))) for i in range(5)]
            s.sim.change_order(ids[0], OrderChange(fulfillment_status="SHIPPED", lag=0.0))
            seen: list[str] = []
            stamps: list[str] = []
            query = {"lastUpdatedAfter": AN_HOUR_AGO, "maxResultsPerPage": "2"}
            body = await s.search(**query)
            pages = 1
            while True:
                seen += [o["orderId"] for o in body["orders"]]
                stamps += [o["lastUpdatedTime"] for o in body["orders"]]
                if "pagination" not in body:
                    break
                token = body["pagination"]["nextToken"]
                body = await s.search(**query, paginationToken=token)
                pages += 1
            assert pages == 3
            assert seen == [*ids[1:], ids[0]]  # the changed one is now the latest
            assert stamps == sorted(stamps, key=datetime.fromisoformat)
            assert "lastUpdatedBefore" in body

    run(scenario)


@pytest.mark.timeout(20)
def test_a_next_page_repeats_every_filter_but_page_size_and_included_data() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            for _ in range(3):
                s.sim.create_order(spec())
            query = {"lastUpdatedAfter": AN_HOUR_AGO, "maxResultsPerPage": "1"}
            token = (await s.search(**query))["pagination"]["nextToken"]
            changed = {**query, "fulfillmentStatuses": "UNSHIPPED"}
            assert await s.refused(**changed, paginationToken=token) == [MISMATCH]
            assert await s.refused(paginationToken=token) == [  # the token alone is not enough
                "Exactly one of createdAfter and lastUpdatedAfter must be provided."
            ]
            more = {**query, "maxResultsPerPage": "5", "includedData": "FULFILLMENT"}
            page = await s.search(**more, paginationToken=token)
            assert len(page["orders"]) == 2
            assert "pagination" not in page
            assert page["orders"][0]["fulfillment"]["fulfillmentStatus"] == "UNSHIPPED"

    run(scenario)


@pytest.mark.timeout(20)
def test_pagination_tokens_expire_and_unknown_ones_cannot_be_decoded() -> None:
    async def scenario() -> None:
        async with simulator(pagination_token_ttl=0.2) as s:
            for _ in range(2):
                s.sim.create_order(spec())
            query = {"lastUpdatedAfter": AN_HOUR_AGO, "maxResultsPerPage": "1"}
            token = (await s.search(**query))["pagination"]["nextToken"]
            await asyncio.sleep(0.3)
            assert await s.refused(**query, paginationToken=token) == [EXPIRED]
            assert await s.refused(**query, paginationToken="bm90LWEtdG9rZW4") == [UNDECODABLE]
            s.sim.set_faults(pagination_token_ttl=86400.0)
            token = (await s.search(**query))["pagination"]["nextToken"]
            assert await s.post("/_sim/pagination-tokens/expire") == (204, None)
            assert await s.refused(**query, paginationToken=token) == [EXPIRED]

    run(scenario)


@pytest.mark.timeout(20)
def test_filters_by_status_marketplace_fulfilled_by_and_created_time() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            uk = s.sim.create_order(spec(marketplace_id=UK, lag=3.0))  # (lags: distinct times)
            de = s.sim.create_order(spec(marketplace_id=DE, fulfilled_by="AMAZON", lag=2.0))
            pending = s.sim.create_order(
                spec(marketplace_id=UK, fulfillment_status="PENDING", lag=1.0)
            )
            s.sim.cancel_order(uk)

            async def ids(**query: str) -> list[str]:
                body = await s.search(createdAfter=AN_HOUR_AGO, **query)
                return [o["orderId"] for o in body["orders"]]

            assert await ids() == [uk, de, pending]  # created search: by createdTime
            assert await ids(marketplaceIds=UK) == [uk, pending]
            assert await ids(fulfilledBy="AMAZON") == [de]
            assert await ids(fulfillmentStatuses="CANCELLED,PENDING") == [uk, pending]
            assert await ids(marketplaceIds=DE, fulfilledBy="MERCHANT") == []

    run(scenario)


@pytest.mark.timeout(20)
def test_included_data_adds_fulfillment_proceeds_promotion_and_tax_sections() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            priced = item(
                "ABC-123",
                2,
                unit_price=Decimal("19.99"),
                tax=Decimal("6.66"),
                promotion=Decimal("2.00"),
                promotion_id="PROMO-1",
                reporting_scheme="UOSS",
            )
            window = Window(latest_date_time=datetime(2026, 12, 1, 18, tzinfo=UTC))
            s.sim.create_order(spec(priced, currency_code="GBP", ship_by_window=window))
            [bare] = (await s.search(lastUpdatedAfter=AN_HOUR_AGO))["orders"]
            assert set(bare) == {
                "orderId", "createdTime", "lastUpdatedTime", "salesChannel", "orderItems"
            }  # fmt: skip
            assert bare["salesChannel"] == {"channelName": "AMAZON", "marketplaceId": UK}
            [line] = bare["orderItems"]
            assert line["product"]["price"] == {
                "unitPrice": {"amount": "19.99", "currencyCode": "GBP"}
            }
            assert set(line) == {"orderItemId", "quantityOrdered", "product"}
            every = "FULFILLMENT,PROCEEDS,PROMOTION,TAX,BUYER"
            [full] = (await s.search(lastUpdatedAfter=AN_HOUR_AGO, includedData=every))["orders"]
            assert full["fulfillment"]["fulfillmentStatus"] == "UNSHIPPED"
            assert full["fulfillment"]["fulfilledBy"] == "MERCHANT"
            assert full["fulfillment"]["shipByWindow"]["latestDateTime"] == "2026-12-01T18:00:00Z"
            [line] = full["orderItems"]
            breakdowns = {b["type"]: b for b in line["proceeds"]["breakdowns"]}
            assert breakdowns["ITEM"]["subtotal"]["amount"] == "39.98"  # the line, not the unit
            assert breakdowns["TAX"]["detailedBreakdowns"][0] == {
                "subtype": "ITEM",
                "value": {"amount": "6.66", "currencyCode": "GBP"},
            }
            assert breakdowns["DISCOUNT"]["subtotal"]["amount"] == "-2.00"
            assert line["proceeds"]["proceedsTotal"]["amount"] == "44.64"
            assert line["promotion"] == {"breakdowns": [{"promotionId": "PROMO-1"}]}
            assert line["tax"]["taxCalculationBreakdowns"] == [{"reportingScheme": "UOSS"}]
            assert line["fulfillment"] == {"quantityFulfilled": 0, "quantityUnfulfilled": 2}
            assert full["proceeds"]["grandTotal"] == {"amount": "44.64", "currencyCode": "GBP"}

    run(scenario)


@pytest.mark.timeout(20)
def test_a_pending_order_carries_no_prices_until_it_is_unshipped() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            order_id = s.sim.create_order(
                spec(item(unit_price=Decimal("5.00")), fulfillment_status="PENDING")
            )
            query = {"lastUpdatedAfter": AN_HOUR_AGO, "includedData": "PROCEEDS,FULFILLMENT"}
            [order] = (await s.search(**query))["orders"]
            assert "price" not in order["orderItems"][0]["product"]
            assert "proceeds" not in order
            assert "proceeds" not in order["orderItems"][0]
            s.sim.change_order(order_id, OrderChange(fulfillment_status="UNSHIPPED"))
            [order] = (await s.search(**query))["orders"]
            assert order["orderItems"][0]["product"]["price"]["unitPrice"]["amount"] == "5.00"

    run(scenario)


@pytest.mark.timeout(20)
def test_get_order_answers_the_sellers_own_orders_only() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            order_id = s.sim.create_order(spec())
            path = f"{SEARCH}/{order_id}"
            status, body, headers = await s.get(path, includedData="FULFILLMENT")
            assert status == 200
            assert body["order"]["orderId"] == order_id
            assert body["order"]["fulfillment"]["fulfillmentStatus"] == "UNSHIPPED"
            assert headers["x-amzn-RateLimit-Limit"] == "0.5"
            other = await s.token_for(OTHER_TOKEN)
            status, body, headers = await s.get(path, token=other)
            assert status == 404
            assert body["errors"][0]["code"] == "NotFound"
            assert headers["x-amzn-RateLimit-Limit"] == "0.5"  # (on 404s too)
            assert (await s.refused(path, includedData="NOPE"))[0].startswith(
                "Invalid request parameter `includedData`"
            )
            # Another seller searches its own orders: none.
            status, body, _ = await s.get(SEARCH, token=other, lastUpdatedAfter=AN_HOUR_AGO)
            assert (status, body["orders"]) == (200, [])

    run(scenario)


@pytest.mark.timeout(20)
def test_usage_plans_are_per_seller_and_operation_and_a_429_is_quota_exceeded() -> None:
    async def scenario() -> None:
        async with simulator(usage_plans={"searchOrders": (0.001, 2)}) as s:
            query = {"lastUpdatedAfter": AN_HOUR_AGO}
            for _ in range(2):
                status, _, headers = await s.get(SEARCH, **query)
                assert status == 200
                assert headers["x-amzn-RateLimit-Limit"] == "0.001"
                assert headers["x-amzn-RequestId"]
            status, body, headers = await s.get(SEARCH, **query)
            assert status == 429
            assert body == {
                "errors": [
                    {
                        "code": "QuotaExceeded",
                        "message": "You exceeded your quota for the requested resource.",
                        "details": "",
                    }
                ]
            }
            assert "x-amzn-RateLimit-Limit" not in headers  # not on a 429
            assert headers["x-amzn-RequestId"]
            other = await s.token_for(OTHER_TOKEN)
            assert (await s.get(SEARCH, token=other, **query))[0] == 200  # its own bucket
            order_id = s.sim.create_order(spec())
            assert (await s.get(f"{SEARCH}/{order_id}"))[0] == 200  # getOrder's own bucket

    run(scenario)


@pytest.mark.timeout(20)
def test_the_default_usage_plans_are_the_models() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            statuses = [(await s.get(SEARCH, lastUpdatedAfter=AN_HOUR_AGO))[0] for _ in range(21)]
            assert statuses == [200] * 20 + [429]  # burst 20, then 0.0056/s

    run(scenario)


# --- revisions and the hooks ---


@pytest.mark.timeout(20)
def test_every_change_gives_a_later_last_updated_time_even_with_a_visibility_lag() -> None:
    async def scenario() -> None:
        async with simulator(visibility_lag_seconds=30.0) as s:
            before = datetime.now(UTC)
            order_id = s.sim.create_order(spec(lag=20.0))
            first = s.sim.order_revision(order_id)
            assert first is not None
            assert before - timedelta(seconds=21) < first < before - timedelta(seconds=19)
            stamps = [first]
            for _ in range(5):  # random lags up to 30 s: never earlier than the last revision
                s.sim.change_order(order_id, OrderChange(items=[item(quantity=2)]))
                revision = s.sim.order_revision(order_id)
                assert revision is not None
                stamps.append(revision)
            assert stamps == sorted(stamps)
            assert len(set(stamps)) == len(stamps)

    run(scenario)


@pytest.mark.timeout(20)
def test_cancel_and_ship_move_the_status_and_v0_sees_hook_orders() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            shipped = s.sim.create_order(spec(item("A", 2), item("B", 1), marketplace_id=DE))
            cancelled = s.sim.create_order(spec(fulfilled_by="AMAZON"))
            status, v0, _ = await s.get(f"/orders/v0/orders/{shipped}/orderItems")
            assert status == 200
            assert [
                (i["SellerSKU"], i["QuantityOrdered"]) for i in v0["payload"]["OrderItems"]
            ] == [
                ("A", 2),
                ("B", 1),
            ]
            s.sim.ship_order(shipped)
            s.sim.cancel_order(cancelled, reason="Out of stock")
            status, v0, _ = await s.get(f"/orders/v0/orders/{shipped}")
            assert (v0["payload"]["OrderStatus"], v0["payload"]["MarketplaceId"]) == ("Shipped", DE)
            status, v0, _ = await s.get(f"/orders/v0/orders/{cancelled}")
            assert (v0["payload"]["OrderStatus"], v0["payload"]["FulfillmentChannel"]) == (
                "Canceled",
                "AFN",
            )
            query = {"lastUpdatedAfter": AN_HOUR_AGO, "includedData": "FULFILLMENT,CANCELLATION"}
            orders = {o["orderId"]: o for o in (await s.search(**query))["orders"]}
            assert orders[shipped]["fulfillment"]["fulfillmentStatus"] == "SHIPPED"
            assert orders[shipped]["orderItems"][0]["fulfillment"]["quantityFulfilled"] == 2
            assert orders[cancelled]["fulfillment"]["fulfillmentStatus"] == "CANCELLED"
            execution = orders[cancelled]["orderItems"][0]["cancellation"]["cancellationExecution"]
            assert execution["cancelReason"] == "Out of stock"

    run(scenario)


@pytest.mark.timeout(20)
def test_a_v0_confirmation_is_a_new_revision_of_a_hook_order() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            order_id = s.sim.create_order(spec(item("A", 1, order_item_id="11111111111111")))
            first = s.sim.order_revision(order_id)
            body = {
                "marketplaceId": UK,
                "packageDetail": {
                    "packageReferenceId": "1",
                    "carrierCode": "UPS",
                    "trackingNumber": "1Z999",
                    "shipDate": "2026-11-23T10:00:00Z",
                    "orderItems": [{"orderItemId": "11111111111111", "quantity": 1}],
                },
            }
            url = f"{s.sim.endpoint}/orders/v0/orders/{order_id}/shipmentConfirmation"
            headers = {"x-amz-access-token": s.token}
            async with s.session.post(url, json=body, headers=headers) as response:
                assert response.status == 204
            revision = s.sim.order_revision(order_id)
            assert first is not None
            assert revision is not None
            assert revision > first
            query = {"lastUpdatedAfter": AN_HOUR_AGO, "includedData": "FULFILLMENT,PACKAGES"}
            [order] = (await s.search(**query))["orders"]
            assert order["fulfillment"]["fulfillmentStatus"] == "SHIPPED"
            assert order["packages"][0]["trackingNumber"] == "1Z999"

    run(scenario)


@pytest.mark.timeout(20)
def test_the_order_hooks_work_over_http() -> None:
    async def scenario() -> None:
        async with simulator() as s:
            new = {
                "marketplaceId": UK,
                "fulfilledBy": "MERCHANT",
                "currencyCode": "GBP",
                "shipByWindow": {"latestDateTime": "2026-12-01T18:00:00Z"},
                "items": [{"sellerSku": "ABC-123", "quantity": 3, "unitPrice": "4.50"}],
                "lag": 0,
            }
            status, created = await s.post("/_sim/orders", new)
            assert status == 201
            order_id = created["order"]["orderId"]
            assert created["order"]["orderItems"][0]["quantityOrdered"] == 3
            change = {"items": [{"sellerSku": "ABC-123", "quantity": 2, "unitPrice": "4.50"}]}
            status, changed = await s.post(f"/_sim/orders/{order_id}/change", change)
            assert status == 200
            assert changed["order"]["orderItems"][0]["quantityOrdered"] == 2
            assert changed["order"]["lastUpdatedTime"] > created["order"]["lastUpdatedTime"]
            status, shipped = await s.post(f"/_sim/orders/{order_id}/ship")
            assert shipped["order"]["fulfillment"]["fulfillmentStatus"] == "SHIPPED"
            status, _ = await s.post(f"/_sim/orders/{order_id}/cancel", {"reason": "late"})
            assert s.sim.order_status(order_id) == "Canceled"
            assert (await s.post("/_sim/orders/999-0000000-0000000/ship"))[0] == 404
            assert (await s.post("/_sim/orders", {"items": []}))[0] == 400
            assert (await s.post("/_sim/orders", {**new, "orderId": order_id}))[0] == 400

    run(scenario)
