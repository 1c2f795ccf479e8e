"""iHub's wire as skuflow reads and writes it, and every assumption about it, in one place.

Evidence tags as in ``../shared/research/ecc-seko-recon.md`` section B: **[DOC]** Seko's public
iHub manuals, **[OBS]** public clients (``kingandpartners/seko-ruby-api`` v1 with recorded
fixtures; ``heist-studios/seko`` v4), **[UNCONF]** our guess. The simulator
(``devstack/sims/seko/model.py``) makes the same guesses; a real iHub that answers otherwise
is fixed here.

Reading: iHub is an XML service rendered as JSON [OBS]: a list of one element arrives as an
object, an empty value as ``{}``, a code sent unquoted as a number. :func:`decode` reads any
answer into a typed Struct whatever it got: ``{}`` is "absent" (the field's default), an object
where the Struct wants a list is a list of one, a number where it wants text is that text; v1's
``Response`` wrapper is taken off. Decoders are built once per type.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import msgspec
from msgspec import inspect as mi

T = TypeVar("T")

# --- assumptions: texts, codes, limits ---

#: iHub's "no results" [DOC]: ``Code`` 100 with this message (also used for load errors [OBS]).
NO_RESULTS_CODE = 100
NO_RESULTS = re.compile(r"no results found", re.IGNORECASE)
#: A load refused for stock [DOC: "Error Submitting SalesOrder: TESTSO - Error. Product 5963405
#: has no free stock."].
NO_FREE_STOCK = re.compile(r"Product (?P<product>.+?) has no free stock", re.IGNORECASE)
#: A repeated SalesOrderNumber / ProductCode [UNCONF: the text; uniqueness is DOC].
ALREADY_EXISTS = re.compile(r"already exists", re.IGNORECASE)
#: A repeated cancellation [UNCONF].
ALREADY_CANCELLED = re.compile(r"already cancel+ed", re.IGNORECASE)
#: iHub's query string limit [DOC: 2048 characters]; stock reads are split to stay below it.
QUERY_CAP = 2048
#: Sales-order statuses in order [DOC, indirect: see the simulator's model]; "Cancelled" [UNCONF].
STATUSES = (
    "In Production",
    "Confirmed",
    "To Be Picked",
    "Being Picked",
    "To Be Packed",
    "To Dispatch",
    "Dispatched",
)
CANCELLED = "Cancelled"
#: From this status on an order is picked: a cancellation is refused [UNCONF boundary].
PICKING_STARTED = "Being Picked"
CancelReason = Literal["001", "002", "003", "004", "005", "006"]  # [OBS] 006 = Other
#: Our orders' GUID (sent on load, echoed as InterfaceRecordId [DOC]) is a UUID5 of the order's
#: content in this namespace, so a repeat can be told from another order with that number.
GUID_NAMESPACE = uuid.UUID("0b6f6d1e-5e1c-4c8e-9a51-7c1f5e3a9d20")

# --- what skuflow sends ---


class SalesOrderLine(msgspec.Struct, frozen=True, kw_only=True):
    line_number: int
    product_code: str
    quantity: int
    lot_no: str | None = None  # a lot to ship [OBS v4 SalesOrderLineItem.LotNo]
    unit_price: Decimal | None = None
    currency_code: str | None = None


class Address(msgspec.Struct, frozen=True, kw_only=True, rename="pascal", omit_defaults=True):
    """``DeliveryDetails`` [OBS v4]; ``County``, not ``State`` [OBS Changes.md 0.0.8]."""

    first_name: str | None = None
    last_name: str | None = None
    line1: str | None = None
    line2: str | None = None
    line3: str | None = None
    city: str | None = None
    county: str | None = None
    postcode_zip: str | None = None
    country_code: str | None = None
    phone_number: str | None = None
    email_address: str | None = None


class SalesOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One sales order for one DC; ``number`` is the ERP's (unique at Seko [DOC])."""

    number: str
    dc: str
    lines: tuple[SalesOrderLine, ...]
    reference: str | None = None
    order_date: date | None = None
    courier_name: str | None = None
    courier_service: str | None = None
    on_hold: bool = False
    delivery: Address | None = None
    web: bool = False  # salesorders/v4/websubmit (no ShipToCompany) [DOC]
    guid: str | None = None  # None: :func:`order_guid`


