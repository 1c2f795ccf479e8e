"""What the Seko simulator assumes, in one place: statuses, texts, push entity names, knobs.

Every fact carries its evidence tag from ``../shared/research/ecc-seko-recon.md`` section B:
**[DOC]** Seko's public iHub manuals (bigdigit IH2, seko SHUB/SMAN Confluence), **[OBS]** public
clients (``kingandpartners/seko-ruby-api``: v1, 2014-15, with recorded fixtures;
``heist-studios/seko``: v4, 2018, with request/answer stubs), **[UNCONF]** our guess — each such
guess is either a constant below (so the connector's twin in
``handlers/connectors/seko/protocol.py`` can be checked against it) or a field of
:class:`Knobs`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

# --- sales orders ---

#: The sales-order statuses in order [DOC: bigdigit MA 355106956 — a product-master page's
#: update matrix, so the chain is indirect; "To Be Picked" is [OBS] in the v1 status fixture].
STATUSES = (
    "In Production",
    "Confirmed",
    "To Be Picked",
    "Being Picked",
    "To Be Packed",
    "To Dispatch",
    "Dispatched",
)
DISPATCHED = STATUSES[-1]
CANCELLED = "Cancelled"  # [UNCONF] the status a cancelled order reports
#: Cancellation reason codes [OBS: seko-ruby-api order.rb, heist-studios README].
REASON_CODES = {
    "001": "Customer Request",
    "002": "Order Delayed",
    "003": "Duplicate",
    "004": "Item not available",
    "005": "Cannot ship to address",
    "006": "Other",
}
AVAILABLE = "Available Stock"  # the pickable location type [DOC]
#: Stock adjustment reasons (``ReasonCode`` -> ``ReasonDescription``) [UNCONF: Seko's code
#: list is not public].
ADJUSTMENT_REASONS = {
    "CNT": "Stock count",
    "DMG": "Damaged",
    "FND": "Found",
    "LST": "Lost",
    "QC": "Quality control",
}

# --- answers: codes and texts ---

NO_RESULTS = "No results found for search criteria"  # [DOC] Code 100
#: A refused upload [DOC: "Error Submitting SalesOrder: TESTSO - Error. Product 5963405 has no
#: free stock."]; only the first error is shown [DOC].
SUBMIT_ERROR = "Error Submitting SalesOrder: {number} - Error. {detail}"
NO_FREE_STOCK = "Product {code} has no free stock."  # [DOC]
DUPLICATE_ORDER = "Sales order {number} already exists."  # [UNCONF] (uniqueness is [DOC])
UNKNOWN_PRODUCT = "Product {code} does not exist."  # [UNCONF] (the rule: heist README [OBS])
DUPLICATE_LINE = "Product {code} is on more than one line."  # [UNCONF] (the rule is [DOC])
UNKNOWN_DC = "DC {dc} does not exist."  # [UNCONF]
BAD_QUANTITY = "Quantity of line {line} must be a whole number above 0."  # [UNCONF]
NO_LINES = "A sales order needs at least one SalesOrderLineItem."  # [UNCONF]
BAD_PRODUCT_CODE = "ProductCode {code} contains a character iHub does not accept."  # [UNCONF]
#: .NET DataAnnotations texts [OBS: heist-studios stub "The field Currency must be a string
#: with a maximum length of 3." with Success false, Code 100].
TOO_LONG = "The field {field} must be a string with a maximum length of {limit}."
REQUIRED = "The {field} field is required."  # [UNCONF] the same family's text
#: [DOC] "Specifying a \" in the text of a JSON file will cause an error" (text [UNCONF]).
QUOTE_IN_TEXT = "The field {field} contains a '\"' character."
PRODUCT_EXISTS = "Product {code} already exists."  # [UNCONF]
IMMUTABLE = "The field {field} cannot be updated."  # [UNCONF] (which fields: [DOC])
CANCEL_ERROR = "Error Cancelling SalesOrder: {number} - Error. {detail}"  # [UNCONF]
NOT_CANCELLABLE = "Sales order is {status} and can no longer be cancelled."  # [UNCONF]
ALREADY_CANCELLED = "Sales order is already cancelled."  # [UNCONF]
UNAUTHORISED = "Authorization has been denied for this request."  # [UNCONF] ASP.NET's 401
SERVER_ERROR = "An error has occurred."  # [UNCONF] ASP.NET's 500
INVALID_REQUEST = "The request is invalid."  # [UNCONF] an unreadable body, HTTP 400
#: IIS request filtering refuses a query string over maxQueryString (2048) with 404.15
#: [UNCONF: that iHub runs on IIS; the 2048 cap is [DOC]].
QUERY_TOO_LONG_PAGE = (
    "<html><head><title>404.15 - Query String Too Long</title></head><body><h2>HTTP Error "
    "404.15 - Not Found</h2><p>The request filtering module is configured to deny a request "
    "where the query string is too long.</p></body></html>"
)
OUTAGE_PAGE = (
    "<html><head><title>503 Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1></body></html>"
)

#: Product master fields an update may not change [DOC].
IMMUTABLE_FIELDS = (
    "ProductCode",
    "LotControlled",
    "SerialNumberControlled",
    "DateControlled",
    "SupplierCode",
)
#: Field length limits of the v4 loads [OBS: heist-studios resources; SalesOrderNumber 50 and
#: ProductCode 100 are also [DOC]].
ORDER_LIMITS = {
    "SalesOrderNumber": 50,
    "SalesOrderReference": 50,
    "SalesInvoiceNumber": 100,
    "CourierName": 100,
    "CourierService": 100,
    "GUID": 100,
}

# --- push services ---

Service = Literal[
    "DispatchConfirmation", "GoodsReceivedNotice", "StockAdjustment", "StockOvernightSummary"
]
SERVICES: tuple[Service, ...] = (
    "DispatchConfirmation",
    "GoodsReceivedNotice",
    "StockAdjustment",
    "StockOvernightSummary",
)
#: Service -> (the entity's key in ``Response``, its lines' key in ``Response.List``).
#: [DOC] ``StockAdjustment``/``StockAdjustmentLineItem`` (sample); [UNCONF] the others'.
PUSH_ENTITIES: dict[Service, tuple[str, str]] = {
    "DispatchConfirmation": ("DispatchConfirmation", "DispatchLineItem"),
    "GoodsReceivedNotice": ("GRN", "GRNLineItem"),
    "StockAdjustment": ("StockAdjustment", "StockAdjustmentLineItem"),
    "StockOvernightSummary": ("StockSummary", "StockSummaryLineItem"),
}
#: The first SequenceNumber of every service [UNCONF]; each message adds 1 [DOC].
FIRST_SEQUENCE = 1
#: A single-part message is MessagePart 1 of MessageTotal 1 [UNCONF: the Tracking sample
#: shows 0/0, a template]; parts count from 1.
FIRST_PART = 1


class ProductCodeRules(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which product codes iHub accepts. ``max_length`` 100 [OBS v4 client; DOC shows 200 in
    one page history]; the rest [UNCONF]: ``forbidden`` characters (``"`` breaks iHub's JSON
    [DOC], ``|`` its CSV flows [OBS filter.rb], ``,`` separates ``productCodes`` in stock
    queries), control characters, surrounding whitespace, and ``ascii_only`` (nvarchar is
    accepted [DOC], carriers want ASCII)."""

    max_length: Annotated[int, msgspec.Meta(ge=1)] = 100
    forbidden: str = '"|,'
    ascii_only: bool = False

    def refuses(self, code: str) -> bool:
        return (
            any(c in self.forbidden or not c.isprintable() for c in code)
            or code != code.strip()
            or (self.ascii_only and not code.isascii())
        )


