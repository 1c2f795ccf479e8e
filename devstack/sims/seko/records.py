"""The simulator's records — products, orders, dispatches, receipts, adjustments — and how each
renders on the wire: as a push entity (header and lines) and as a retrieve row.

Field names are [DOC] where the push pages list them (dispatch: ``DispatchDate``,
``DispatchId``, ``CourierService``, ``TrackingUrl``, ``Weight``/``WeightUOM``,
``InterfaceRecordId``, ``SalesOrderNumber``; stock adjustment: all; summary: the quantities) and
[OBS] for the v1 retrieve rows (GRN ``GRNResponseItem``; dispatch ``DCCode``/``GUID``); the
rest is [UNCONF] and marked where it is written: a dispatch line's ``Quantity``/``SerialNo``,
``CourierName``/``TrackingNumber`` on a dispatch, a GRN push's line names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def stamp(moment: datetime) -> str:
    """iHub's UTC timestamps: ``2016-07-07T16:16:01Z`` [DOC]."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Product:
    code: str  # as first loaded; iHub matches codes case-insensitively [DOC]
    fields: dict[str, Any]  # the ProductMaster as loaded (and updated)
    lot_controlled: bool = False
    serial_controlled: bool = False
    date_controlled: bool = False

    @property
    def ean(self) -> str:
        return str(self.fields.get("EAN") or "")


@dataclass
class Line:
    line_number: int
    code: str
    quantity: int
    lot: str = ""  # a requested LotNo [OBS v4 SalesOrderLineItem]


@dataclass
class DispatchLine:
    line_number: int
    code: str
    ean: str
    quantity: int
    lot: str = ""
    serial: str = ""

    def wire(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "LineNumber": self.line_number,
            "ProductCode": self.code,
            "EAN": self.ean,
            "Quantity": self.quantity,
        }
        if self.quantity:  # "LotNo will not be visible if the Dispatch Quantity is 0" [DOC]
            line["LotNo"] = self.lot
            line["SerialNo"] = self.serial  # [UNCONF] one serial a line, like lots [DOC]
        return line


@dataclass
class Dispatch:
    dispatch_id: str
    number: int  # DispatchNumber: "Client specific counter for sales orders" [DOC]
    order_number: str
    order_reference: str
    guid: str  # the order's GUID (ours when the load sent one): InterfaceRecordId [DOC]
    dc: str
    at: datetime
    courier: str
    service: str
    tracking_number: str
    lines: list[DispatchLine]

    @property
    def tracking_url(self) -> str:
        return f"https://track.example.test/{self.courier.replace(' ', '')}/{self.tracking_number}"

    def entity(self) -> dict[str, Any]:
        units = sum(line.quantity for line in self.lines)
        return {
            "InterfaceRecordId": self.guid,
            "SalesOrderNumber": self.order_number,
            "SalesOrderReference": self.order_reference,
            "DispatchId": self.dispatch_id,
            "DispatchNumber": self.number,
            "DCCode": self.dc,
            "DispatchDate": stamp(self.at),
            "CourierName": self.courier,  # [UNCONF] on the dispatch (Tracking has "Courier")
            "CourierService": self.service,
            "TrackingNumber": self.tracking_number,  # [UNCONF] on the dispatch
            "TrackingUrl": self.tracking_url,
            "Weight": f"{0.25 * units:.4f}",
            "WeightUOM": "KG",
        }

    def lines_wire(self) -> list[dict[str, Any]]:
        return [line.wire() for line in self.lines]

    def row(self) -> dict[str, Any]:
        """A ``dispatches/v1/status`` row: ``DCCode`` and ``GUID`` [OBS]; the dispatch and its
        lines beside them [UNCONF], so a lost push can be rebuilt from the retrieve."""
        body = {"DCCode": self.dc, "GUID": self.guid, **self.entity()}
        return body | {"List": {"DispatchLineItem": self.lines_wire()}}


