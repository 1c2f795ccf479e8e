"""The SP-API connector against the simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest

from config.settings import Secret
from devstack.sims.spapi import server as spapi_sim
from devstack.sims.spapi.server import SpApiSimulator
from handlers.connectors.ratelimit import TokenBucket
from handlers.connectors.spapi.client import (
    ConfirmShipmentItem,
    LwaTokenProvider,
    PackageDetail,
    RetryPolicy,
    SpApiAuthError,
    SpApiClient,
    SpApiError,
    SpApiRejected,
    SpApiThrottled,
    SpApiUnavailable,
)

pytestmark = pytest.mark.integration

CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "client-secret-DO-NOT-LEAK-7f3a"
REFRESH_TOKEN = "Atzr|refresh-token-DO-NOT-LEAK-91c2"
ORDER = "171-1234567-1234567"
MARKETPLACE = "A1F83G8C2ARO7P"
SHIP_BY = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
ITEM_A, ITEM_B = "12345678901234", "12345678901235"
NO_RETRY = RetryPolicy(attempts=1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Stack:
    sim: SpApiSimulator
    tokens: LwaTokenProvider
    client: SpApiClient
    session: aiohttp.ClientSession

    def token_requests(self) -> int:
        return sum(1 for r in self.sim.requests if r.operation == "lwa")

    def statuses(self, operation: str = "confirmShipment") -> list[int]:
        return [r.status for r in self.sim.requests if r.operation == operation]


@asynccontextmanager
async def stack(
    *,
    bucket: TokenBucket | None = None,
    retry: RetryPolicy = NO_RETRY,
    timeout: float = 5.0,
    client_secret: str = CLIENT_SECRET,
    refresh_token: str = REFRESH_TOKEN,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Stack]:
    sim = SpApiSimulator(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN
    )
    sim.add_order(ORDER, MARKETPLACE, SHIP_BY, [(ITEM_A, "ABC-123", 2), (ITEM_B, "DEF-456", 1)])
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            tokens = LwaTokenProvider(
                sim.lwa_endpoint,
                CLIENT_ID,
                Secret(client_secret),
                Secret(refresh_token),
                session,
                clock=clock,
            )
            bucket = bucket or TokenBucket(1000, 1000)
            client = SpApiClient(sim.endpoint, tokens, session, bucket, timeout, retry=retry)
            yield Stack(sim, tokens, client, session)
    finally:
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def package(
    reference: str = "1",
    items: tuple[tuple[str, int], ...] = ((ITEM_A, 1),),
    *,
    carrier_code: str = "Royal Mail",
    carrier_name: str | None = None,
    tracking: str = "RM123456789GB",
) -> PackageDetail:
    return PackageDetail(
        package_reference_id=reference,
        carrier_code=carrier_code,
        carrier_name=carrier_name,
        shipping_method="Tracked 24",
        tracking_number=tracking,
        ship_date=datetime(2026, 11, 23, 10, 58, tzinfo=timezone(timedelta(hours=1))),
        order_items=tuple(ConfirmShipmentItem(order_item_id=i, quantity=q) for i, q in items),
    )


# --- confirmShipment and getOrder ---


@pytest.mark.timeout(20)
def test_a_confirmation_reaches_the_simulator_exactly_as_the_orders_v0_model_defines() -> None:
    async def scenario() -> None:
        async with stack() as s:
            confirmed = await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert (confirmed.order_id, confirmed.package_reference_id) == (ORDER, "1")
            assert confirmed.request_id
            assert confirmed.attempts == 1
            assert s.statuses() == [204]
            [request] = [r for r in s.sim.requests if r.operation == "confirmShipment"]
            assert request.path == f"/orders/v0/orders/{ORDER}/shipmentConfirmation"
            assert request.body == {
                "marketplaceId": MARKETPLACE,
                "packageDetail": {
                    "packageReferenceId": "1",
                    "carrierCode": "Royal Mail",
                    "trackingNumber": "RM123456789GB",
                    "shipDate": "2026-11-23T09:58:00Z",  # normalised to UTC
                    "orderItems": [{"orderItemId": ITEM_A, "quantity": 1}],
                    "shippingMethod": "Tracked 24",
                },
            }
            [recorded] = s.sim.confirmations
            assert recorded.package == request.body["packageDetail"]
            assert not recorded.edit

    run(scenario)


@pytest.mark.timeout(20)
def test_carrier_others_is_accepted_with_a_carrier_name() -> None:
    async def scenario() -> None:
        async with stack() as s:
            detail = package(carrier_code="Others", carrier_name="Local Courier Ltd")
            await s.client.confirm_shipment(ORDER, MARKETPLACE, detail)
            assert s.sim.confirmations[0].package["carrierName"] == "Local Courier Ltd"

    run(scenario)


@pytest.mark.timeout(20)
def test_get_order_reports_the_deadline_and_the_status_as_items_ship() -> None:
    async def scenario() -> None:
        async with stack() as s:
            order = await s.client.get_order(ORDER)
            assert (order.amazon_order_id, order.order_status) == (ORDER, "Unshipped")
            assert order.latest_ship_date == SHIP_BY
            assert order.marketplace_id == MARKETPLACE
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package("1", ((ITEM_A, 2),)))
            assert (await s.client.get_order(ORDER)).order_status == "PartiallyShipped"
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package("2", ((ITEM_B, 1),)))
            assert (await s.client.get_order(ORDER)).order_status == "Shipped"

    run(scenario)


@pytest.mark.timeout(20)
def test_repeating_a_package_reference_edits_that_package_instead_of_adding_one() -> None:
    async def scenario() -> None:
        async with stack() as s:
            full = ((ITEM_A, 2), (ITEM_B, 1))
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package("1", full))
            again = package("1", full, tracking="RM000000001GB")
            await s.client.confirm_shipment(ORDER, MARKETPLACE, again)  # not overfulfilment
            assert [c.edit for c in s.sim.confirmations] == [False, True]
            assert s.sim.order_status(ORDER) == "Shipped"

    run(scenario)


# --- Login with Amazon ---


@pytest.mark.timeout(20)
def test_the_access_token_is_cached_across_calls() -> None:
    async def scenario() -> None:
        async with stack() as s:
            for _ in range(3):
                await s.client.get_order(ORDER)
            assert s.token_requests() == 1
            [grant] = [r for r in s.sim.requests if r.operation == "lwa"]
            assert grant.body == {
                "grant_type": "refresh_token",
                "refresh_token": "***",  # the simulator never records credentials
                "client_id": CLIENT_ID,
                "client_secret": "***",
            }

    run(scenario)


@pytest.mark.timeout(20)
def test_the_token_is_refreshed_once_shortly_before_it_expires() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with stack(clock=clock) as s:
            first = await s.tokens.token()
            clock.now += 3600 - 61  # still valid, outside the refresh margin
            assert await s.tokens.token() is first
            clock.now += 2  # inside the margin of 60 s
            second = await s.tokens.token()
            assert second != first
            for _ in range(3):
                await s.client.get_order(ORDER)
            assert s.token_requests() == 2

    run(scenario)


@pytest.mark.timeout(20)
def test_concurrent_callers_share_one_refresh() -> None:
    async def scenario() -> None:
        async with stack() as s:
            tokens = await asyncio.gather(*(s.tokens.token() for _ in range(25)))
            assert len({t.reveal() for t in tokens}) == 1
            assert s.token_requests() == 1
            assert s.tokens.refreshes == 1

    run(scenario)


@pytest.mark.timeout(20)
def test_concurrent_callers_share_one_failed_refresh_too() -> None:
    async def scenario() -> None:
        async with stack(client_secret="wrong") as s:
            outcomes = await asyncio.gather(
                *(s.tokens.token() for _ in range(10)), return_exceptions=True
            )
            assert all(isinstance(o, SpApiAuthError) for o in outcomes)
            assert s.token_requests() == 1
            with pytest.raises(SpApiAuthError):  # a later caller tries again
                await s.tokens.token()
            assert s.token_requests() == 2

    run(scenario)


@pytest.mark.timeout(20)
def test_an_expired_token_403_is_refreshed_and_the_call_retried_once() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.get_order(ORDER)
            s.sim.expire_tokens()
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert s.statuses() == [403, 204]
            assert s.token_requests() == 2

    run(scenario)


@pytest.mark.timeout(20)
def test_a_token_refused_even_when_fresh_is_an_auth_error() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.token_lifetime = 0.0  # every token arrives expired
            with pytest.raises(SpApiAuthError, match="fresh token"):
                await s.client.get_order(ORDER)
            assert s.statuses("getOrder") == [403, 403]

    run(scenario)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("secret", "refresh", "error"),
    [
        ("wrong-secret", REFRESH_TOKEN, "invalid_client"),
        (CLIENT_SECRET, "Atzr|revoked", "invalid_grant"),
    ],
)
def test_refused_credentials_are_an_auth_error_naming_the_lwa_error(
    secret: str, refresh: str, error: str
) -> None:
    async def scenario() -> None:
        async with stack(client_secret=secret, refresh_token=refresh) as s:
            with pytest.raises(SpApiAuthError, match=error) as raised:
                await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert raised.value.operation == "lwa"
            assert s.statuses() == []  # nothing reached Orders without a token

    run(scenario)


# --- rejections: Amazon's code and message, no retry ---


UNKNOWN_ORDER = "999-0000000-0000000"
REJECTIONS = [
    pytest.param(UNKNOWN_ORDER, None, package(), "NotFound", "does not exist", id="unknown order"),
    pytest.param(
        ORDER, None, package(items=(("999", 1),)), "InvalidInput", spapi_sim.BAD_ITEM,
        id="unknown order item",
    ),
    pytest.param(
        ORDER, None, package(items=((ITEM_A, 3),)), "InvalidInput", spapi_sim.OVERFULFILLED,
        id="more than ordered",
    ),
    pytest.param(
        ORDER, None, package(carrier_code="Others"), "InvalidInput", "carrierName",
        id="carrier Others without a name",
    ),
    pytest.param(
        ORDER, None, package(carrier_code="Pigeon Post"), "InvalidInput", "InvalidCarrier",
        id="unsupported carrier",
    ),
    pytest.param(
        ORDER, None, package("PKG-1"), "InvalidInput", spapi_sim.BAD_REFERENCE,
        id="non-numeric package reference",
    ),
    pytest.param(
        ORDER, "Canceled", package(), "InvalidInput", "is Canceled", id="cancelled order"
    ),
    pytest.param(
        ORDER, "Shipped", package("7"), "InvalidInput", spapi_sim.FULFILLED,
        id="already shipped order",
    ),
]  # fmt: skip


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("order_id", "status", "detail", "code", "message"), REJECTIONS)
def test_each_rejection_is_sp_api_rejected_with_amazons_code_and_message(
    order_id: str, status: str | None, detail: PackageDetail, code: str, message: str
) -> None:
    async def scenario() -> None:
        async with stack(retry=RetryPolicy(attempts=3)) as s:
            if status is not None:  # the order as Amazon holds it now
                s.sim.add_order(ORDER, MARKETPLACE, SHIP_BY, [(ITEM_A, "ABC", 1)], status=status)
            with pytest.raises(SpApiRejected) as raised:
                await s.client.confirm_shipment(order_id, MARKETPLACE, detail)
            assert raised.value.code == code
            assert message in raised.value.message
            assert len(s.statuses()) == 1  # rejected once, never retried
            assert s.sim.confirmations == []

    run(scenario)


@pytest.mark.timeout(20)
def test_a_marketplace_that_is_not_the_orders_is_rejected() -> None:
    async def scenario() -> None:
        async with stack() as s:
            with pytest.raises(SpApiRejected, match="marketplaceId"):
                await s.client.confirm_shipment(ORDER, "ATVPDKIKX0DER", package())

    run(scenario)


@pytest.mark.timeout(20)
def test_the_simulator_rejects_bodies_the_model_forbids() -> None:
    async def scenario() -> None:
        async with stack() as s:
            token = (await s.tokens.token()).reveal()
            url = f"{s.sim.endpoint}/orders/v0/orders/{ORDER}/shipmentConfirmation"
            body = {
                "marketplaceId": MARKETPLACE,
                "packageDetail": {
                    "packageReferenceId": "1",
                    "carrierCode": "UPS",
                    "shipDate": "02/21/2022",
                    "orderItems": [{"orderItemId": ITEM_A, "quantity": 1.5}],
                },
            }
            headers = {"x-amz-access-token": token}
            async with s.session.post(url, json=body, headers=headers) as response:
                assert response.status == 400
                assert response.headers["x-amzn-RateLimit-Limit"] == "2.0"
                messages = [e["message"] for e in (await response.json())["errors"]]
            assert messages == [
                "Missing request parameter: packageDetail.trackingNumber.",
                "Invalid request parameter `shipDate`. Must be an ISO 8601 date-time.",
                "Invalid request parameter `packageDetail.orderItems[0].quantity`. "
                "Must be an integer > 0.",
            ]
            async with s.session.get(f"{s.sim.endpoint}/orders/v0/orders/{ORDER}") as response:
                assert response.status == 403
                assert (await response.json())["errors"][0]["details"] == (
                    "Access token is missing in the request header."
                )

    run(scenario)


# --- throttling ---


@pytest.mark.timeout(20)
def test_a_burst_of_30_through_one_shared_bucket_never_meets_a_429() -> None:
    rate, burst = 10.0, 10  # the published 2/s plan's shape, five times faster

    async def scenario() -> None:
        async with stack(bucket=TokenBucket(rate, burst)) as s:
            s.sim.set_faults(throttle_rate=rate, burst=burst)
            orders = [f"202-0000000-{n:07d}" for n in range(30)]
            for order_id in orders:
                s.sim.add_order(order_id, MARKETPLACE, SHIP_BY, [(ITEM_A, "ABC-123", 1)])
            started = time.monotonic()
            await asyncio.gather(
                *(s.client.confirm_shipment(o, MARKETPLACE, package()) for o in orders)
            )
            assert time.monotonic() - started >= (30 - burst) / rate * 0.9  # it did pace
            assert s.statuses() == [204] * 30
            assert len(s.sim.confirmations) == 30

    run(scenario)


@pytest.mark.timeout(20)
def test_a_client_faster_than_the_usage_plan_surfaces_429s_as_throttled() -> None:
    async def scenario() -> None:
        async with stack() as s:  # client bucket 1000/s; simulator at the default 2/s, burst 10
            for n in range(10):
                s.sim.add_order(f"303-0000000-{n:07d}", MARKETPLACE, SHIP_BY, [(ITEM_A, "X", 1)])
                await s.client.confirm_shipment(f"303-0000000-{n:07d}", MARKETPLACE, package())
            with pytest.raises(SpApiThrottled) as raised:
                await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert raised.value.retry_after == pytest.approx(0.5)  # 1 / x-amzn-RateLimit-Limit
            assert s.statuses()[-1] == 429
            assert s.client.rate_limits["confirmShipment"] == 2.0

    run(scenario)


@pytest.mark.timeout(20)
def test_a_throttled_call_waits_for_a_token_and_succeeds_within_its_retries() -> None:
    async def scenario() -> None:
        async with stack(retry=RetryPolicy(attempts=3)) as s:
            s.sim.set_faults(throttle_rate=4.0, burst=1)
            await s.client.get_order(ORDER)
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert 429 in s.statuses()
            assert s.statuses()[-1] == 204

    run(scenario)


# --- unavailability ---


@pytest.mark.timeout(20)
def test_an_outage_is_unavailable_and_not_ambiguous() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(outage_until=datetime.now(UTC) + timedelta(minutes=5))
            with pytest.raises(SpApiUnavailable) as raised:
                await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert (raised.value.status, raised.value.ambiguous) == (503, False)
            s.sim.set_faults(outage_until=None)
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert s.statuses() == [503, 204]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_short_outage_is_ridden_out_by_the_in_call_retries() -> None:
    async def scenario() -> None:
        retry = RetryPolicy(attempts=6, initial_backoff=0.1, max_backoff=0.4)
        async with stack(retry=retry) as s:
            s.sim.set_faults(outage_until=datetime.now(UTC) + timedelta(seconds=0.5))
            confirmed = await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert confirmed.attempts > 1
            assert s.statuses()[-1] == 204
            assert set(s.statuses()[:-1]) == {503}

    run(scenario)


@pytest.mark.timeout(20)
def test_an_internal_failure_is_unavailable_and_ambiguous() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(error_rate=1.0)
            with pytest.raises(SpApiUnavailable) as raised:
                await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert (raised.value.status, raised.value.ambiguous) == (500, True)
            assert "InternalFailure" in str(raised.value)

    run(scenario)


@pytest.mark.timeout(20)
def test_latency_beyond_the_timeout_is_ambiguous_and_a_resend_is_an_edit() -> None:
    async def scenario() -> None:
        async with stack(timeout=0.3) as s:
            s.sim.set_faults(latency_ms=800)
            with pytest.raises(SpApiUnavailable) as raised:
                await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert raised.value.ambiguous
            assert raised.value.status is None
            async with asyncio.timeout(5):  # meanwhile Amazon applied it after all
                while not s.sim.confirmations:
                    await asyncio.sleep(0.05)
            s.sim.set_faults(latency_ms=0)
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert [c.edit for c in s.sim.confirmations] == [False, True]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_refused_connection_is_unavailable_and_not_ambiguous() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.tokens.token()
            closed = SpApiSimulator()
            await closed.start()
            endpoint = closed.endpoint
            await closed.stop()
            client = SpApiClient(endpoint, s.tokens, s.session, TokenBucket(10, 10), retry=NO_RETRY)
            with pytest.raises(SpApiUnavailable) as raised:
                await client.confirm_shipment(ORDER, MARKETPLACE, package())
            assert not raised.value.ambiguous

    run(scenario)


# --- secrets ---


@pytest.mark.timeout(30)
def test_no_secret_appears_in_any_error_text_repr_or_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    objects: list[object] = []
    issued: list[str] = []

    async def collect(call: Coroutine[Any, Any, object]) -> None:
        try:
            await call
        except SpApiError as exc:
            errors.append(exc)

    async def scenario() -> None:
        async with stack(retry=RetryPolicy(attempts=2, initial_backoff=0.01)) as s:
            issued.append((await s.tokens.token()).reveal())
            await collect(s.client.confirm_shipment("999-0000000-0000000", MARKETPLACE, package()))
            s.sim.set_faults(error_rate=1.0)
            await collect(s.client.confirm_shipment(ORDER, MARKETPLACE, package()))
            s.sim.set_faults(error_rate=0.0)
            s.sim.token_lifetime = 0.0
            s.sim.expire_tokens()
            await collect(s.client.get_order(ORDER))
            objects.extend([s.tokens, s.client, await s.tokens.token()])
        for secret, refresh in [("wrong", REFRESH_TOKEN), (CLIENT_SECRET, "Atzr|wrong")]:
            async with stack(client_secret=secret, refresh_token=refresh) as s:
                await collect(s.client.get_order(ORDER))

    run(scenario)
    assert len(errors) == 5
    texts = [f"{e!s} {e!r} {e.__dict__!r}" for e in errors] + [caplog.text]
    texts += [f"{o!s} {o!r}" for o in objects]
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, *issued):
        assert not any(secret in text for text in texts), secret


# --- the simulator's own surface ---


@pytest.mark.timeout(20)
def test_the_inspection_endpoints_show_requests_confirmations_and_set_faults() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            base = f"{s.sim.endpoint}/_sim"
            async with s.session.get(f"{base}/requests") as response:
                requests = await response.json()
            assert [(r["operation"], r["status"]) for r in requests] == [
                ("lwa", 200),
                ("confirmShipment", 204),
            ]
            async with s.session.get(f"{base}/confirmations") as response:
                [confirmation] = await response.json()
            assert (confirmation["order_id"], confirmation["edit"]) == (ORDER, False)
            assert confirmation["package"]["trackingNumber"] == "RM123456789GB"
            async with s.session.post(f"{base}/faults", json={"latency_ms": 5}) as response:
                assert (await response.json())["latency_ms"] == 5
            assert s.sim.faults.latency_ms == 5
            async with s.session.post(f"{base}/faults", json={"outage_until": "soon"}) as response:
                assert response.status == 400
            assert len(s.sim.requests) == 2  # inspection is not recorded

    run(scenario)


@pytest.mark.timeout(20)
def test_get_order_items_lists_what_is_ordered_and_shipped() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.client.confirm_shipment(ORDER, MARKETPLACE, package())
            token = (await s.tokens.token()).reveal()
            url = f"{s.sim.endpoint}/orders/v0/orders/{ORDER}/orderItems"
            async with s.session.get(url, headers={"x-amz-access-token": token}) as response:
                payload = (await response.json())["payload"]
            assert payload["AmazonOrderId"] == ORDER
            assert [
                (i["OrderItemId"], i["SellerSKU"], i["QuantityOrdered"], i["QuantityShipped"])
                for i in payload["OrderItems"]
            ] == [(ITEM_A, "ABC-123", 2, 1), (ITEM_B, "DEF-456", 1, 0)]

    run(scenario)