def default_delays() -> dict[str, float]:
    """Seconds an order spends in each status before the next [UNCONF: a DC's pace]."""
    return {
        "In Production": 60.0,
        "Confirmed": 60.0,
        "To Be Picked": 600.0,
        "Being Picked": 300.0,
        "To Be Packed": 300.0,
        "To Dispatch": 900.0,
    }


class Knobs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every behaviour the simulator guesses, and its faults (``set_knobs``/``/_sim/knobs``)."""

    # the wire
    single_as_object: bool = True  # a one-element list under ``List`` is an object [OBS]
    empty_as_object: bool = True  # empty values are ``{}`` [OBS v1 fixtures]
    refusal_status: int = 200  # HTTP status of a refused load (Success false) [UNCONF]
    refusal_code: int = 100  # CallStatus.Code of a refused load [OBS: heist stub]
    auth_status: int = 401  # a wrong or missing api_key/token [UNCONF]
    query_cap: Annotated[int, msgspec.Meta(ge=16)] = 2048  # query string characters [DOC]
    # iHub's rules
    product_rules: ProductCodeRules = msgspec.field(default_factory=ProductCodeRules)
    #: Which refusal a repeated order meets first when it also lacks stock [UNCONF].
    duplicate_before_stock: bool = True
    #: Backend "PushToDC" [DOC]: free stock is checked at upload; false: orders are accepted
    #: and wait at iHub (as ``DoNotPushToDC`` orders always do [UNCONF]).
    push_to_dc: bool = True
    default_dc: str | None = None  # the DC of an order naming none; None: refused [UNCONF]
    #: Statuses in which a cancellation is accepted [OBS: "only works if the order isn't
    #: already shipped"; the boundary at picking is UNCONF].
    cancellable: tuple[str, ...] = ("In Production", "Confirmed", "To Be Picked")
    status_delays: dict[str, float] = msgspec.field(default_factory=default_delays)
    #: stock/v3/quantity lags orders by this much ([DOC] ~5 minutes; 0 in tests).
    stock_lag_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    # shipping
    short_ship_rate: float = 0.0  # share of orders with one line shipped one unit short
    split_rate: float = 0.0  # share of multi-unit orders shipped in two dispatches
    carriers: tuple[str, ...] = ("DPD", "Royal Mail", "UPS")
    # push
    webhook_url: str = ""  # where pushes go; "" = nowhere (kept until one is set)
    webhook_headers: dict[str, str] = {}  # sent with every push (the configured secret)
    push_path_suffix: bool = False  # append /Push<Service> to webhook_url [UNCONF]
    push_format: Literal["json", "xml"] = "json"
    integration_id: str = "SKUFLOW"  # "determined by SupplyStream" [DOC], e.g. CCIND
    push_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 900.0  # ~15 min [DOC]
    push_batch_size: Annotated[int, msgspec.Meta(ge=1)] = 500  # records a push [DOC]
    summary_part_size: Annotated[int, msgspec.Meta(ge=1)] = 100  # lines a part [DOC]
    retries: Annotated[int, msgspec.Meta(ge=0)] = 3  # after the first attempt [DOC]
    retry_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 900.0  # [DOC]
    push_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # [UNCONF]
    overnight_summary: bool = True  # at 00:00 DC-local time [DOC]
    #: GRNs not raised through iHub (no ASN loaded over the API) are pushed too; by default
    #: only records created via iHub are [DOC].
    push_manual_records: bool = False
    dc_utc_offsets: dict[str, float] = {}  # hours; a DC not listed is at UTC
    # faults of the REST API
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    error_rate: float = 0.0  # share of calls answered 500
    outage_until: Annotated[datetime, msgspec.Meta(tz=True)] | None = None  # 503 until then
    # faults of the pushes
    push_latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # before each POST
    push_duplicate_next: Annotated[int, msgspec.Meta(ge=0)] = 0  # next N batches sent twice
    push_duplicate_rate: float = 0.0
    push_drop_next: Annotated[int, msgspec.Meta(ge=0)] = 0  # next N messages never sent
    push_drop_rate: float = 0.0
    push_reorder: bool = False  # shuffle the messages of a run


def with_changes(knobs: Knobs, changes: dict[str, Any]) -> Knobs:
    """``knobs`` with some fields changed, the others kept (validated as over HTTP)."""
    merged = {**msgspec.to_builtins(knobs), **changes}
    return msgspec.convert(merged, Knobs, strict=False)
