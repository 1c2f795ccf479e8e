"""Amazon Orders API v2026-01-01: ``searchOrders`` (one page) and ``getOrder``.

The model is ``models/orders-api-model/orders_2026-01-01.json`` (amzn/selling-partner-api-models
96d516b). Its Structs here carry only what skuflow uses (unknown fields are ignored); money
amounts are :class:`~decimal.Decimal` (the model's ``Decimal`` is a string). What callers rely on:

* :meth:`OrdersClient.search_orders` returns one :class:`OrdersPage`: the orders,
  ``next_token`` (None on the last page: the model's ``pagination`` is absent then) and the
  ``lastUpdatedBefore``/``createdBefore`` the search covered. A next page repeats every filter
  with ``pagination_token`` (the model: only ``maxResultsPerPage`` and ``includedData`` may
  change); a token expires after 24 hours, which Amazon answers with a 400
  (:class:`~handlers.connectors.spapi.client.SpApiRejected`).
* Every call is paced by the operation's :class:`~handlers.connectors.ratelimit.TokenBucket`
  (searchOrders' plan is 0.0056/s, burst 20: ``orders.capture_rate_per_second`` /
  ``capture_burst``). A 429 is waited out, never returned: the bucket is emptied (Amazon's is,
  so the next send waits a full token) and repeated 429s back off further, doubling up to
  ``max_throttle_backoff`` — a page is late, never dropped. Other failures are the client's
  (:mod:`handlers.connectors.spapi.client`): 5xx and timeouts retried a little then
  :class:`~handlers.connectors.spapi.client.SpApiUnavailable`, refused credentials
  :class:`~handlers.connectors.spapi.client.SpApiAuthError`.
* ``includedData`` decides which sections come back: without ``FULFILLMENT`` an order has no
  ``fulfillment`` (status, fulfilled by, ship-by window), without ``PROCEEDS`` no tax or
  discount amounts. :data:`CAPTURE_DATA` is what order capture needs.
* Item tax and promotion discount are not fields of ``OrderItem``: they are its ``proceeds``
  breakdowns of type TAX and DISCOUNT (their ``detailedBreakdowns`` subtype ITEM when given,
  which leaves out the shipping share). ``OrderItem.tax`` holds no amounts, only the
  reporting scheme (IOSS / UOSS) and the collection model.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import quote

import msgspec

from config.settings import OrdersSettings
from handlers.connectors.ratelimit import TokenBucket
from handlers.connectors.spapi.client import GET_ORDER_PLAN, SpApiClient
from handlers.connectors.spapi.lwa import SpApiThrottled, SpApiUnavailable

log = logging.getLogger("skuflow.spapi")

SEARCH_ORDERS, GET_ORDER_V2026 = "searchOrders", "getOrder.v2026"
#: searchOrders' published usage plan (rate per second, burst).
SEARCH_ORDERS_PLAN = (0.0056, 20)
PATH = "/orders/2026-01-01/orders"
#: The datasets order capture reads: status, fulfilled-by and ship-by (FULFILLMENT), tax and
#: discount amounts (PROCEEDS), the cancellation's reason (CANCELLATION), the tax reporting
#: scheme (TAX).
CAPTURE_DATA = ("FULFILLMENT", "PROCEEDS", "CANCELLATION", "TAX")


class Money(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    amount: Decimal
    currency_code: str


class DateTimeRange(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    earliest_date_time: datetime | None = None
    latest_date_time: datetime | None = None


class SalesChannel(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Where the order was placed; ``marketplace_id`` is optional in the model."""

    channel_name: str  # AMAZON | NON_AMAZON
    marketplace_id: str | None = None