def order_guid(order: SalesOrder) -> str:
    """The order's GUID: a UUID5 of its number, DC and lines (product codes compared as iHub
    does, without case [DOC]), so the same order always sends the same GUID."""
    if order.guid:
        return order.guid
    lines = sorted(
        (line.line_number, line.product_code.upper(), line.quantity, line.lot_no or "")
        for line in order.lines
    )
    return str(uuid.uuid5(GUID_NAMESPACE, repr((order.number, order.dc.upper(), lines))))


def order_body(order: SalesOrder) -> dict[str, Any]:
    """A ``salesorders/v4/submit`` body [OBS heist-studios: unwrapped, v4 names]. Every text
    is a JSON string, so leading zeros survive [DOC]."""
    header: dict[str, Any] = {"SalesOrderNumber": order.number, "GUID": order_guid(order)}
    optional = {
        "SalesOrderReference": order.reference,
        "CourierName": order.courier_name,
        "CourierService": order.courier_service,
    }
    header |= {k: v for k, v in optional.items() if v}
    if order.order_date is not None:
        header["SalesOrderDate"] = order.order_date.isoformat()  # yyyy-MM-dd [DOC]
    if order.on_hold:
        header["OnHold"] = True
    lines = []
    for line in order.lines:
        item: dict[str, Any] = {
            "LineNumber": line.line_number,
            "ProductCode": line.product_code,
            "Quantity": line.quantity,
        }
        if line.lot_no:
            item["LotNo"] = line.lot_no
        if line.unit_price is not None:
            item["UnitPrice"] = str(line.unit_price)
        if line.currency_code:
            item["CurrencyCode"] = line.currency_code
        lines.append(item)
    body: dict[str, Any] = {
        "WebSalesOrder" if order.web else "SalesOrder": header,
        "SalesOrderHeader": {"DCCode": order.dc},
        "List": {"SalesOrderLineItem": lines},
    }
    if order.delivery is not None:
        body["DeliveryDetails"] = msgspec.to_builtins(order.delivery)
    return body


