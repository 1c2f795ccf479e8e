"""Orders API v2026-01-01 as the SP-API simulator serves it: ``searchOrders`` and ``getOrder``.

From ``models/orders-api-model/orders_2026-01-01.json`` (amzn/selling-partner-api-models,
96d516b): camelCase query parameters; exactly one of ``createdAfter``/``lastUpdatedAfter``, and
neither ``*Before`` of the other kind; a ``*Before`` must be at or after its ``*After`` and at
least two minutes before the request (bounds are inclusive: "at or after", "at or before");
``fulfillmentStatuses``/``fulfilledBy``/``includedData`` from their enums; ``marketplaceIds`` at
most 50; ``maxResultsPerPage`` 1-100 (default 100); arrays as comma-separated values (Swagger
2.0's default ``csv``). A next page is asked for with ``paginationToken`` = the previous
``pagination.nextToken`` *and every other parameter as before* (only ``maxResultsPerPage`` and
``includedData`` may change); the token expires after 24 hours; ``pagination`` is absent on the
last page. The response names ``lastUpdatedBefore`` (or ``createdBefore``) of the search.
``includedData`` adds sections: FULFILLMENT (``fulfillment``), PROCEEDS (``proceeds``),
PROMOTION, CANCELLATION, TAX, PACKAGES; the rest are accepted and add nothing here.

Where the model is silent (each [UNCONFIRMED], a knob where it matters):

- the error messages (the model gives the ``InvalidInput`` code only; an undecodable token
  gets v0's NextToken message, seen in issues);
- the order of results: ``(lastUpdatedTime, orderId)`` for a last-updated search,
  ``(createdTime, orderId)`` for a created one, paged by position (keyset), so an order
  changed mid-pagination moves forward and is never skipped;
- without an explicit ``*Before``, the search covers up to the request time minus two
  minutes, fixed at the first page (the value the response names);
- an order's ``lastUpdatedTime`` may lie up to ``visibility_lag_seconds`` in the past when the
  revision becomes visible (the search index is eventually consistent), so a cursor that
  moved to "now" would miss it;
- a PENDING order carries no prices (``product.price``, ``proceeds``), as documented for v0;
- a DISCOUNT proceeds breakdown is negative (it reduces the proceeds).

Orders are created and changed through hooks (:class:`OrderSpec`, :class:`OrderChange`); every
change gives a later ``lastUpdatedTime`` (millisecond precision, strictly increasing per order).
They are :class:`~devstack.sims.spapi.model.Order` s too, so Orders v0 ``getOrder``,
``getOrderItems`` and ``confirmShipment`` see them.
"""

from __future__ import annotations

import random
import secrets
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

import msgspec

from devstack.sims.spapi.model import Order, Reply, invalid

FulfillmentStatus = Literal[
    "PENDING_AVAILABILITY",
    "PENDING",
    "UNSHIPPED",
    "PARTIALLY_SHIPPED",
    "SHIPPED",
    "CANCELLED",
    "UNFULFILLABLE",
]
FULFILLMENT_STATUSES: tuple[str, ...] = get_args(FulfillmentStatus)
FULFILLED_BY = ("MERCHANT", "AMAZON")
INCLUDED_DATA = (
    *("BUYER", "RECIPIENT", "PROCEEDS", "EXPENSE", "PROMOTION", "CANCELLATION"),
    *("FULFILLMENT", "PACKAGES", "TAX", "PAYMENT", "FULFILLMENT_ORDERS"),
)
#: v2026 fulfillmentStatus <-> v0 OrderStatus (v0's InvoiceUnconfirmed has no v2026 value: all
#: items shipped, so SHIPPED [UNCONFIRMED]).
V0_STATUS = dict(
    zip(
        FULFILLMENT_STATUSES,
        (
            *("PendingAvailability", "Pending", "Unshipped", "PartiallyShipped", "Shipped"),
            *("Canceled", "Unfulfillable"),
        ),
        strict=True,
    )
)
V2026_STATUS = {v0: v2026 for v2026, v0 in V0_STATUS.items()} | {"InvoiceUnconfirmed": "SHIPPED"}
MAX_MARKETPLACES, MAX_PAGE = 50, 100
UNDECODABLE = (
    "We could not decode your paginationToken. Possible reasons include: a transmission error, "
    "improper quoting or a truncation problem."
)
EXPIRED = "The paginationToken has expired. Search again without it."
MISMATCH = (
    "The request's parameters differ from those of the request that returned the "
    "paginationToken (only maxResultsPerPage and includedData may change)."
)
Stamp = Annotated[datetime, msgspec.Meta(tz=True)]


