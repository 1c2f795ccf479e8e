"""A protocol-faithful Amazon SP-API (Orders v0, v2026-01-01) and Login with Amazon simulator.

One port serves the LWA token endpoint (``POST /auth/o2/token``, refresh-token grant) and
``getOrder``, ``getOrderItems``, ``confirmShipment`` as the Orders v0 model (``ordersV0.json``
in amzn/selling-partner-api-models) defines them: ``x-amz-access-token`` auth, ``{"errors":
[{"code", "message", "details"}]}`` bodies, 204 on a confirmation, a token bucket per operation
at its published usage plan answering real 429 ``QuotaExceeded``s, ``x-amzn-RequestId`` on every
response, ``x-amzn-RateLimit-Limit`` on 2xx/400/404 (where the model lists it). Like Amazon,
``OrderStatus`` moves Unshipped → PartiallyShipped → Shipped as items are confirmed, and a
repeated ``packageReferenceId`` of an order replaces that package (an edit), never adds one.

Orders v2026-01-01 ``searchOrders`` and ``getOrder`` (:mod:`devstack.sims.spapi.orders`: its
rules, pages and JSON) serve the orders created through ``create_order`` (``change_order``,
``cancel_order``, ``ship_order`` give them new revisions); v0 sees those orders too. Each
refresh token is one seller (``add_seller`` adds more): its access tokens see its orders, and
its buckets are its own — one per (seller, operation), at the operation's usage plan.

Hooks for tests and ``skuflow dev``: ``add_order`` (a v0 order), the order hooks above,
``set_faults`` (``latency_ms``, ``error_rate`` → 500, ``outage_until`` → 503,
``throttle_rate``/``burst`` overriding every usage plan, ``usage_plans`` overriding some;
``visibility_lag_seconds``, ``pagination_token_ttl``, ``min_before_age_seconds``: see
:class:`Faults`), ``expire_tokens``, ``expire_pagination_tokens``, and the records
``requests``/``confirmations`` — over HTTP as ``GET /_sim/requests``,
``GET /_sim/confirmations``, ``GET|POST /_sim/faults``, ``POST /_sim/orders`` (an
:class:`~devstack.sims.spapi.orders.OrderSpec`), ``POST /_sim/orders/{orderId}/change`` (an
:class:`~devstack.sims.spapi.orders.OrderChange`), ``.../cancel`` and ``.../ship`` (optional
``{"reason", "lag"}``), ``POST /_sim/pagination-tokens/expire``. Credentials in recorded token
requests are stored as ``***``.

The v0 model itself (error answers, carrier list, confirmShipment checks) is
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
from devstack.sims.spapi.orders import (
    INCLUDED_DATA,
    OrderBook,
    OrderChange,
    OrderSpec,
    PageTokens,
    parse_search,
    render,
    search_page,
)

#: Default (rate per second, burst) of each operation, from the Orders v0 and v2026 models.
USAGE_PLANS: dict[str, tuple[float, int]] = {
    "confirmShipment": (2.0, 10),
    "getOrder": (0.5, 30),
    "getOrderItems": (0.5, 30),
    "searchOrders": (0.0056, 20),
    "getOrder.v2026": (0.5, 30),
}
V2026 = "/orders/2026-01-01/orders"
#: The seller whose access token authorised the request.
SELLER = web.RequestKey("seller", str)
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
    #: (rate, burst) of some operations, e.g. {"searchOrders": [1.0, 3]}, below throttle_rate.
    usage_plans: dict[str, tuple[float, int]] = {}
    #: A new revision's lastUpdatedTime lies up to this far in the past when it becomes
    #: visible to searchOrders (eventual consistency [UNCONFIRMED]; uniform in [0, this]).
    visibility_lag_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    #: A searchOrders nextToken expires this long after it was issued (the model: 24 hours).
    pagination_token_ttl: Annotated[float, msgspec.Meta(gt=0)] = 86400.0
    #: createdBefore/lastUpdatedBefore must be this far before the request (the model: 2 min).
    min_before_age_seconds: Annotated[float, msgspec.Meta(ge=0)] = 120.0


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
        seller_id: str = "A2SKUFLOWSELLER",
        faults: Faults | None = None,
    ) -> None:
        self._credentials = (client_id, client_secret)
        self._sellers = {refresh_token: seller_id}  # refresh token -> seller id
        self.token_lifetime = token_lifetime
        self._random = random.Random(seed)
        self._tokens: dict[str, tuple[float, str]] = {}  # access token -> (expiry, seller)
        self._orders: dict[str, Order] = {}
        self._faults = faults or Faults()
        self._buckets: dict[tuple[str, str], _Bucket] = {}  # (seller, operation): made on use
        self.book = OrderBook(
            self._orders,
            default_seller=lambda: seller_id,
            lag=lambda: self._faults.visibility_lag_seconds,
            rng=self._random,
        )
        self._pages = PageTokens(time.monotonic, lambda: self._faults.pagination_token_ttl)
        self.requests: list[RecordedRequest] = []  # every call but /_sim, in arrival order
        self.confirmations: list[Confirmation] = []  # every accepted confirmShipment
        self.endpoint = ""
        app = web.Application(middlewares=[self._gateway])
        order = "/orders/v0/orders/{orderId}"
        app.router.add_post("/auth/o2/token", self._lwa, name="lwa")
        app.router.add_get(order, self._get_order, name="getOrder")
        app.router.add_get(order + "/orderItems", self._get_items, name="getOrderItems")
        app.router.add_post(order + "/shipmentConfirmation", self._confirm, name="confirmShipment")
        app.router.add_get(V2026, self._search_orders, name="searchOrders")
        app.router.add_get(V2026 + "/{orderId}", self._get_order_v2026, name="getOrder.v2026")
        app.router.add_get(
            "/_sim/{record:requests|confirmations|faults}", self._inspect, name="sim"
        )
        app.router.add_post("/_sim/faults", self._post_faults, name="sim.faults")
        app.router.add_post("/_sim/orders", self._post_order, name="sim.orders")
        app.router.add_post(
            "/_sim/orders/{orderId}/{action:change|cancel|ship}",
            self._post_order_action,
            name="sim.orders.action",
        )
        app.router.add_post(
            "/_sim/pagination-tokens/expire", self._post_expire_pages, name="sim.pages"
        )
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
        if {"throttle_rate", "burst", "usage_plans"} & changes.keys():
            self._buckets = {}
        return self._faults

    def add_seller(self, refresh_token: str, seller_id: str) -> None:
        """Another seller authorised the application: its refresh token, its orders."""
        self._sellers[refresh_token] = seller_id

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now: its next call gets a 403."""
        self._tokens = {token: (0.0, seller) for token, (_, seller) in self._tokens.items()}

    def expire_pagination_tokens(self) -> None:
        """Every searchOrders nextToken issued so far has expired: using one is a 400."""
        self._pages.expire()

    def create_order(self, spec: OrderSpec) -> str:
        """A new order (v2026 and v0 see it); its id."""
        return self.book.create(spec).order_id

    def change_order(self, order_id: str, change: OrderChange) -> None:
        self.book.change(order_id, change)

    def cancel_order(
        self, order_id: str, reason: str = "Buyer requested cancellation", lag: float | None = None
    ) -> None:
        self.book.cancel(order_id, reason, lag)

    def ship_order(self, order_id: str, lag: float | None = None) -> None:
        """Every item ships in one package; the order is SHIPPED."""
        self.book.ship(order_id, lag)

    def order_revision(self, order_id: str) -> datetime | None:
        """The order's lastUpdatedTime (None for a v0 order, whose last update is "now")."""
        return self._orders[order_id].updated

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
            response.headers["x-amzn-RateLimit-Limit"] = str(float(self._plan(operation)[0]))
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
        expiry, seller = self._tokens[token]
        if time.monotonic() >= expiry:
            raise Reply.named("expired")
        request[SELLER] = seller
        bucket = self._buckets.get((seller, operation))
        if bucket is None:
            bucket = self._buckets[seller, operation] = _Bucket(*self._plan(operation))
        if not bucket.take():
            raise Reply.named("throttled")

    def _plan(self, operation: str) -> tuple[float, int]:
        """The operation's (rate, burst): throttle_rate/burst, else usage_plans, else Amazon's."""
        rate, burst = self._faults.usage_plans.get(operation, USAGE_PLANS[operation])
        return self._faults.throttle_rate or rate, self._faults.burst or burst

    # --- Login with Amazon ---

    async def _lwa(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client_secret = self._credentials
        refresh_token = str(form.get("refresh_token", ""))
        checks = {
            "grant_type": form.get("grant_type") == "refresh_token",
            "client": (form.get("client_id"), form.get("client_secret"))
            == (client_id, client_secret),
            "missing": "refresh_token" in form,
            "refresh_token": refresh_token in self._sellers,
        }
        for problem, passed in checks.items():
            if not passed:
                status, error, description = LWA_ERRORS[problem]
                body = {"error_description": description, "error": error}
                return web.json_response(body, status=status)
        access_token = "Atza|" + secrets.token_urlsafe(48)
        expiry = time.monotonic() + self.token_lifetime
        self._tokens[access_token] = (expiry, self._sellers[refresh_token])
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
            "LastUpdateDate": _iso(order.updated or datetime.now(UTC)),
            "OrderStatus": order.status,
            "FulfillmentChannel": "AFN" if order.fulfilled_by == "AMAZON" else "MFN",
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
        if order.updated is not None:  # an order with revisions: this is one
            self.book.stamp(order)
        self.confirmations.append(
            Confirmation(order.order_id, marketplace, reference, package, edit, time.time())
        )
        return web.Response(status=204)

    # --- Orders v2026-01-01 ---

    async def _search_orders(self, request: web.Request) -> web.Response:
        query = {key: ",".join(request.query.getall(key)) for key in request.query}
        now, min_age = datetime.now(UTC), self._faults.min_before_age_seconds
        search = parse_search(query, now, min_age)
        orders = self.book.booked(request[SELLER])
        return web.json_response(search_page(orders, search, self._pages, now, min_age))

    async def _get_order_v2026(self, request: web.Request) -> web.Response:
        query = {key: ",".join(request.query.getall(key)) for key in request.query}
        included = _included(query.get("includedData", ""))
        order = self.book.find(request.match_info["orderId"], request[SELLER])
        return web.json_response({"order": render(order, included)})

    # --- inspection and hooks ---

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

    async def _post_order(self, request: web.Request) -> web.Response:
        try:
            order = self.book.create(msgspec.json.decode(await request.read(), type=OrderSpec))
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError, ValueError) as exc:
            return Reply(400, [("InvalidInput", str(exc), "")]).response
        return web.json_response({"order": render(order, frozenset(_ALL_DATA))}, status=201)

    async def _post_order_action(self, request: web.Request) -> web.Response:
        order_id, action, raw = request.match_info["orderId"], request.match_info["action"], b""
        try:
            raw = await request.read()
            if action == "change":
                order = self.book.change(order_id, msgspec.json.decode(raw, type=OrderChange))
            else:
                options = msgspec.json.decode(raw or b"{}", type=_ActionOptions)
                order = (
                    self.book.cancel(order_id, options.reason, options.lag)
                    if action == "cancel"
                    else self.book.ship(order_id, options.lag)
                )
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            return Reply(400, [("InvalidInput", str(exc), "")]).response
        except KeyError as exc:
            return Reply(404, [("NotFound", str(exc), "")]).response
        return web.json_response({"order": render(order, frozenset(_ALL_DATA))})

    async def _post_expire_pages(self, _request: web.Request) -> web.Response:
        self.expire_pagination_tokens()
        return web.Response(status=204)


class _ActionOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: str = "Buyer requested cancellation"
    lag: Annotated[float, msgspec.Meta(ge=0)] | None = None


_ALL_DATA = ("FULFILLMENT", "PROCEEDS", "PROMOTION", "CANCELLATION", "TAX", "PACKAGES")


def _included(raw: str) -> frozenset[str]:
    values = frozenset(v for v in raw.split(",") if v)
    wrong = sorted(values - set(INCLUDED_DATA))
    if wrong:
        raise Reply(
            400,
            [
                (
                    "InvalidInput",
                    f"Invalid request parameter `includedData`: {', '.join(wrong)}.",
                    "",
                )
            ],
        )
    return values


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
