"""IDoc-XML for SAP ECC: the goods-movement IDoc out (``MBGMCR03``), audit IDocs in (``ALEAUD01``).

Out: :func:`goods_movement_xml` writes one ``MBGMCR03`` IDoc — ECC's inbound function
``IDOC_INPUT_MBGMCR`` hands it to ``BAPI_GOODSMVT_CREATE``: one material document per IDoc,
all items or none [DOC: sap4tech.net "SAP good movement IDoc"; BAPI_GOODSMVT_CREATE
documentation]. The XML is the IDoc-XML of SAP's "Creating the XML Document for Inbound IDocs"
[DOC: help.sap.com saphelp_46c]: a root named after the basic type, ``<IDOC BEGIN="1">``, the
control record ``<EDI_DC40 SEGMENT="1">``, then the segments in their order of appearance.

The control record is filled the way a WE20 inbound partner profile expects: ``DIRECT`` 2
(inbound to the receiver), sender port / partner type / partner number (``SNDPRN`` must be the
partner profile's), receiver port ``SAP<SID>``, partner type ``LS``, partner number
``<SID>CLNT<client>`` (BD54 naming) [DOC-3P: ecosio "EDI_DC40"; research A2]. ``DOCNUM`` is the
*sender's* IDoc number (ECC assigns its own on arrival [DOC-3P: TraceLink guideline]);
``ARCKEY`` — for inbound IDocs "must be filled with the archive key of the EDI subsystem"
[DOC: sapdatasheet.org data element IDOCCARKEY] — carries the posting's key, so the IDoc is
found again in ``EDIDC`` by that key (:mod:`handlers.connectors.ecc.rfc`). The header's
``REF_DOC_NO`` (16 characters, the material document's ``MKPF-XBLNR``) carries the key too,
``HEADER_TXT`` (25, ``MKPF-BKTXT``) "skuflow <key>"; each item's ``ITEM_TEXT`` (50,
``MSEG-SGTXT``) names its first source transaction and how many there are [UNCONF:
ITEM_TEXT's length is recollection of BAPI2017_GM_ITEM_CREATE, so it is clipped to 50].

Field formats: "Pass data in database format: material number 18-character with leading
zeros, batches with uppercase letters", and always fill ``PSTNG_DATE`` [DOC:
BAPI_GOODSMVT_CREATE documentation]. A numeric material is zero-padded to 18 characters
(``MATERIAL``); an alphanumeric one goes as it is, upper-cased, and one longer than 18 goes in
``MATERIAL_LONG`` (40) [OBS: callers in the public index].

In: :func:`parse_audit` reads an ``ALEAUD01`` IDoc: ``E1ADHDR`` (message type), per
confirmation ``E1STATE`` (the sender's ``DOCNUM``, the receiver's status, the status message:
``STAMID`` class, ``STAMNO`` number, ``STAPA1``-``STAPA4`` variables, ``STATXT``) and
``E1PRTOB`` (the receiver's ``DOCNUM``, the application object: ``BUS2017`` with key
``MBLNR`` + ``MJAHR``) [DOC: help.sap.com saphelp_mdg90 "Segments of Audit IDoc ALEAUD01"].
XML from outside is parsed with :mod:`defusedxml` (no entity expansion, no external entities).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from xml.etree import ElementTree as ET

import msgspec
from defusedxml import ElementTree as SafeET

#: The IDoc's segment and field lengths this module enforces (longer values would be cut by ECC).
REF_DOC_NO_MAX = 16
HEADER_TXT_MAX = 25
ITEM_TEXT_MAX = 50
MATERIAL_MAX = 18
MATERIAL_LONG_MAX = 40
ARCKEY_MAX = 70
BATCH_MAX = 10
SERIAL_MAX = 18

_NAMESPACE = re.compile(r"^\{[^}]*\}")


class IdocError(ValueError):
    """An IDoc that cannot be written or an audit IDoc that cannot be read."""


class ControlRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The partner-profile side of ``EDI_DC40`` (from ``[ecc]`` settings)."""

    client: str  # MANDT / sap-client, 3 digits
    sid: str  # the ECC system id, e.g. "P01"
    sender_port: str  # SNDPOR (10)
    sender_partner: str  # SNDPRN (10): the WE20 partner profile
    sender_partner_type: str = "LS"
    receiver_port: str | None = None  # RCVPOR; default SAP<SID>
    receiver_partner: str | None = None  # RCVPRN; default <SID>CLNT<client>

    @property
    def rcvpor(self) -> str:
        return self.receiver_port or f"SAP{self.sid}"

    @property
    def rcvprn(self) -> str:
        return self.receiver_partner or f"{self.sid}CLNT{self.client}"


class MovementItem(msgspec.Struct, frozen=True, kw_only=True):
    """One ``E1BP2017_GM_ITEM_CREATE``: a positive quantity, the movement type says which way."""

    material: str
    plant: str
    storage_location: str
    move_type: str
    quantity: Decimal
    unit: str
    batch: str | None = None
    move_plant: str | None = None  # transfers: the receiving plant (301)
    move_storage_location: str | None = None  # transfers: the receiving storage location
    serial_numbers: tuple[str, ...] = ()
    text: str = ""


