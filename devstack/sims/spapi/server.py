"""A protocol-faithful Amazon SP-API (Orders v0) and Login with Amazon simulator on aiohttp.

One port serves the LWA token endpoint (``POST /auth/o2/token``, refresh-token grant) and
``getOrder``, ``getOrderItems``, ``confirmShipment`` as the Orders v0 model (``ordersV0.json``
in amzn/selling-partner-api-models) defines them: ``x-amz-access-token`` auth, ``{"errors":
[{"code", "message", "details"}]}`` bodies, 204 on a confirmation, a token bucket per operation
at its published usage plan answering real 429 ``QuotaExceeded``s, ``x-amzn-RequestId`` on every
response, ``x-amzn-RateLimit-Limit`` on 2xx/400/404 (where the model lists it). Like Amazon,
``OrderStatus`` moves Unshipped → PartiallyShipped → Shipped as items are confirmed, and a
repeated ``packageReferenceId`` of an order replaces that package (an edit), never adds one.

Hooks for tests and ``skuflow dev``: ``add_order``, ``set_faults`` (``latency_ms``,
``error_rate`` → 500, ``outage_until`` → 503, ``throttle_rate``/``burst`` overriding every
usage plan), ``expire_tokens``, and the records ``requests``/``confirmations`` — over HTTP as
``GET /_sim/requests``, ``GET /_sim/confirmations``, ``GET|POST /_sim/faults``. Credentials in
recorded token requests are stored as ``***``.

The model itself (error answers, carrier list, confirmShipment checks) is
:mod:`devstack.sims.spapi.model`.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from devstack.sims.http import LocalServer
from devstack.sims.spapi.model import BAD_CARRIER as BAD_CARRIER
from devstack.sims.spapi.model import BAD_ITEM as BAD_ITEM
from devstack.sims.spapi.model import BAD_REFERENCE as BAD_REFERENCE
from devstack.sims.spapi.model import CARRIER_CODES as CARRIER_CODES
from devstack.sims.spapi.model import DENIED as DENIED
from devstack.sims.spapi.model import FULFILLED as FULFILLED
from devstack.sims.spapi.model import LWA_ERRORS as LWA_ERRORS
from devstack.sims.spapi.model import OVERFULFILLED as OVERFULFILLED
from devstack.sims.spapi.model import REPLIES as REPLIES
from devstack.sims.spapi.model import REQUIRED as REQUIRED
from devstack.sims.spapi.model import Order, Reply, check_confirmation

#: Default (rate per second, burst) of each operation, from the Orders v0 model.
USAGE_PLANS: dict[str, tuple[float, int]] = {
    "confirmShipment": (2.0, 10),
    "getOrder": (0.5, 30),
    "getOrderItems": (0.5, 30),
}
#: How early (seconds) a request may arrive and still find its token: the scheduling and
#: network jitter of a client pacing itself exactly at the published rate is not throttling.
JITTER_TOLERANCE = 0.1
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Faults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    latency_ms: float = 0.0
    error_rate: float = 0.0  # share of SP-API calls answered 500 InternalFailure
    outage_until: Annotated[datetime, msgspec.Meta(tz=True)] | None = None  # 503 until then
    throttle_rate: float | None = None  # overrides every operation's usage plan rate ...
    burst: int | None = None  # ... and burst


class RecordedRequest(msgspec.Struct, frozen=True):
    method: str
    path: str
    operation: str  # "lwa", an operationId, or "" for an unknown path
    body: Any
    status: int
    at: float  # Unix time


class Confirmation(msgspec.Struct, frozen=True):
    order_id: str
    marketplace_id: str
    package_reference_id: str
    package: dict[str, Any]  # packageDetail exactly as received
    edit: bool  # replaced an earlier package with the same packageReferenceId
    at: float


class _Bucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0 - self.rate * JITTER_TOLERANCE:
            return False
        self.tokens -= 1.0
        return True


class SpApiSimulator:
    def __init__(
        self,
        *,
        client_id: str = "amzn1.application-oa2-client.skuflow-dev",
        client_secret: str = "skuflow-dev-client-secret",
        refresh_token: str = "Atzr|skuflow-dev-refresh-token",
        token_lifetime: float = 3600.0,
        seed: int | None = None,
    ) -> None:
        self._credentials = (client_id, client_secret, refresh_token)
        self.token_lifetime = token_lifetime
        self._random = random.Random(seed)
        self._tokens: dict[str, float] = {}  # access token -> monotonic expiry
        self._orders: dict[str, Order] = {}
        self._faults = Faults()
        self._buckets = self._new_buckets()
        self.requests: list[RecordedRequest] = []  # every call but /_sim, in arrival order
        self.confirmations: list[Confirmation] = []  # every accepted confirmShipment
        self.endpoint = ""
        app = web.Application(middlewares=[self._gateway])
        order = "/orders/v0/orders/{orderId}"
        app.router.add_post("/auth/o2/token", self._lwa, name="lwa")
        app.router.add_get(order, self._get_order, name="getOrder")
        app.router.add_get(order + "/orderItems", self._get_items, name="getOrderItems")
        app.router.add_post(order + "/shipmentConfirmation", self._confirm, name="confirmShipment")
        app.router.add_get(
            "/_sim/{record:requests|confirmations|faults}", self._inspect, name="sim"
        )
        app.router.add_post("/_sim/faults", self._post_faults, name="sim.faults")
        self._server = LocalServer(app)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.endpoint = await self._server.start(host, port)

    async def stop(self) -> None:
        await self._server.stop()

    @property
    def lwa_endpoint(self) -> str:
        return f"{self.endpoint}/auth/o2/token"

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change some knobs, keep the others; a new throttle_rate/burst refills the buckets."""
        merged = {**msgspec.structs.asdict(self._faults), **changes}
        self._faults = msgspec.convert(merged, Faults, strict=False)
        if {"throttle_rate", "burst"} & changes.keys():
            self._buckets = self._new_buckets()
        return self._faults

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now: its next call gets a 403."""
        self._tokens = dict.fromkeys(self._tokens, 0.0)

    def add_order(
        self,
        order_id: str,
        marketplace_id: str,
        latest_ship_date: datetime | str,
        items: Iterable[tuple[str, str, int]],  # (order item id, SKU, quantity ordered)
        status: str = "Unshipped",
    ) -> None:
        if isinstance(latest_ship_date, str):
            latest_ship_date = datetime.fromisoformat(latest_ship_date)
        lines = {item_id: (sku, quantity) for item_id, sku, quantity in items}
        self._orders[order_id] = Order(order_id, marketplace_id, latest_ship_date, status, lines)

    def order_status(self, order_id: str) -> str:
        return self._orders[order_id].status

    # --- the gateway: record, faults, auth, throttling ---

    @web.middleware
    async def _gateway(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        operation = request.match_info.route.name or ""
        if operation.startswith("sim"):
            return await handler(request)
        body = _loggable(operation, await request.read())
        try:
            if operation in USAGE_PLANS:
                await self._admit(request, operation)
            response = await handler(request)
        except Reply as reply:
            response = reply.response
        except web.HTTPException as exc:  # unknown path or method
            response = Reply(exc.status, [("NotFound", exc.reason, "")]).response
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        if operation in USAGE_PLANS and (response.status < 300 or response.status in (400, 404)):
            response.headers["x-amzn-RateLimit-Limit"] = str(self._buckets[operation].rate)
        self.requests.append(
            RecordedRequest(
                request.method, request.path, operation, body, response.status, time.time()
            )
        )
        return response

    async def _admit(self, request: web.Request, operation: str) -> None:
        faults = self._faults
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.outage_until is not None and datetime.now(UTC) < faults.outage_until:
            raise Reply.named("outage")
        if self._random.random() < faults.error_rate:
            raise Reply.named("internal")
        token = request.headers.get("x-amz-access-token")
        if not token:
            raise Reply.named("no_token")
        if token not in self._tokens:
            raise Reply.named("bad_token")
        if time.monotonic() >= self._tokens[token]:
            raise Reply.named("expired")
        if not self._buckets[operation].take():
            raise Reply.named("throttled")

    def _new_buckets(self) -> dict[str, _Bucket]:
        rate, burst = self._faults.throttle_rate, self._faults.burst
        return {
            name: _Bucket(rate or plan_rate, burst or plan_burst)
            for name, (plan_rate, plan_burst) in USAGE_PLANS.items()
        }

    # --- Login with Amazon ---

    async def _lwa(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client_secret, refresh_token = self._credentials
        checks = {
            "grant_type": form.get("grant_type") == "refresh_token",
            "client": (form.get("client_id"), form.get("client_secret"))
            == (client_id, client_secret),
            "missing": "refresh_token" in form,
            "refresh_token": form.get("refresh_token") == refresh_token,
        }
        for problem, passed in checks.items():
            if not passed:
                status, error, description = LWA_ERRORS[problem]
                body = {"error_description": description, "error": error}
                return web.json_response(body, status=status)
        access_token = "Atza|" + secrets.token_urlsafe(48)
        self._tokens[access_token] = time.monotonic() + self.token_lifetime
        return web.json_response(
            {
                "access_token": access_token,
                "refresh_token": refresh_token,
                "token_type": "bearer",
                "expires_in": max(1, math.ceil(self.token_lifetime)),
            }
        )

    # --- Orders v0 ---

    def _order(self, request: web.Request) -> Order:
        order = self._orders.get(request.match_info["orderId"])
        if order is None:
            raise Reply.named("not_found")
        return order

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self._order(request)
        shipped = sum(order.shipped(item) for item in order.items)
        ordered = sum(quantity for _, quantity in order.items.values())
        payload = {
            "AmazonOrderId": order.order_id,
            "PurchaseDate": _iso(order.purchased),
            "LastUpdateDate": _iso(datetime.now(UTC)),
            "OrderStatus": order.status,
            "FulfillmentChannel": "MFN",
            "NumberOfItemsShipped": shipped,
            "NumberOfItemsUnshipped": ordered - shipped,
            "MarketplaceId": order.marketplace_id,
            "OrderType": "StandardOrder",
            "EarliestShipDate": _iso(order.purchased),
            "LatestShipDate": _iso(order.latest_ship_date),
        }
        return web.json_response({"payload": payload})

    async def _get_items(self, request: web.Request) -> web.Response:
        order = self._order(request)
        items = [
            {
                "ASIN": f"B0{zlib.crc32(sku.encode()) % 10**8:08d}",
                "SellerSKU": sku,
                "OrderItemId": item_id,
                "QuantityOrdered": quantity,
                "QuantityShipped": order.shipped(item_id),
            }
            for item_id, (sku, quantity) in order.items.items()
        ]
        return web.json_response(
            {"payload": {"AmazonOrderId": order.order_id, "OrderItems": items}}
        )

    async def _confirm(self, request: web.Request) -> web.Response:
        order = self._order(request)
        marketplace, reference, package, edit = check_confirmation(order, await request.read())
        order.packages[reference] = package
        order.restate()
        self.confirmations.append(
            Confirmation(order.order_id, marketplace, reference, package, edit, time.time())
        )
        return web.Response(status=204)

    # --- inspection ---

    async def _inspect(self, request: web.Request) -> web.Response:
        record = request.match_info["record"]
        value = self._faults if record == "faults" else getattr(self, record)
        return web.Response(body=msgspec.json.encode(value), content_type="application/json")

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            self.set_faults(**msgspec.json.decode(await request.read()))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            return Reply(400, [("InvalidInput", str(exc), "")]).response
        return web.Response(body=msgspec.json.encode(self._faults), content_type="application/json")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _loggable(operation: str, raw: bytes) -> Any:
    """The request body for the record: JSON decoded; LWA credentials replaced by ``***``."""
    if not raw:
        return None
    if operation == "lwa":
        secret = {"client_secret", "refresh_token"}
        return {k: "***" if k in secret else v for k, v in parse_qsl(raw.decode(errors="replace"))}
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw.decode(errors="replace")