class OrderFulfillment(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    fulfillment_status: str  # PENDING_AVAILABILITY, PENDING, UNSHIPPED, ..., CANCELLED
    fulfilled_by: str | None = None  # MERCHANT | AMAZON
    ship_by_window: DateTimeRange | None = None


class ItemPrice(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    unit_price: Money | None = None  # per unit (v0's ItemPrice was the line total)


class ItemProduct(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    asin: str | None = None
    seller_sku: str | None = None
    title: str | None = None
    price: ItemPrice | None = None  # absent while the order is PENDING


class DetailedBreakdown(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    subtype: str | None = None  # ITEM, SHIPPING, GIFT_WRAP, COD_FEE, OTHER, DISCOUNT
    value: Money | None = None


class ProceedsBreakdown(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    kind: str = msgspec.field(name="type")  # ITEM, SHIPPING, GIFT_WRAP, COD_FEE, OTHER, TAX, ...
    subtotal: Money
    detailed_breakdowns: tuple[DetailedBreakdown, ...] = ()


class ItemProceeds(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    proceeds_total: Money | None = None
    breakdowns: tuple[ProceedsBreakdown, ...] = ()


class TaxCalculationBreakdown(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    reporting_scheme: str | None = None  # IOSS | UOSS


class ItemTax(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    tax_calculation_breakdowns: tuple[TaxCalculationBreakdown, ...] = ()


class CancellationExecution(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    cancelled_by: str | None = None  # BUYER | MERCHANT | AMAZON
    cancel_reason: str | None = None


class ItemCancellation(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    cancellation_execution: CancellationExecution | None = None


class OrderItem(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    order_item_id: str
    quantity_ordered: int
    product: ItemProduct
    proceeds: ItemProceeds | None = None
    cancellation: ItemCancellation | None = None
    tax: ItemTax | None = None

    @property
    def unit_price(self) -> Money | None:
        return self.product.price.unit_price if self.product.price else None

    @property
    def item_tax(self) -> Money | None:
        """The line's tax on the item (not on its shipping), from its TAX proceeds."""
        return self._proceeds("TAX")

    @property
    def promotion_discount(self) -> Money | None:
        """The line's promotional discount on the item, positive, from its DISCOUNT proceeds
        (the model does not say the sign of a discount's subtotal)."""
        discount = self._proceeds("DISCOUNT")
        return msgspec.structs.replace(discount, amount=abs(discount.amount)) if discount else None

    @property
    def reporting_scheme(self) -> str | None:
        schemes = self.tax.tax_calculation_breakdowns if self.tax else ()
        return next((s.reporting_scheme for s in schemes if s.reporting_scheme), None)

    @property
    def cancel_reason(self) -> str | None:
        execution = self.cancellation.cancellation_execution if self.cancellation else None
        return execution.cancel_reason if execution else None

    def _proceeds(self, kind: str) -> Money | None:
        for part in self.proceeds.breakdowns if self.proceeds else ():
            if part.kind == kind:
                detail = [d.value for d in part.detailed_breakdowns if d.subtype == "ITEM"]
                return detail[0] if detail and detail[0] is not None else part.subtotal
        return None


class Order(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The parts of the model's ``Order`` skuflow uses; ``fulfillment`` comes with
    ``includedData=FULFILLMENT`` only."""

    order_id: str
    created_time: datetime
    last_updated_time: datetime
    sales_channel: SalesChannel
    order_items: tuple[OrderItem, ...]
    fulfillment: OrderFulfillment | None = None
    programs: tuple[str, ...] = ()  # PRIME, AMAZON_BUSINESS, PREORDER, ...


class Pagination(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    next_token: str | None = None


class _SearchOrdersResponse(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    orders: tuple[Order, ...]
    pagination: Pagination | None = None
    last_updated_before: datetime | None = None
    created_before: datetime | None = None


class _GetOrderResponse(msgspec.Struct, frozen=True, kw_only=True):
    order: Order


class OrdersPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of searchOrders. ``next_token``: the next page's ``pagination_token`` (None:
    this was the last); ``last_updated_before``/``created_before``: the bound Amazon applied."""

    orders: tuple[Order, ...]
    next_token: str | None
    last_updated_before: datetime | None
    created_before: datetime | None


_DECODE_SEARCH = msgspec.json.Decoder(_SearchOrdersResponse).decode
_DECODE_ORDER = msgspec.json.Decoder(_GetOrderResponse).decode


class OrdersClient:
    """Orders v2026-01-01 over an :class:`SpApiClient` (its tokens, retries and errors)."""

    def __init__(
        self,
        client: SpApiClient,
        search_bucket: TokenBucket,
        order_bucket: TokenBucket | None = None,
        *,
        max_throttle_backoff: float = 900.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._client, self._search_bucket = client, search_bucket
        client.pace(SEARCH_ORDERS, search_bucket)
        client.pace(GET_ORDER_V2026, order_bucket or TokenBucket(*GET_ORDER_PLAN))
        self._max_backoff, self._sleep = max_throttle_backoff, sleep
        self._random = rng or random.Random()
        self.throttles = 0  # 429s waited out so far

    def __repr__(self) -> str:
        return f"OrdersClient({self._client!r}, search={self._search_bucket!r})"

    async def search_orders(
        self,
        *,
        last_updated_after: datetime | None = None,
        last_updated_before: datetime | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        marketplace_ids: Sequence[str] = (),
        fulfillment_statuses: Sequence[str] = (),
        fulfilled_by: Sequence[str] = (),
        included_data: Sequence[str] = CAPTURE_DATA,
        max_results_per_page: int | None = None,
        pagination_token: str | None = None,
    ) -> OrdersPage:
        """One page of orders (exactly one of ``created_after``/``last_updated_after``)."""
        stamps = {
            "createdAfter": created_after,
            "createdBefore": created_before,
            "lastUpdatedAfter": last_updated_after,
            "lastUpdatedBefore": last_updated_before,
        }
        lists = {
            "marketplaceIds": marketplace_ids,
            "fulfillmentStatuses": fulfillment_statuses,
            "fulfilledBy": fulfilled_by,
            "includedData": included_data,
        }
        query = [(name, iso(value)) for name, value in stamps.items() if value is not None]
        query += [(name, ",".join(values)) for name, values in lists.items() if values]
        if max_results_per_page is not None:
            query.append(("maxResultsPerPage", str(max_results_per_page)))
        if pagination_token is not None:
            query.append(("paginationToken", pagination_token))
        raw = await self._unthrottled(query)
        try:
            answer = _DECODE_SEARCH(raw)
        except msgspec.MsgspecError as exc:
            reason = f"malformed searchOrders response: {exc}"
            raise SpApiUnavailable(reason, ambiguous=False, operation=SEARCH_ORDERS) from None
        return OrdersPage(
            orders=answer.orders,
            next_token=(answer.pagination.next_token or None) if answer.pagination else None,
            last_updated_before=answer.last_updated_before,
            created_before=answer.created_before,
        )

    async def get_order(self, order_id: str, included_data: Sequence[str] = CAPTURE_DATA) -> Order:
        """One order with its items (a 404 is :class:`SpApiRejected` ``NotFound``)."""
        query = [("includedData", ",".join(included_data))] if included_data else []
        path = f"{PATH}/{quote(order_id, safe='')}"
        raw = await self._client.get(GET_ORDER_V2026, path, query)
        try:
            return _DECODE_ORDER(raw).order
        except msgspec.MsgspecError as exc:
            reason = f"malformed getOrder response: {exc}"
            raise SpApiUnavailable(reason, ambiguous=False, operation=GET_ORDER_V2026) from None

    async def _unthrottled(self, query: list[tuple[str, str]]) -> bytes:
        """searchOrders until it is not a 429: each one empties the bucket (the next send
        waits a full token); from the second in a row, also a jittered, doubling backoff."""
        throttled = 0
        while True:
            try:
                return await self._client.get(SEARCH_ORDERS, PATH, query)
            except SpApiThrottled as failure:
                throttled += 1
                self.throttles += 1
                await self._search_bucket.drain()
                token = 1.0 / self._search_bucket.rate
                backoff = 0.0
                if throttled > 1:
                    backoff = min(self._max_backoff, token * 2.0 ** (throttled - 2))
                    backoff *= 0.5 + self._random.random() / 2
                log.warning(
                    "searchOrders throttled (%d in a row): %s; next send in %.1fs",
                    throttled,
                    failure,
                    token + backoff,
                )
                await self._sleep(backoff)


def orders_client_from_settings(client: SpApiClient, settings: OrdersSettings) -> OrdersClient:
    """The order poller's client: searchOrders paced at ``orders.capture_rate_per_second`` /
    ``capture_burst`` (only the seller's leading replica polls, so a process bucket is right)."""
    bucket = TokenBucket(settings.capture_rate_per_second, settings.capture_burst)
    return OrdersClient(client, bucket)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC (milliseconds when there are any), as the model's examples write it."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}Z" if moment.microsecond else f"{text}Z"