class GoodsMovement(msgspec.Struct, frozen=True, kw_only=True):
    """One ``MBGMCR03`` IDoc: one material document when ECC applies it."""

    key: str  # the posting key: REF_DOC_NO, ARCKEY, HEADER_TXT
    gm_code: str  # E1BP2017_GM_CODE-GM_CODE (T158G)
    posting_date: date
    document_date: date
    items: tuple[MovementItem, ...]


class AuditConfirmation(msgspec.Struct, frozen=True, kw_only=True):
    """One ``E1STATE`` (+ its ``E1PRTOB``) of an ``ALEAUD01``."""

    sender_docnum: str
    status: str
    message_type: str = ""
    message_class: str = ""
    message_number: str = ""
    variables: tuple[str, str, str, str] = ("", "", "", "")
    text: str = ""
    receiver_docnum: str = ""
    object_type: str = ""
    object_key: str = ""


def material_number(code: str) -> tuple[str, str]:
    """(field, value) for an ERP item code in database format: ``("MATERIAL", 18 digits)`` for a
    numeric material, ``("MATERIAL", CODE)`` for an alphanumeric one, ``("MATERIAL_LONG", CODE)``
    for one longer than 18 characters."""
    code = code.strip()
    if not code:
        raise IdocError("empty material number")
    if code.isdigit():
        if len(code) > MATERIAL_MAX:
            raise IdocError(f"numeric material {code!r} is longer than {MATERIAL_MAX} digits")
        return "MATERIAL", code.zfill(MATERIAL_MAX)
    code = code.upper()
    if len(code) <= MATERIAL_MAX:
        return "MATERIAL", code
    if len(code) <= MATERIAL_LONG_MAX:
        return "MATERIAL_LONG", code
    raise IdocError(f"material {code!r} is longer than {MATERIAL_LONG_MAX} characters")


def split_warehouse(code: str) -> tuple[str, str]:
    """``<plant>/<storage location>`` → (plant, storage location): an ECC warehouse code."""
    plant, _, sloc = code.partition("/")
    if not plant or not sloc:
        raise ValueError(f"an ECC warehouse is <plant>/<storage location>, not {code!r}")
    return plant, sloc


def sender_docnum(number: int) -> str:
    """The sender's 16-digit IDoc number."""
    if not 0 < number < 10**16:
        raise IdocError(f"IDoc number out of range: {number}")
    return str(number).zfill(16)


def quantity_text(value: Decimal) -> str:
    if not value > 0:
        raise IdocError(f"quantity must be positive, not {value}")
    return format(value.normalize(), "f")


def sap_date(value: date) -> str:
    return value.strftime("%Y%m%d")


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def segment(parent: ET.Element, tag: str, fields: list[tuple[str, str | None]]) -> ET.Element:
    segment = ET.SubElement(parent, tag, {"SEGMENT": "1"})
    for name, value in fields:
        if value is not None and value != "":
            _sub(segment, name, value)
    return segment


def idoc_root(
    control: ControlRecord, docnum: int, types: tuple[str, str], created: datetime, arckey: str
) -> tuple[ET.Element, ET.Element]:
    """The root (named after the basic type) and its ``<IDOC>`` with the control record filled
    as the partner profile expects; ``types``: (basic type, message type)."""
    basic_type, message_type = types
    root = ET.Element(basic_type)
    idoc = ET.SubElement(root, "IDOC", {"BEGIN": "1"})
    segment(
        idoc,
        "EDI_DC40",
        [
            ("TABNAM", "EDI_DC40"),
            ("MANDT", control.client),
            ("DOCNUM", sender_docnum(docnum)),
            ("DIRECT", "2"),
            ("IDOCTYP", basic_type),
            ("MESTYP", message_type),
            ("SNDPOR", control.sender_port),
            ("SNDPRT", control.sender_partner_type),
            ("SNDPRN", control.sender_partner),
            ("RCVPOR", control.rcvpor),
            ("RCVPRT", "LS"),
            ("RCVPRN", control.rcvprn),
            ("CREDAT", created.strftime("%Y%m%d")),
            ("CRETIM", created.strftime("%H%M%S")),
            ("ARCKEY", arckey[:ARCKEY_MAX]),
        ],
    )
    return root, idoc


