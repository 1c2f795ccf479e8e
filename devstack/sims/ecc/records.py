"""What the simulator keeps: inbound IDocs with their EDIDS-like status records, the movements
applied per material/plant/sloc, ALEAUD deliveries and the HTTP requests received."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import msgspec

from devstack.sims.ecc import model
from devstack.sims.ecc.idoc import IdocDocument


class StatusRecord(msgspec.Struct, frozen=True):
    """One EDIDS row."""

    status: str
    text: str
    stamid: str
    stamno: str
    statyp: str  # S success, E error, "" technical
    stapa: tuple[str, str, str, str]
    uname: str
    at: datetime


@dataclass
class Idoc:
    """A stored inbound IDoc (EDIDC + its data + EDIDS)."""

    docnum: str
    sequence: int  # arrival order
    document: IdocDocument
    user: str
    statuses: list[StatusRecord] = field(default_factory=list)
    ready_at: float = 0.0
    final_at: float = 0.0
    material_document: model.MaterialDocument | None = None
    sales_document: str = ""  # an ORDERS05's sales order (VBELN) once saved

    @property
    def status(self) -> str:
        return self.statuses[-1].status if self.statuses else ""

    @property
    def control(self) -> dict[str, str]:
        return self.document.control

    @property
    def sender_docnum(self) -> str:
        return self.control.get("DOCNUM", "")

    @property
    def arckey(self) -> str:
        return self.control.get("ARCKEY", "")

    @property
    def partner(self) -> str:
        return self.control.get("SNDPRN", "")


@dataclass(frozen=True)
class Applied:
    """One MSEG line as it changed one place's stock, in posting order."""

    mblnr: str
    mjahr: str
    zeile: int
    bwart: str
    delta: Decimal
    charg: str
    xblnr: str
    idoc: str
    sender_docnum: str
    at: float


@dataclass(frozen=True)
class AuditDelivery:
    docnum: str  # the ALEAUD01 IDoc's own number
    partner: str
    confirmed: tuple[str, ...]  # sender DOCNUMs
    status: int  # HTTP status, 0: no answer
    at: float


class RecordedRequest(msgspec.Struct, frozen=True):
    method: str
    path: str
    query: str
    content_type: str
    status: int
    at: float