class ProductMaster(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A ``products/v4/submit|update`` ``ProductMaster`` [DOC/OBS v4]. ProductCode and the
    tracking flags cannot be changed once loaded [DOC]; an update's blank fields erase [DOC]."""

    product_code: str = msgspec.field(name="ProductCode")
    description: str | None = msgspec.field(default=None, name="ProductDescription")
    ean: str | None = msgspec.field(default=None, name="EAN")
    lot_controlled: bool = msgspec.field(default=False, name="LotControlled")
    serial_controlled: bool = msgspec.field(default=False, name="SerialNumberControlled")
    date_controlled: bool = msgspec.field(default=False, name="DateControlled")
    gross_weight: Decimal | None = msgspec.field(default=None, name="GrossWeight")
    gross_weight_uom: str | None = msgspec.field(default=None, name="GrossWeightUOM")
    hts_code: str | None = msgspec.field(default=None, name="HTSCode")
    country_of_origin: str | None = msgspec.field(default=None, name="CountryOfOrigin")


# --- what iHub answers ---


class CallStatus(msgspec.Struct, frozen=True, rename="pascal"):
    success: bool = False
    code: int = 0
    message: str = ""


class Answer(msgspec.Struct, frozen=True):
    """Any answer's envelope, with the few top-level fields some carry."""

    call_status: CallStatus | None = msgspec.field(default=None, name="CallStatus")
    guid: str | None = msgspec.field(default=None, name="GUID")
    status: str | None = msgspec.field(default=None, name="Status")  # salesorders/v1 status
    courier: str | None = msgspec.field(default=None, name="Courier")  # .../tracking
    tracking_number: str | None = msgspec.field(default=None, name="TrackingNumber")


class OrderStatus(msgspec.Struct, frozen=True):
    guid: str
    status: str

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED

    @property
    def dispatched(self) -> bool:
        return self.status == STATUSES[-1]

    @property
    def picking_started(self) -> bool:
        """Picking has begun: too late to cancel [UNCONF boundary]."""
        order = STATUSES.index(PICKING_STARTED)
        return self.status in STATUSES[order:]


class Tracking(msgspec.Struct, frozen=True):
    guid: str
    courier: str | None
    tracking_number: str | None


class StockQuantity(msgspec.Struct, frozen=True):
    """A ``stock/v3/quantity`` row [DOC]: free units of a product in a DC's location type."""

    product_code: str = msgspec.field(name="ProductCode")
    dc: str = msgspec.field(default="", name="DCCode")
    location_type: str = msgspec.field(default="", name="LocationType")
    quantity: int = msgspec.field(default=0, name="Quantity")


class _StockList(msgspec.Struct, frozen=True):
    rows: list[StockQuantity] = msgspec.field(default_factory=list, name="StockQuantityLineItem")


class StockAnswer(msgspec.Struct, frozen=True):
    list_: _StockList = msgspec.field(default_factory=_StockList, name="List")


class DispatchLine(msgspec.Struct, frozen=True):
    """A dispatch line: one per lot and per serial [DOC lots; UNCONF serials]; ``quantity`` 0
    for a line not shipped [DOC]. ``Quantity``/``SerialNo`` names [UNCONF]."""

    line_number: int = msgspec.field(default=0, name="LineNumber")
    product_code: str = msgspec.field(default="", name="ProductCode")
    ean: str | None = msgspec.field(default=None, name="EAN")
    quantity: int = msgspec.field(default=0, name="Quantity")
    lot_no: str | None = msgspec.field(default=None, name="LotNo")
    serial_no: str | None = msgspec.field(default=None, name="SerialNo")


class _DispatchLines(msgspec.Struct, frozen=True):
    items: list[DispatchLine] = msgspec.field(default_factory=list, name="DispatchLineItem")


class Dispatch(msgspec.Struct, frozen=True):
    """One dispatch (a parcel) of a sales order: a Dispatch Confirmation push [DOC fields;
    ``CourierName``/``TrackingNumber`` UNCONF], and a ``dispatches/v1/status`` row (``DCCode``,
    ``GUID`` [OBS]; the rest beside them [UNCONF])."""

    sales_order_number: str = msgspec.field(default="", name="SalesOrderNumber")
    guid: str | None = msgspec.field(default=None, name="GUID")
    interface_record_id: str | None = msgspec.field(default=None, name="InterfaceRecordId")
    sales_order_reference: str | None = msgspec.field(default=None, name="SalesOrderReference")
    dispatch_id: str | None = msgspec.field(default=None, name="DispatchId")
    dispatch_number: int | None = msgspec.field(default=None, name="DispatchNumber")
    dc: str | None = msgspec.field(default=None, name="DCCode")
    dispatch_date: datetime | None = msgspec.field(default=None, name="DispatchDate")
    courier_name: str | None = msgspec.field(default=None, name="CourierName")
    courier_service: str | None = msgspec.field(default=None, name="CourierService")
    tracking_number: str | None = msgspec.field(default=None, name="TrackingNumber")
    tracking_url: str | None = msgspec.field(default=None, name="TrackingUrl")
    weight: Decimal | None = msgspec.field(default=None, name="Weight")
    weight_uom: str | None = msgspec.field(default=None, name="WeightUOM")
    list_: _DispatchLines = msgspec.field(default_factory=_DispatchLines, name="List")

    @property
    def lines(self) -> list[DispatchLine]:
        return self.list_.items


class _Dispatches(msgspec.Struct, frozen=True):
    items: list[Dispatch] = msgspec.field(default_factory=list, name="DispatchLineItem")


class DispatchesAnswer(msgspec.Struct, frozen=True):
    list_: _Dispatches = msgspec.field(default_factory=_Dispatches, name="List")


class GrnLine(msgspec.Struct, frozen=True):
    """A ``grns/v1`` row, one per received line (and lot) [OBS fixture]; ``ASNNumber`` and
    ``LotNo`` [UNCONF]. Quantities are confirmed GRN quantities, not yet put away [DOC]."""

    guid: str = msgspec.field(default="", name="GUID")
    product_code: str = msgspec.field(default="", name="ProductCode")
    quantity: int = msgspec.field(default=0, name="GRNQuantity")
    line_number: int = msgspec.field(default=0, name="LineItemNumber")
    line_guid: str | None = msgspec.field(default=None, name="LineItemGUID")
    dc: str | None = msgspec.field(default=None, name="DCCode")
    grn_type: str | None = msgspec.field(default=None, name="GRNType")
    hb_reference: str | None = msgspec.field(default=None, name="HBRef")
    asn_number: str | None = msgspec.field(default=None, name="ASNNumber")
    lot_no: str | None = msgspec.field(default=None, name="LotNo")
    status: str | None = msgspec.field(default=None, name="CurrentStatus")
    arrived_at: datetime | None = msgspec.field(default=None, name="ArrivalTimestamp")
    confirmed_at: datetime | None = msgspec.field(default=None, name="ConfirmedTimestamp")


class _GrnLines(msgspec.Struct, frozen=True):
    items: list[GrnLine] = msgspec.field(default_factory=list, name="GRNResponseItem")


class GrnAnswer(msgspec.Struct, frozen=True):
    list_: _GrnLines = msgspec.field(default_factory=_GrnLines, name="List")


class AdjustmentLine(msgspec.Struct, frozen=True):
    """A ``StockAdjustmentLineItem`` [DOC]; ``quantity`` is positive, the type says which way."""

    line_number: int = msgspec.field(default=0, name="LineNumber")
    product_code: str = msgspec.field(default="", name="ProductCode")
    quantity: int = msgspec.field(default=0, name="Quantity")
    reason_code: str | None = msgspec.field(default=None, name="ReasonCode")
    reason_description: str | None = msgspec.field(default=None, name="ReasonDescription")
    lot_number: str | None = msgspec.field(default=None, name="LotNumber")
    ean: str | None = msgspec.field(default=None, name="EAN")
    line_internal_id: str | None = msgspec.field(default=None, name="LineInternalId")


class _AdjustmentLines(msgspec.Struct, frozen=True):
    items: list[AdjustmentLine] = msgspec.field(
        default_factory=list, name="StockAdjustmentLineItem"
    )


class StockAdjustment(msgspec.Struct, frozen=True):
    """A Stock Adjustment [DOC push fields]: ``Increase`` or ``Decrease`` of Available Stock,
    never both in one [DOC]. As a ``stock/v1/adjustment`` row [UNCONF shape]."""

    internal_id: str = msgspec.field(default="", name="InternalId")
    kind: str = msgspec.field(default="", name="StockAdjustmentType")
    at: datetime | None = msgspec.field(default=None, name="StockAdjustmentDate")
    dc: str | None = msgspec.field(default=None, name="DCCode")
    location_type: str | None = msgspec.field(default=None, name="LocationType")
    list_: _AdjustmentLines = msgspec.field(default_factory=_AdjustmentLines, name="List")

    @property
    def lines(self) -> list[AdjustmentLine]:
        return self.list_.items

    @property
    def sign(self) -> int:
        return -1 if self.kind.lower() == "decrease" else 1


class _Adjustments(msgspec.Struct, frozen=True):
    items: list[StockAdjustment] = msgspec.field(default_factory=list, name="StockAdjustment")


class AdjustmentsAnswer(msgspec.Struct, frozen=True):
    list_: _Adjustments = msgspec.field(default_factory=_Adjustments, name="List")


# --- reading iHub's JSON ---


def decode(raw: bytes | Any, kind: type[T]) -> T:
    """``raw`` (JSON bytes, or builtins already decoded) as ``kind``, read the way iHub writes
    (see the module docstring). Raises ``msgspec.ValidationError`` with the path on a mismatch."""
    value = msgspec.json.decode(raw) if isinstance(raw, bytes | bytearray) else raw
    if (
        isinstance(value, dict)
        and set(value) == {"Response"}
        and isinstance(value["Response"], dict)
    ):
        value = value["Response"]  # v1's wrapper [OBS]
    return msgspec.convert(_shape(value, _info(kind)), kind, strict=False)


_INFO: dict[object, mi.Type] = {}


def _info(kind: object) -> mi.Type:
    info = _INFO.get(kind)
    if info is None:
        info = _INFO[kind] = mi.type_info(kind)
    return info


def _shape(value: Any, info: mi.Type) -> Any:
    if isinstance(info, mi.UnionType):
        options = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if value is None or not options:
            return value
        return _shape(value, options[0]) if len(options) == 1 else value
    if isinstance(info, mi.StructType):
        if not isinstance(value, dict):
            return value
        shaped = {}
        for field in info.fields:
            if field.encode_name not in value:
                continue
            item = value[field.encode_name]
            if item == {} and not _wants_object(field.type):
                continue  # iHub's empty value: the default
            shaped[field.encode_name] = _shape(item, field.type)
        return shaped
    if isinstance(info, mi.ListType | mi.VarTupleType):
        items = [] if value in (None, {}, "") else value if isinstance(value, list) else [value]
        return [_shape(item, info.item_type) for item in items]
    if (
        isinstance(info, mi.StrType)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return value


def _wants_object(info: mi.Type) -> bool:
    types = info.types if isinstance(info, mi.UnionType) else (info,)
    return any(isinstance(t, mi.StructType | mi.DictType) for t in types)
