"""IDoc-XML, its SOAP wrapping and the ALEAUD01 audit IDoc, as ECC's ICF services read and write
them. Standard-library XML only (``xml.etree.ElementTree``; DTDs are refused, so no entities).

Facts and their sources ([DOC] SAP's own documentation, [DOC-3P] a third party documents it,
[OBS] seen in public code, [UNCONF] not confirmed — a knob or a note says so):

- [DOC] help.sap.com 4.6C "Creating the XML Document for Inbound IDocs": the root element is
  named after the basic type (``<MBGMCR03>``), then ``<IDOC BEGIN="1">``, then
  ``<EDI_DC40 SEGMENT="1">``, then the data segments ``<E1… SEGMENT="1">`` in IDoc order, each
  field an element named after it. [DOC-3P] (webMethods Adapter for SAP 10.1) empty fields may
  be written ``<FIELD/>``. Segments nest as the IDoc type defines (child segments inside their
  parent element).
- [UNCONF] One root may carry several ``<IDOC>`` elements (an IDoc packet); each becomes an IDoc.
- [DOC] SAP::WAS::SOAP / help.sap.com "Structure of a SOAP Message": SOAP 1.1 envelope
  ``http://schemas.xmlsoap.org/soap/envelope/``; SOAP-RFC bodies live in
  ``urn:sap-com:document:sap:rfc:functions``.
- [DOC-3P] (HCI IDoc adapter blog, 2016) ``/sap/bc/srt/idoc`` takes the same IDoc-XML as the
  SOAP Body's child. [DOC] (help.sap.com nw73 "Port Type XML-HTTP") the SOAP handler
  ``IDOC_INBOUND_XML_SOAP_HTTP`` answers ``ASSIGN (TRANSFER_ID, DB_ID)``; [UNCONF] the element
  names used here (``idocAssign`` > ``DbId``/``TransferId`` in
  ``urn:sap-com:document:sap:idoc:soap:messages``) are recalled from SAP CPI's
  ``SapIDocDbId``/``SapIDocTransferId`` headers, not seen in a captured answer.
- [DOC] help.sap.com "Segments of Audit IDoc ALEAUD01": ``E1ADHDR`` (message type: ``MESTYP``,
  ``MESTYP_LNG``, code, function), ``E1STATE`` (the *sender's* IDoc number ``DOCNUM``, the
  current status in the receiver and the message fields of its current status record),
  ``E1PRTOB`` (the receiver's IDoc number and the application object); at most 500
  confirmations per audit IDoc. [OBS] (public ALEAUD01 generators) ``E1STATE`` nests in
  ``E1ADHDR`` and ``E1PRTOB`` in ``E1STATE``. [DOC] (help.sap.com E2STATS) the status fields:
  ``LOGDAT``, ``LOGTIM``, ``STATUS``, ``STACOD``, ``STATXT`` (70), ``STAPA1``-``STAPA4`` (20),
  ``STATYP``. [UNCONF, recollection] ``E1STATE-STAMQU/STAMID/STAMNO`` and ``E1PRTOB``'s
  ``DOCNUM``/``OBJTYPE``/``OBJKEY``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
RFC_NS = "urn:sap-com:document:sap:rfc:functions"
IDOC_SOAP_NS = "urn:sap-com:document:sap:idoc:soap:messages"  # [UNCONF]
CONTROL = "EDI_DC40"
#: ALEAUD01 confirmations per audit IDoc, at most [DOC].
AUDIT_LIMIT = 500
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


class IdocXmlError(Exception):
    """The body is no IDoc-XML the service can store: answered with an HTTP error, nothing kept."""


@dataclass
class Segment:
    """One segment: its fields (text, trailing blanks stripped as in a fixed-width SDATA) and
    its child segments, in document order."""

    name: str
    fields: dict[str, str] = field(default_factory=dict)
    children: list[Segment] = field(default_factory=list)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    def first(self, name: str) -> Segment | None:
        return next((child for child in self.children if child.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [child for child in self.children if child.name == name]

    def walk(self) -> Iterator[Segment]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class IdocDocument:
    """One ``<IDOC>``: the basic type (the root's name), the control record, the segments."""

    basic_type: str
    control: dict[str, str]
    segments: list[Segment]

    def segment(self, name: str) -> Segment | None:
        """The first segment of that name anywhere in the tree."""
        return next(self.segments_named(name), None)

    def segments_named(self, name: str) -> Iterator[Segment]:
        """Every segment of that name anywhere in the tree, in document order."""
        for top in self.segments:
            for segment in top.walk():
                if segment.name == name:
                    yield segment


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_xml(raw: bytes) -> ET.Element:
    if _DOCTYPE.search(raw[:4096]):
        raise IdocXmlError("XML with a DOCTYPE is not accepted")
    try:
        return ET.fromstring(raw)
    except ET.ParseError as exc:
        raise IdocXmlError(f"XML parse error: {exc}") from None


def _segment(element: ET.Element) -> Segment:
    segment = Segment(_local(element.tag))
    for child in element:
        if "SEGMENT" in child.attrib or len(child):
            segment.children.append(_segment(child))
        else:
            segment.fields[_local(child.tag)] = (child.text or "").rstrip()
    return segment


def idocs_from(root: ET.Element) -> list[IdocDocument]:
    """Every ``<IDOC>`` under an IDoc-XML root element."""
    basic_type = _local(root.tag)
    documents: list[IdocDocument] = []
    for idoc in root:
        if _local(idoc.tag) != "IDOC":
            raise IdocXmlError(f"Unexpected element {_local(idoc.tag)} below {basic_type}")
        segments = [_segment(child) for child in idoc]
        if not segments or segments[0].name != CONTROL:
            raise IdocXmlError(f"IDoc without control record {CONTROL}")
        documents.append(IdocDocument(basic_type, segments[0].fields, segments[1:]))
    if not documents:
        raise IdocXmlError(f"No IDOC element below {basic_type}")
    return documents


def parse_idoc_xml(raw: bytes) -> list[IdocDocument]:
    """The IDocs of an ``/sap/bc/idoc_xml`` body."""
    return idocs_from(parse_xml(raw))


def soap_body(raw: bytes) -> ET.Element:
    """The first child of a SOAP 1.1 ``Body``."""
    envelope = parse_xml(raw)
    if envelope.tag != f"{{{SOAP_ENV}}}Envelope":
        raise IdocXmlError("Not a SOAP 1.1 envelope")
    body = envelope.find(f"{{{SOAP_ENV}}}Body")
    if body is None or not len(body):
        raise IdocXmlError("SOAP envelope without a Body element")
    return body[0]


def parse_idoc_soap(raw: bytes) -> list[IdocDocument]:
    """The IDocs of an ``/sap/bc/srt/idoc`` body: IDoc-XML as the SOAP Body's child."""
    return idocs_from(soap_body(raw))


# --- writing ---


def _element(segment: Segment) -> ET.Element:
    element = ET.Element(segment.name, SEGMENT="1")
    for name, value in segment.fields.items():
        ET.SubElement(element, name).text = value
    element.extend(_element(child) for child in segment.children)
    return element


def idoc_element(
    basic_type: str, documents: Iterable[tuple[dict[str, str], list[Segment]]]
) -> ET.Element:
    root = ET.Element(basic_type)
    for control, segments in documents:
        idoc = ET.SubElement(root, "IDOC", BEGIN="1")
        idoc.append(_element(Segment(CONTROL, {"TABNAM": CONTROL, **control})))
        idoc.extend(_element(segment) for segment in segments)
    return root


def build_idoc_xml(basic_type: str, control: dict[str, str], segments: list[Segment]) -> bytes:
    """One IDoc as IDoc-XML (``TABNAM`` EDI_DC40 first in the control record)."""
    return serialise(idoc_element(basic_type, [(control, segments)]))


def serialise(element: ET.Element) -> bytes:
    text: bytes = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return text


def soap_envelope(*body: ET.Element) -> bytes:
    envelope = ET.Element(f"{{{SOAP_ENV}}}Envelope")
    ET.SubElement(envelope, f"{{{SOAP_ENV}}}Header")
    ET.SubElement(envelope, f"{{{SOAP_ENV}}}Body").extend(body)
    return serialise(envelope)


def soap_fault(code: str, text: str, detail: ET.Element | None = None) -> bytes:
    """A SOAP 1.1 fault; ``code`` is ``Client`` or ``Server`` (qualified with the envelope's
    namespace, as SOAP 1.1 section 4.4 has it)."""
    fault = ET.Element(f"{{{SOAP_ENV}}}Fault")
    ET.SubElement(fault, "faultcode").text = f"soap-env:{code}"
    ET.SubElement(fault, "faultstring").text = text
    if detail is not None:
        ET.SubElement(fault, "detail").append(detail)
    ET.register_namespace("soap-env", SOAP_ENV)
    return soap_envelope(fault)


def idoc_assign(db_id: str, transfer_id: str) -> bytes:
    """The srt/idoc answer: ``ASSIGN (TRANSFER_ID, DB_ID)`` [DOC]; element names [UNCONF]."""
    ET.register_namespace("n0", IDOC_SOAP_NS)
    assign = ET.Element(f"{{{IDOC_SOAP_NS}}}idocAssign")
    ET.SubElement(assign, "TransferId").text = transfer_id
    ET.SubElement(assign, "DbId").text = db_id
    return soap_envelope(assign)


# --- ALEAUD01 ---


@dataclass(frozen=True)
class Confirmation:
    """One ``E1STATE`` (> ``E1PRTOB`` when an application object exists) of an audit IDoc."""

    sender_docnum: str  # the sender's EDI_DC40-DOCNUM, as received
    receiver_docnum: str  # the IDoc number ECC assigned
    status: str  # "53", "51", ...
    logdat: str
    logtim: str
    statxt: str
    statyp: str  # S / E / W / I
    stamid: str
    stamno: str
    stapa: tuple[str, str, str, str]
    objtype: str = ""  # "BUS2017" (material document) when posted
    objkey: str = ""  # MBLNR + MJAHR


def audit_segments(mestyp: str, confirmations: Iterable[Confirmation]) -> list[Segment]:
    header = Segment("E1ADHDR", {"MESTYP": mestyp[:6], "MESTYP_LNG": mestyp})
    for c in confirmations:
        stapa = {f"STAPA{n}": value[:20] for n, value in enumerate(c.stapa, start=1)}
        state = Segment(
            "E1STATE",
            {
                "DOCNUM": c.sender_docnum,
                "LOGDAT": c.logdat,
                "LOGTIM": c.logtim,
                "STATUS": c.status,
                "STATXT": c.statxt[:70],
                **stapa,
                "STATYP": c.statyp,
                "STAMQU": "SAP",
                "STAMID": c.stamid,
                "STAMNO": c.stamno,
                **{f"{name}_LNG": c.stapa[int(name[-1]) - 1] for name in stapa},
            },
        )
        if c.objtype:
            fields = {"DOCNUM": c.receiver_docnum, "OBJTYPE": c.objtype, "OBJKEY": c.objkey}
            state.children.append(Segment("E1PRTOB", fields))
        header.children.append(state)
    return [header]


def chunks(items: list[Confirmation], size: int = AUDIT_LIMIT) -> Iterator[list[Confirmation]]:
    for start in range(0, len(items), max(1, min(size, AUDIT_LIMIT))):
        yield items[start : start + max(1, min(size, AUDIT_LIMIT))]
