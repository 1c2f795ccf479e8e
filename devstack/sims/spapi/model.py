"""The Orders v0 model as the SP-API simulator enforces it (see :mod:`devstack.sims.spapi.server`;
Orders v2026-01-01 is :mod:`devstack.sims.spapi.orders`).

Amazon's (and Login with Amazon's) error answers and :class:`Reply` to raise them, the carrier
list, an order's shipped state (:class:`Order`), and the checks a ``confirmShipment`` request
must pass: its schema (:func:`schema_problems`) and the order's state (:func:`check_confirmation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import msgspec
from aiohttp import web

#: A subset of the CarrierCode list (amzn-base.xsd); "Others" requires a carrierName.
CARRIER_CODES = frozenset(
    {"USPS", "UPS", "FedEx", "DHL", "DHL eCommerce", "DPD", "GLS", "Hermes", "Yodel", "TNT"}
    | {"Royal Mail", "Parcelforce", "Amazon Shipping", "Deutsche Post", "La Poste", "Others"}
)

DENIED = "Access to requested resource is denied."
#: Amazon's answers, by name: (HTTP status, code, message, details).
REPLIES: dict[str, tuple[int, str, str, str]] = {
    "not_found": (404, "NotFound", "The resource specified does not exist.", ""),
    "outage": (503, "ServiceUnavailable", "Service temporarily unavailable.", ""),
    "internal": (500, "InternalFailure", "We encountered an internal error. Please try again.", ""),
    "throttled": (429, "QuotaExceeded", "You exceeded your quota for the requested resource.", ""),
    "no_token": (403, "Unauthorized", DENIED, "Access token is missing in the request header."),
    "bad_token": (
        *(403, "Unauthorized", DENIED),
        "The access token you provided is revoked, malformed or invalid.",
    ),
    "expired": (403, "Unauthorized", DENIED, "The access token you provided has expired."),
}
#: Login with Amazon's answers: (HTTP status, error, error_description).
LWA_ERRORS: dict[str, tuple[int, str, str]] = {
    "grant_type": (400, "unsupported_grant_type", "The authorization grant type is not supported"),
    "client": (401, "invalid_client", "Client authentication failed"),
    "missing": (
        400,
        "invalid_request",
        "The request is missing a required parameter : refresh_token",
    ),
    "refresh_token": (
        400,
        "invalid_grant",
        "The request has an invalid grant parameter : refresh_token",
    ),
}
BAD_ITEM = (
    "OrderItemId is invalid, please obtain the value through the getOrderItems API or Manage "
    "Orders page"
)
FULFILLED = (
    "Failed to create package due to not finding a matching package or order already fulfilled."
)
OVERFULFILLED = "Failed to create/update package due to overfulfillment"
BAD_REFERENCE = "PackageReferenceId: is invalid, must be a positive numeric value."
BAD_CARRIER = "ErrorCode: InvalidCarrier Description: Selected carrier is not supported"
REQUIRED = ("packageReferenceId", "carrierCode", "trackingNumber", "shipDate", "orderItems")


class Reply(Exception):
    """An SP-API error response, raised from anywhere in request handling."""

    def __init__(self, status: int, errors: list[tuple[str, str, str]]) -> None:
        super().__init__(status)
        self.response = web.json_response(
            {"errors": [{"code": c, "message": m, "details": d} for c, m, d in errors]},
            status=status,
        )

    @classmethod
    def named(cls, name: str) -> Reply:
        status, code, message, details = REPLIES[name]
        return cls(status, [(code, message, details)])


def invalid(*messages: str) -> NoReturn:
    raise Reply(400, [("InvalidInput", message, "") for message in messages])


@dataclass
class Order:
    order_id: str
    marketplace_id: str
    latest_ship_date: datetime
    status: str
    items: dict[str, tuple[str, int]]  # order item id -> (sku, quantity ordered)
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    purchased: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=1))
    updated: datetime | None = None  # its last update (None: not tracked, "now")
    fulfilled_by: str = "MERCHANT"  # or AMAZON (v0 FulfillmentChannel MFN / AFN)

    def shipped(self, item_id: str, *, besides: str | None = None) -> int:
        return sum(
            line["quantity"]
            for reference, package in self.packages.items()
            if reference != besides
            for line in package["orderItems"]
            if line["orderItemId"] == item_id
        )

    def restate(self) -> None:
        if all(self.shipped(item) >= quantity for item, (_, quantity) in self.items.items()):
            self.status = "Shipped"
        elif any(self.shipped(item) for item in self.items):
            self.status = "PartiallyShipped"


def schema_problems(body: Any, marketplace_id: str) -> list[str]:
    """What a ConfirmShipmentRequest breaks of the model, one message each."""
    if not isinstance(body, dict):
        return ["Invalid Input"]
    problems: list[str] = []
    marketplace = body.get("marketplaceId")
    if not marketplace:
        problems.append("Missing request parameter: marketplaceId.")
    elif marketplace != marketplace_id:
        problems.append(
            f"Invalid request parameter `marketplaceId`. The order is not in {marketplace}."
        )
    if body.get("codCollectionMethod", "DirectPayment") != "DirectPayment":
        problems.append(
            "Invalid request parameter `codCollectionMethod`. Must be one of [DirectPayment]."
        )
    package = body.get("packageDetail")
    if not isinstance(package, dict):
        return [*problems, "Missing request parameter: packageDetail."]
    problems += [
        f"Missing request parameter: packageDetail.{name}."
        for name in REQUIRED
        if package.get(name) in (None, "", [])
    ]
    reference = str(package.get("packageReferenceId") or "1")
    if not (reference.isdigit() and int(reference) > 0):
        problems.append(BAD_REFERENCE)
    carrier = package.get("carrierCode")
    if carrier == "Others" and not package.get("carrierName"):
        problems.append(
            "Missing request parameter: packageDetail.carrierName (carrierCode is Others)."
        )
    elif carrier and carrier not in CARRIER_CODES:
        problems.append(BAD_CARRIER)
    ship_date = package.get("shipDate")
    if ship_date and not _is_datetime(ship_date):
        problems.append("Invalid request parameter `shipDate`. Must be an ISO 8601 date-time.")
    lines = package.get("orderItems") or []
    seen: set[str] = set()
    for index, line in enumerate(lines if isinstance(lines, list) else [None]):
        where = f"packageDetail.orderItems[{index}]"
        if not isinstance(line, dict) or not isinstance(line.get("orderItemId"), str):
            problems.append(f"Missing request parameter: {where}.orderItemId.")
            continue
        quantity = line.get("quantity")
        if type(quantity) is not int or quantity < 1:
            problems.append(
                f"Invalid request parameter `{where}.quantity`. Must be an integer > 0."
            )
        if line["orderItemId"] in seen:
            problems.append(f"Invalid request parameter `{where}.orderItemId`. Listed twice.")
        seen.add(line["orderItemId"])
    return problems


def _is_datetime(value: Any) -> bool:
    try:
        return isinstance(value, str) and "T" in value and bool(datetime.fromisoformat(value))
    except ValueError:
        return False


def check_confirmation(order: Order, raw: bytes) -> tuple[str, str, dict[str, Any], bool]:
    """Validate a confirmShipment body against the model and ``order``, raising its 400
    :class:`Reply`; else (marketplaceId, packageReferenceId, packageDetail, is it an edit)."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        invalid("Invalid Input")
    problems = schema_problems(body, order.marketplace_id)
    if problems:
        invalid(*problems)
    package: dict[str, Any] = body["packageDetail"]
    reference = str(package["packageReferenceId"])
    edit = reference in order.packages
    if order.status not in ("Unshipped", "PartiallyShipped", "Shipped"):
        invalid(f"Failed validation because order {order.order_id} is {order.status}.")
    if any(line["orderItemId"] not in order.items for line in package["orderItems"]):
        invalid(BAD_ITEM)
    if order.status == "Shipped" and not edit:
        invalid(FULFILLED)
    for line in package["orderItems"]:
        ordered = order.items[line["orderItemId"]][1]
        if order.shipped(line["orderItemId"], besides=reference) + line["quantity"] > ordered:
            invalid(OVERFULFILLED)
    return body["marketplaceId"], reference, package, edit