@dataclass
class Order:
    number: str
    guid: str
    dc: str
    lines: list[Line]
    submitted_at: datetime
    reference: str = ""
    courier: str = ""
    service: str = ""
    web: bool = False
    on_hold: bool = False
    at_dc: bool = True  # pushed to the DC (False: DoNotPushToDC, or PushToDC off)
    status: str = "In Production"
    since: datetime | None = None  # when it entered ``status``
    cancel_reason: str = ""
    plan: list[dict[str, int]] | None = None  # shipments, product code -> units
    dispatches: list[Dispatch] = field(default_factory=list)
    history: list[tuple[str, datetime]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.number.upper()

    def wire(self) -> dict[str, Any]:
        return {
            "SalesOrderNumber": self.number,
            "GUID": self.guid,
            "DCCode": self.dc,
            "Status": self.status,
            "OnHold": self.on_hold,
            "Web": self.web,
            "SubmittedAt": stamp(self.submitted_at),
            "Lines": [vars(line) for line in self.lines],
            "History": [[status, stamp(at)] for status, at in self.history],
            "Dispatches": [d.row() for d in self.dispatches],
        }


@dataclass
class Receipt:
    """An ASN loaded through ``receipts/v1/submit`` [OBS], awaiting its goods."""

    asn_number: str
    guid: str
    dc: str
    hb_reference: str
    is_return: bool
    lines: list[Line]
    received: bool = False


@dataclass
class GrnLine:
    line_number: int  # the original LineNumber, also on every lot of it [DOC]
    code: str
    ean: str
    quantity: int
    lot: str
    line_guid: str


@dataclass
class Grn:
    guid: str
    asn_number: str
    dc: str
    hb_reference: str
    is_return: bool
    arrived_at: datetime
    confirmed_at: datetime
    lines: list[GrnLine]
    via_ihub: bool  # its ASN was loaded through the API (only those are pushed [DOC])

    def entity(self) -> dict[str, Any]:
        return {
            "InterfaceRecordId": self.guid,
            "ASNNumber": self.asn_number,
            "HBReference": self.hb_reference,
            "DCCode": self.dc,
            "GRNType": "Return" if self.is_return else "Standard",
            "ArrivalTimestamp": stamp(self.arrived_at),
            "ConfirmedTimestamp": stamp(self.confirmed_at),
        }

    def lines_wire(self) -> list[dict[str, Any]]:  # [UNCONF] names of the push's lines
        return [
            {
                "LineNumber": line.line_number,
                "ProductCode": line.code,
                "EAN": line.ean,
                "Quantity": line.quantity,
                "LotNo": line.lot,
            }
            for line in self.lines
        ]

    def rows(self) -> list[dict[str, Any]]:
        """``grns/v1`` rows, one a line [OBS fixture]; ``ASNNumber``/``LotNo`` [UNCONF]."""
        return [
            {
                "ArrivalTimestamp": stamp(self.arrived_at),
                "ConfirmedTimestamp": stamp(self.confirmed_at),
                "CurrentStatus": "Confirmed",
                "DCCode": self.dc,
                "GRNQuantity": line.quantity,
                "GRNType": "Return" if self.is_return else "Standard",
                "GUID": self.guid,
                "HBRef": self.hb_reference,
                "InternalId": "",
                "LineInternalId": "",
                "LineItemGUID": line.line_guid,
                "LineItemNumber": line.line_number,
                "ProductCode": line.code,
                "ReceivingStartTimestamp": stamp(self.arrived_at),
                "ASNNumber": self.asn_number,
                "LotNo": line.lot,
            }
            for line in self.lines
        ]


@dataclass
class AdjustmentLine:
    line_number: int
    code: str
    ean: str
    quantity: int  # positive; the adjustment's type says which way
    reason_code: str
    reason: str
    lot: str


@dataclass
class Adjustment:
    internal_id: str
    dc: str
    kind: str  # "Increase" | "Decrease": never both in one message [DOC]
    at: datetime
    lines: list[AdjustmentLine]
    location_type: str = "Available Stock"

    def entity(self) -> dict[str, Any]:
        return {
            "InternalId": self.internal_id,
            "StockAdjustmentType": self.kind,
            "StockAdjustmentDate": stamp(self.at),
            "DCCode": self.dc,
            "LocationType": self.location_type,
        }

    def lines_wire(self) -> list[dict[str, Any]]:
        return [
            {
                "LineInternalId": f"{self.internal_id}-{line.line_number}",
                "LineNumber": line.line_number,
                "ProductCode": line.code,
                "EAN": line.ean,
                "Quantity": line.quantity,
                "ReasonCode": line.reason_code,
                "ReasonDescription": line.reason,
                "LotNumber": line.lot,
            }
            for line in self.lines
        ]

    def row(self) -> dict[str, Any]:
        """A ``stock/v1/adjustment`` row [UNCONF: the v1 client's fixture was a placeholder]:
        the push entity with its lines."""
        return self.entity() | {"List": {"StockAdjustmentLineItem": self.lines_wire()}}