def goods_movement_xml(
    control: ControlRecord,
    docnum: int,
    movement: GoodsMovement,
    *,
    created: datetime,
    arckey: str | None = None,
) -> bytes:
    """The ``MBGMCR03`` IDoc-XML of ``movement`` (UTF-8 bytes with an XML declaration);
    ``arckey`` defaults to the movement's key."""
    if not movement.items:
        raise IdocError("a goods movement needs at least one item")
    if not 0 < len(movement.key) <= REF_DOC_NO_MAX or not movement.key.isprintable():
        raise IdocError(f"key must be 1 to {REF_DOC_NO_MAX} printable characters")
    root, idoc = idoc_root(control, docnum, ("MBGMCR03", "MBGMCR"), created, arckey or movement.key)
    body = ET.SubElement(idoc, "E1MBGMCR", {"SEGMENT": "1"})
    segment(
        body,
        "E1BP2017_GM_HEAD_01",
        [
            ("PSTNG_DATE", sap_date(movement.posting_date)),
            ("DOC_DATE", sap_date(movement.document_date)),
            ("REF_DOC_NO", movement.key),
            ("HEADER_TXT", f"skuflow {movement.key}"[:HEADER_TXT_MAX]),
        ],
    )
    segment(body, "E1BP2017_GM_CODE", [("GM_CODE", movement.gm_code)])
    for item in movement.items:
        field, material = material_number(item.material)
        batch = item.batch.upper() if item.batch else None
        if batch is not None and len(batch) > BATCH_MAX:
            raise IdocError(f"batch {batch!r} is longer than {BATCH_MAX} characters")
        segment(
            body,
            "E1BP2017_GM_ITEM_CREATE",
            [
                (field, material),
                ("PLANT", item.plant),
                ("STGE_LOC", item.storage_location),
                ("BATCH", batch),
                ("MOVE_TYPE", item.move_type),
                ("ENTRY_QNT", quantity_text(item.quantity)),
                ("ENTRY_UOM", item.unit),
                ("MOVE_PLANT", item.move_plant),
                ("MOVE_STLOC", item.move_storage_location),
                ("MOVE_BATCH", batch if item.move_plant or item.move_storage_location else None),
                ("ITEM_TEXT", item.text[:ITEM_TEXT_MAX] or None),
            ],
        )
    for index, item in enumerate(movement.items, 1):
        for serial in item.serial_numbers:
            if len(serial) > SERIAL_MAX:
                raise IdocError(f"serial number {serial!r} is longer than {SERIAL_MAX}")
            segment(
                body,
                "E1BP2017_GM_SERIALNUMBER",
                [("MATDOC_ITM", str(index).zfill(4)), ("SERIALNO", serial)],
            )
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def _local(tag: str) -> str:
    return _NAMESPACE.sub("", tag)


def _text(element: ET.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


_STATE_FIELDS = (
    "DOCNUM", "STATUS", "STAMID", "STAMNO", "STAPA1", "STAPA2", "STAPA3", "STAPA4", "STATXT",
)  # fmt: skip


def _confirmation(
    state: dict[str, str], message_type: str, prtob: ET.Element | None
) -> AuditConfirmation:
    return AuditConfirmation(
        sender_docnum=state["DOCNUM"],
        status=state["STATUS"],
        message_type=message_type,
        message_class=state["STAMID"],
        message_number=state["STAMNO"],
        variables=(state["STAPA1"], state["STAPA2"], state["STAPA3"], state["STAPA4"]),
        text=state["STATXT"],
        receiver_docnum=_text(prtob, "DOCNUM") if prtob is not None else "",
        object_type=_text(prtob, "OBJTYPE") if prtob is not None else "",
        object_key=_text(prtob, "OBJKEY") if prtob is not None else "",
    )


def parse_audit(raw: bytes) -> list[AuditConfirmation]:
    """The confirmations of an ``ALEAUD01`` IDoc-XML document (one or more ``IDOC``\\ s).

    An ``E1PRTOB`` (the receiver's IDoc number and the application object) belongs to the
    ``E1STATE`` it is nested in or follows; a document that is not ``ALEAUD01`` raises
    :class:`IdocError`.
    """
    try:
        root = SafeET.fromstring(raw)
    except (ET.ParseError, ValueError) as exc:  # defusedxml refusals are ValueErrors
        raise IdocError(f"not XML: {exc}") from None
    if _local(root.tag) != "ALEAUD01":
        raise IdocError(f"not an ALEAUD01 IDoc: root <{_local(root.tag)}>")
    confirmations: list[AuditConfirmation] = []
    for idoc in _children(root, "IDOC"):
        for header in _children(idoc, "E1ADHDR"):
            message_type = _text(header, "MESTYP") or _text(header, "MESTYP_LNG")
            pending: dict[str, str] | None = None
            for segment in header:
                name = _local(segment.tag)
                if name == "E1STATE":
                    if pending is not None:
                        confirmations.append(_confirmation(pending, message_type, None))
                    pending = {field: _text(segment, field) for field in _STATE_FIELDS}
                    if not pending["DOCNUM"] or not pending["STATUS"]:
                        raise IdocError("E1STATE without DOCNUM or STATUS")
                    nested = _children(segment, "E1PRTOB")
                    if nested:
                        confirmations.append(_confirmation(pending, message_type, nested[0]))
                        pending = None
                elif name == "E1PRTOB" and pending is not None:
                    confirmations.append(_confirmation(pending, message_type, segment))
                    pending = None
            if pending is not None:
                confirmations.append(_confirmation(pending, message_type, None))
    return confirmations