# --- the hooks' bodies (camelCase, as POSTed to /_sim/orders) ---


class ItemSpec(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """One order item. Money in the order's currency: ``unit_price`` per unit, ``tax`` and
    ``promotion`` (a positive discount) for the whole line."""

    seller_sku: str
    quantity: Annotated[int, msgspec.Meta(ge=0)] = 1
    unit_price: Decimal | None = None
    tax: Decimal | None = None
    promotion: Decimal | None = None
    promotion_id: str | None = None
    order_item_id: str | None = None  # default: a fresh 14-digit id
    asin: str | None = None
    title: str | None = None
    reporting_scheme: Literal["IOSS", "UOSS"] | None = None


class Window(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    earliest_date_time: Stamp | None = None
    latest_date_time: Stamp | None = None


class OrderSpec(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """A new order. ``lag``: seconds its ``lastUpdatedTime`` lies in the past when it becomes
    visible (None: a random share of the ``visibility_lag_seconds`` knob)."""

    items: Annotated[list[ItemSpec], msgspec.Meta(min_length=1)]
    marketplace_id: str = "A1F83G8C2ARO7P"
    order_id: str | None = None  # default: a fresh 3-7-7 id
    seller_id: str | None = None  # default: the simulator's first seller
    fulfilled_by: Literal["MERCHANT", "AMAZON"] = "MERCHANT"
    fulfillment_status: FulfillmentStatus = "UNSHIPPED"
    currency_code: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = "EUR"
    ship_by_window: Window | None = None  # default: today .. in two days
    lag: Annotated[float, msgspec.Meta(ge=0)] | None = None


class OrderChange(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """A change of an order (each given field replaces the order's); ``lag`` as for a new one.
    ``cancel_reason`` goes with CANCELLED."""

    items: Annotated[list[ItemSpec], msgspec.Meta(min_length=1)] | None = None
    fulfillment_status: FulfillmentStatus | None = None
    ship_by_window: Window | None = None
    cancel_reason: str | None = None
    lag: Annotated[float, msgspec.Meta(ge=0)] | None = None


# --- an order as the simulator keeps it ---


@dataclass
class BookedOrder(Order):
    """An order created through the v2026 hooks: v0 sees its items, status and packages."""

    seller: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    currency: str = "EUR"
    earliest_ship_date: datetime | None = None
    terms: dict[str, ItemSpec] = field(default_factory=dict)  # by order item id
    cancel_reason: str | None = None

    @property
    def fulfillment_status(self) -> str:
        return V2026_STATUS.get(self.status, "UNSHIPPED")


class OrderBook:
    """The v2026 orders, their revisions (``lastUpdatedTime``) and the hooks that change them."""

    def __init__(
        self,
        orders: dict[str, Order],
        *,
        default_seller: Callable[[], str],
        lag: Callable[[], float],
        rng: random.Random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._orders, self._default_seller, self._lag = orders, default_seller, lag
        self._random, self.now = rng, now

    def booked(self, seller: str) -> Iterable[BookedOrder]:
        return (
            o for o in self._orders.values() if isinstance(o, BookedOrder) and o.seller == seller
        )

    def find(self, order_id: str, seller: str) -> BookedOrder:
        order = self._orders.get(order_id)
        if not isinstance(order, BookedOrder) or order.seller != seller:
            raise Reply.named("not_found")
        return order

    def create(self, spec: OrderSpec) -> BookedOrder:
        order_id = spec.order_id or self._order_id()
        if order_id in self._orders:
            raise KeyError(f"order {order_id} exists")
        window = spec.ship_by_window or Window()
        now = self.now()
        order = BookedOrder(
            order_id=order_id,
            marketplace_id=spec.marketplace_id,
            latest_ship_date=window.latest_date_time or now + timedelta(days=2),
            status=V0_STATUS[spec.fulfillment_status],
            items={},
            fulfilled_by=spec.fulfilled_by,
            seller=spec.seller_id or self._default_seller(),
            currency=spec.currency_code,
            earliest_ship_date=window.earliest_date_time or now,
        )
        self._set_items(order, spec.items)
        self.stamp(order, spec.lag)
        order.created = order.purchased = order.updated or now
        self._orders[order_id] = order
        return order

    def change(self, order_id: str, change: OrderChange) -> BookedOrder:
        order = self._mine(order_id)
        if change.items is not None:
            self._set_items(order, change.items)
        if change.fulfillment_status is not None:
            order.status = V0_STATUS[change.fulfillment_status]
        if change.cancel_reason is not None:
            order.cancel_reason = change.cancel_reason
        if change.ship_by_window is not None:
            window = change.ship_by_window
            order.earliest_ship_date = window.earliest_date_time or order.earliest_ship_date
            order.latest_ship_date = window.latest_date_time or order.latest_ship_date
        self.stamp(order, change.lag)
        return order

    def cancel(self, order_id: str, reason: str, lag: float | None = None) -> BookedOrder:
        change = OrderChange(fulfillment_status="CANCELLED", cancel_reason=reason, lag=lag)
        return self.change(order_id, change)

    def ship(self, order_id: str, lag: float | None = None) -> BookedOrder:
        """Every item leaves in one package (as a confirmShipment, or Amazon's own for FBA)."""
        order = self._mine(order_id)
        reference = str(len(order.packages) + 1)
        lines = [
            {"orderItemId": item, "quantity": quantity - order.shipped(item)}
            for item, (_, quantity) in order.items.items()
            if quantity > order.shipped(item)
        ]
        order.packages[reference] = {"packageReferenceId": reference, "orderItems": lines}
        order.status = "Shipped"
        self.stamp(order, lag)
        return order

    def stamp(self, order: Order, lag: float | None = None) -> None:
        """A new revision: ``lastUpdatedTime`` = now minus the visibility lag (ms precision),
        later than the order's previous one."""
        lag = self._random.uniform(0.0, self._lag()) if lag is None else lag
        moment = _to_ms(self.now() - timedelta(seconds=lag))
        if order.updated is not None and moment <= order.updated:
            moment = order.updated + timedelta(milliseconds=1)
        order.updated = moment

    def _mine(self, order_id: str) -> BookedOrder:
        order = self._orders.get(order_id)
        if not isinstance(order, BookedOrder):
            raise KeyError(f"no order {order_id} created through the v2026 hooks")
        return order

    def _set_items(self, order: BookedOrder, items: list[ItemSpec]) -> None:
        terms = {item.order_item_id or self._item_id(): item for item in items}
        if len(terms) != len(items):
            raise ValueError("order item ids must be unique")
        order.terms = terms
        order.items = {item_id: (t.seller_sku, t.quantity) for item_id, t in terms.items()}

    def _order_id(self) -> str:
        digits = self._random.randrange
        return f"{digits(100, 1000)}-{digits(10**6, 10**7)}-{digits(10**6, 10**7)}"

    def _item_id(self) -> str:
        return str(self._random.randrange(10**13, 10**14))


# --- searchOrders: the query, its rules, the pages ---


class Search(msgspec.Struct, frozen=True, kw_only=True):
    by: Literal["created", "lastUpdated"]
    after: datetime
    before: datetime | None  # as given
    statuses: frozenset[str]
    marketplaces: frozenset[str]
    fulfilled_by: frozenset[str]
    included: frozenset[str]
    page_size: int
    token: str | None

    def filters(self) -> tuple[object, ...]:
        """What a paginationToken is bound to: everything but the page size and includedData."""
        return (
            self.by,
            self.after,
            self.before,
            self.statuses,
            self.marketplaces,
            self.fulfilled_by,
        )


def parse_search(query: Mapping[str, str], now: datetime, min_age: float) -> Search:
    """The searchOrders query, or its 400 with every problem found."""
    problems: list[str] = []
    stamps = {
        name: _stamp(query, name, problems)
        for name in ("createdAfter", "createdBefore", "lastUpdatedAfter", "lastUpdatedBefore")
    }
    given = {name for name in stamps if name in query}
    if ("createdAfter" in given) == ("lastUpdatedAfter" in given):
        problems.append("Exactly one of createdAfter and lastUpdatedAfter must be provided.")
    by: Literal["created", "lastUpdated"] = "created" if "createdAfter" in given else "lastUpdated"
    other = "lastUpdated" if by == "created" else "created"
    problems += [
        f"{name} cannot be set when {by}After is set."
        for name in (f"{other}After", f"{other}Before")
        if name in given and f"{by}After" in given
    ]
    after, before = stamps[f"{by}After"], stamps[f"{by}Before"]
    if after is not None and before is not None and before < after:
        problems.append(f"{by}Before must be equal to or after {by}After.")
    if before is not None and before > now - timedelta(seconds=min_age):
        problems.append(f"{by}Before must be at least two minutes before the time of the request.")
    statuses = _values(query, "fulfillmentStatuses", FULFILLMENT_STATUSES, problems)
    fulfilled_by = _values(query, "fulfilledBy", FULFILLED_BY, problems)
    included = _values(query, "includedData", INCLUDED_DATA, problems)
    marketplaces = _values(query, "marketplaceIds", None, problems)
    if len(marketplaces) > MAX_MARKETPLACES:
        problems.append(f"marketplaceIds: at most {MAX_MARKETPLACES} values.")
    size = query.get("maxResultsPerPage", str(MAX_PAGE))
    if not (size.isdigit() and 1 <= int(size) <= MAX_PAGE):
        problems.append(f"maxResultsPerPage must be between 1 and {MAX_PAGE}.")
    if problems:
        invalid(*problems)
    assert after is not None  # (a missing one is a problem above)
    return Search(
        by=by,
        after=after,
        before=before,
        statuses=statuses,
        marketplaces=marketplaces,
        fulfilled_by=fulfilled_by,
        included=included,
        page_size=int(size),
        token=query.get("paginationToken"),
    )


@dataclass(frozen=True)
class _Page:
    filters: tuple[object, ...]
    before: datetime  # the search's effective bound, fixed at its first page
    position: tuple[datetime, str]  # the last (sort time, order id) returned
    expires: float  # monotonic


class PageTokens:
    """Issued ``nextToken`` s: what they continue, until they expire."""

    def __init__(self, clock: Callable[[], float], ttl: Callable[[], float]) -> None:
        self._pages: dict[str, _Page] = {}
        self._clock, self._ttl = clock, ttl

    def issue(self, search: Search, before: datetime, position: tuple[datetime, str]) -> str:
        token = secrets.token_urlsafe(24)
        expires = self._clock() + self._ttl()
        self._pages[token] = _Page(search.filters(), before, position, expires)
        return token

    def resume(self, search: Search) -> tuple[datetime, tuple[datetime, str] | None]:
        """(the search's bound, the position to continue after), or its 400."""
        if search.token is None:
            raise LookupError("no token")
        page = self._pages.get(search.token)
        if page is None:
            invalid(UNDECODABLE)
        if self._clock() >= page.expires:
            invalid(EXPIRED)
        if page.filters != search.filters():
            invalid(MISMATCH)
        return page.before, page.position

    def expire(self) -> None:
        """Every token issued so far has expired."""
        self._pages = {
            t: _Page(p.filters, p.before, p.position, 0.0) for t, p in self._pages.items()
        }


def search_page(
    orders: Iterable[BookedOrder], search: Search, tokens: PageTokens, now: datetime, min_age: float
) -> dict[str, Any]:
    """One page of searchOrders' response."""
    if search.token is not None:
        before, position = tokens.resume(search)
    else:
        before, position = search.before or now - timedelta(seconds=min_age), None

    def when(order: BookedOrder) -> datetime:
        return order.created if search.by == "created" else (order.updated or order.created)

    matching = sorted(
        (
            (when(order), order.order_id, order)
            for order in orders
            if search.after <= when(order) <= before
            and (not search.statuses or order.fulfillment_status in search.statuses)
            and (not search.marketplaces or order.marketplace_id in search.marketplaces)
            and (not search.fulfilled_by or order.fulfilled_by in search.fulfilled_by)
        ),
        key=lambda entry: (entry[0], entry[1]),
    )
    if position is not None:
        matching = [entry for entry in matching if (entry[0], entry[1]) > position]
    page = matching[: search.page_size]
    body: dict[str, Any] = {"orders": [render(order, search.included) for *_, order in page]}
    if len(matching) > len(page):
        last = page[-1]
        body["pagination"] = {"nextToken": tokens.issue(search, before, (last[0], last[1]))}
    body[f"{search.by}Before"] = iso(before)
    return body


# --- the Order JSON ---


def render(order: BookedOrder, included: frozenset[str]) -> dict[str, Any]:
    """``order`` as the v2026 ``Order`` definition, with the sections ``included`` asks for."""
    priced = order.fulfillment_status not in ("PENDING", "PENDING_AVAILABILITY")
    body: dict[str, Any] = {
        "orderId": order.order_id,
        "createdTime": iso(order.created),
        "lastUpdatedTime": iso(order.updated or order.created),
        "salesChannel": {"channelName": "AMAZON", "marketplaceId": order.marketplace_id},
        "orderItems": [
            _item(order, item_id, terms, included, priced) for item_id, terms in order.terms.items()
        ],
    }
    if "FULFILLMENT" in included:
        body["fulfillment"] = {
            "fulfillmentStatus": order.fulfillment_status,
            "fulfilledBy": order.fulfilled_by,
            "fulfillmentServiceLevel": "STANDARD",
            "shipByWindow": {
                "earliestDateTime": iso(order.earliest_ship_date or order.created),
                "latestDateTime": iso(order.latest_ship_date),
            },
        }
    if "PROCEEDS" in included and priced:
        totals: dict[str, Decimal] = {}
        for item in body["orderItems"]:
            for part in item["proceeds"]["breakdowns"]:
                totals[part["type"]] = totals.get(part["type"], Decimal(0)) + Decimal(
                    part["subtotal"]["amount"]
                )
        body["proceeds"] = {
            "grandTotal": _money(sum(totals.values(), Decimal(0)), order.currency),
            "breakdowns": [
                {"type": kind, "subtotal": _money(total, order.currency)}
                for kind, total in totals.items()
            ],
        }
    if "PACKAGES" in included and order.fulfilled_by == "MERCHANT" and order.packages:
        body["packages"] = [
            {
                "packageReferenceId": reference,
                "packageStatus": {"status": "SHIPPED"},
                "packageItems": package["orderItems"],
                **({"carrier": package["carrierCode"]} if "carrierCode" in package else {}),
                **(
                    {"trackingNumber": package["trackingNumber"]}
                    if "trackingNumber" in package
                    else {}
                ),
            }
            for reference, package in order.packages.items()
        ]
    return body


def _item(
    order: BookedOrder, item_id: str, terms: ItemSpec, included: frozenset[str], priced: bool
) -> dict[str, Any]:
    currency = order.currency
    product: dict[str, Any] = {
        "asin": terms.asin or f"B0{zlib.crc32(terms.seller_sku.encode()) % 10**8:08d}",
        "sellerSku": terms.seller_sku,
        "condition": {"conditionType": "NEW", "conditionSubtype": "NEW"},
    }
    if terms.title:
        product["title"] = terms.title
    if priced and terms.unit_price is not None:
        product["price"] = {"unitPrice": _money(terms.unit_price, currency)}
    item: dict[str, Any] = {
        "orderItemId": item_id,
        "quantityOrdered": terms.quantity,
        "product": product,
    }
    if "PROCEEDS" in included and priced:
        parts = []
        if terms.unit_price is not None:
            parts.append(("ITEM", terms.unit_price * terms.quantity))
        if terms.tax is not None:
            parts.append(("TAX", terms.tax))
        if terms.promotion:
            parts.append(("DISCOUNT", -terms.promotion))
        item["proceeds"] = {
            "proceedsTotal": _money(sum((amount for _, amount in parts), Decimal(0)), currency),
            "breakdowns": [
                {
                    "type": kind,
                    "subtotal": _money(amount, currency),
                    **(
                        {
                            "detailedBreakdowns": [
                                {"subtype": "ITEM", "value": _money(amount, currency)}
                            ]
                        }
                        if kind in ("TAX", "DISCOUNT")
                        else {}
                    ),
                }
                for kind, amount in parts
            ],
        }
    if "PROMOTION" in included and terms.promotion_id:
        item["promotion"] = {"breakdowns": [{"promotionId": terms.promotion_id}]}
    if "CANCELLATION" in included and order.fulfillment_status == "CANCELLED":
        execution = {"cancelledBy": "BUYER", "cancelReason": order.cancel_reason or ""}
        item["cancellation"] = {"cancellationExecution": execution}
    if "FULFILLMENT" in included:
        shipped = order.shipped(item_id)
        item["fulfillment"] = {
            "quantityFulfilled": shipped,
            "quantityUnfulfilled": max(0, terms.quantity - shipped),
        }
    if "TAX" in included and terms.reporting_scheme:
        item["tax"] = {"taxCalculationBreakdowns": [{"reportingScheme": terms.reporting_scheme}]}
    return item


def iso(moment: datetime) -> str:
    """ISO 8601 UTC, milliseconds when there are any."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": str(amount), "currencyCode": currency}


def _to_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _stamp(query: Mapping[str, str], name: str, problems: list[str]) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or "T" not in raw:
        problems.append(f"Invalid request parameter `{name}`. Must be an ISO 8601 date-time.")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _values(
    query: Mapping[str, str], name: str, allowed: tuple[str, ...] | None, problems: list[str]
) -> frozenset[str]:
    values = frozenset(v for v in query.get(name, "").split(",") if v)
    wrong = sorted(values - set(allowed)) if allowed is not None else []
    if wrong:
        problems.append(
            f"Invalid request parameter `{name}`: {', '.join(wrong)} "
            f"(allowed: {', '.join(allowed or ())})."
        )
    return values
