"""A protocol-faithful SAP ECC for a non-SAP sender over HTTP: the ICF services an integrator
reaches, the asynchronous IDoc application behind them, ALE audit feedback, and fault knobs.

**HTTP surface** (every ``/sap/…`` call: basic auth sent pre-emptively, else 401 with
``WWW-Authenticate: Basic``; ``?sap-client=NNN`` — absent: the default client, another
client: 401 [UNCONF: a user unknown in that client fails logon]; no CSRF token [UNCONF: nothing
found says these services need one]):

- ``POST /sap/bc/idoc_xml`` (content type ``text/xml`` or ``application/x-sap.idoc`` [DOC]
  help.sap.com "Port Type XML-HTTP"; others 415 [UNCONF]): IDoc-XML. Malformed XML, no
  ``EDI_DC40``, or a basic type other than ``MBGMCR03`` → 400 text, nothing stored [UNCONF:
  status and body]. Otherwise 200 with an empty body [UNCONF: nothing documents the body;
  [DOC-3P] erlebe-software: "200 OK" means transferred] — the IDoc is *stored*, nothing more.
- ``POST /sap/bc/srt/idoc`` [DOC] SOAP 1.1 with the same IDoc-XML as the Body's child; answer
  ``idocAssign`` > ``TransferId``, ``DbId`` (the receiver IDoc number) — see
  :mod:`devstack.sims.ecc.idoc` for what is [UNCONF] there. Errors as SOAP faults, HTTP 500.
- ``POST /sap/bc/soap/rfc`` [DOC]: SOAP-RFC; ``RFC_READ_TABLE`` over MARA, MARC, T001L, MARD,
  MCHB, MKPF, MSEG, EDIDC, EDIDS (:mod:`devstack.sims.ecc.rfc`) and the SD tables VBAK, VBAP,
  VBKD, VBUK, VBUP, LIKP, LIPS, VBRK, VBRP, VBFA (:mod:`devstack.sims.ecc.sales_tables`),
  reads by key looked up, not scanned; the customer's wrapper function modules for sales
  documents (:mod:`devstack.sims.ecc.sales_rfc`). Another function: fault ``FU_NOT_FOUND``
  [UNCONF].
- ``/_sim/...`` (no auth, no faults): sales controls — customers, holds, rules, wrapper names
  (:mod:`devstack.sims.ecc.controls`).

**Sales orders**: ``ORDERS05`` IDocs (message type ORDERS, a partner profile for it:
``add_partner(message_types=("MBGMCR", "ORDERS"))``) are stored and applied like MBGMCR03 and
make sales orders (:mod:`devstack.sims.ecc.sales`); deliveries, invoices, returns and credit
memos follow through the wrappers (:mod:`devstack.sims.ecc.shipping`), the goods issue and
receipt moving the same stock book as the goods movements. Python hooks on ``sim.sales``.

**Storing** checks ``EDI_DC40`` as a WE20 partner profile does: ``TABNAM`` EDI_DC40,
``DIRECT`` 2, ``MESTYP`` MBGMCR for ``IDOCTYP`` MBGMCR03, ``SNDPRT`` LS, ``SNDPRN`` a configured
partner with an inbound MBGMCR profile, ``SNDPOR`` that partner's port, ``RCVPRT`` LS,
``RCVPRN`` ``<SID>CLNT<client>`` (BD54 naming [DOC-3P]). A failure stores the IDoc with status
56 and message E0 332/E0 078 [UNCONF: numbers; the 56 mapping is [UNCONF] too]. A segment
field longer than its length (``REF_DOC_NO`` 16, ``HEADER_TXT`` 25, …) gives status 60 (syntax
error) with ``overlong="reject"`` or is silently cut with ``"truncate"`` [UNCONF which one a
real system does]. The sender's ``DOCNUM`` and ``ARCKEY`` are kept ([DOC] ALEAUD01 help: "The
SAP system saves this number unless it is zero"; [DOC] sapdatasheet IDOCCARKEY: inbound
IDocs carry the EDI subsystem's archive key); EDIDC-ARCKEY is readable over RFC, the sender
DOCNUM only comes back in ALEAUD ``E1STATE-DOCNUM`` [UNCONF where ECC keeps it]. Receiver
numbers have 16 digits; ``number_buffers`` > 1 hands out blocks per application server, so
numbers are not in arrival order ([DOC-3P of SAP Note 752194]).

**Application** (a background job, RBDAPP01-like, every ``tick_ms``): statuses 50 → 64 → 62 →
53 or 51 [DOC-3P status list], each an EDIDS-like record. IDocs at least ``delay_ms`` in 64
are taken together and applied ``in_order`` (arrival), ``random``, ``reverse`` or
``parallel``; SAP itself does not serialise BAPI IDocs ([DOC] "Serialization at IDoc Level").
A posting locks the plant data of its materials ([DOC] material block) for ``apply_ms``;
in ``parallel`` a second posting of the same material+plant gets 51 M3 897 (transient,
[UNCONF] number). ``lock_next`` forces that error on the next N postings.
``reprocess_locks_ms`` models RBDMANIN scheduled on the ECC side ([DOC] help.sap.com 4.70
"Processing Logical IDoc Errors": lock conflicts end in 51, "Schedule report RBDMANIN"): a
lock-failed IDoc is posted again that much later, on its own — the same IDoc then ends 53,
after 51 was already reported (a sender that re-sent it meanwhile has posted twice).

**ALE audit** (``set_audit(url=…)``): every ``interval_ms``, ALEAUD01 IDoc-XML (≤ 500
confirmations each [DOC]) POSTed to ``url`` with basic auth: one ``E1STATE`` per IDoc that
reached 53 or 51 (its sender DOCNUM, status, message) and, when posted, ``E1PRTOB`` (receiver
DOCNUM, BUS2017, MBLNR+MJAHR). Knobs: ``drop_rate`` (never confirmed), ``duplicate_rate``
(confirmed again next round), ``delay_ms``. A failed delivery is retried next round.

**Faults** (``set_faults``): ``outage_until`` → 503; ``error_rate`` → 500 before anything is
stored; ``lost_answer_next``/``lost_answer_rate`` → stored, then the connection is cut
(``lost_answer_mode="reset"``) or 500 answered (``"500"``); ``latency_ms``; ``lock_next``;
``open_period`` ``"YYYY/MM"`` → M7 053 outside it and the period before. Wrapper functions:
``function_lost_answer_next``/``function_lost_answer_rate`` → applied (committed), then the
answer is lost as above; ``order_lock_next`` → the next N wrapper calls find their sales
document locked (E V1 042 "... is locked by user ...", nothing changed).

**Inspection** (Python only): ``idocs``, ``idoc()``, ``idocs_by_status()``, ``history()``
(applied movements per material/plant/sloc, in posting order), ``stock()``, ``documents``,
``audits``, ``counters``, ``requests``, ``settle()``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import aiohttp
import msgspec
from aiohttp import web

from devstack.sims.ecc import controls, model, rfc, sales_tables, tables
from devstack.sims.ecc import idoc as xml
from devstack.sims.ecc.idoc import IdocDocument, IdocXmlError
from devstack.sims.ecc.model import Message, Place, Rejected
from devstack.sims.ecc.records import Applied, AuditDelivery, Idoc, RecordedRequest, StatusRecord
from devstack.sims.ecc.sales import ORDERS_LENGTHS, SAVED, SalesBook
from devstack.sims.ecc.sales_rfc import SalesFunctions
from devstack.sims.http import LocalServer

log = logging.getLogger(__name__)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IDOC_CONTENT_TYPES = frozenset({"text/xml", "application/x-sap.idoc"})
BASIC_TYPES = {"MBGMCR03": "MBGMCR", "ORDERS05": "ORDERS"}  # basic type → message type (WE82)
OUTAGE_PAGE = "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>"  # noqa: E501
#: Field lengths of the segments read (TraceLink MBGMCR03 guideline [DOC-3P]; BAPI structures).
LENGTHS: dict[str, dict[str, int]] = {
    xml.CONTROL: {"DOCNUM": 16, "SNDPOR": 10, "SNDPRN": 10, "RCVPOR": 10, "RCVPRN": 10,
                  "MESTYP": 30, "IDOCTYP": 30, "ARCKEY": 70, "SERIAL": 20},
    "E1BP2017_GM_HEAD_01": {"PSTNG_DATE": 8, "DOC_DATE": 8, "REF_DOC_NO": 16, "HEADER_TXT": 25,
                            "BILL_OF_LADING": 16, "GR_GI_SLIP_NO": 10, "PR_UNAME": 12},
    "E1BP2017_GM_CODE": {"GM_CODE": 2},
    "E1BP2017_GM_ITEM_CREATE": {"MATERIAL": 18, "MATERIAL_LONG": 40, "PLANT": 4,
                                "STGE_LOC": 4, "BATCH": 10, "MOVE_TYPE": 3, "ENTRY_QNT": 15,
                                "ENTRY_UOM": 3, "MOVE_PLANT": 4, "MOVE_STLOC": 4,
                                "MOVE_BATCH": 10},
    "E1BP2017_GM_SERIALNUMBER": {"MATDOC_ITM": 4, "SERIALNO": 18},
    **ORDERS_LENGTHS,
}  # fmt: skip
ADDED = Message("E0", "", "IDoc added")
READY = Message("E0", "", "IDoc ready to be transferred to application")
PASSED = Message("E0", "", "IDoc passed to application")
NO_PROFILE = Message("E0", "332", "EDI: Partner profile not available &1 &2 &3")  # [UNCONF]
BAD_CONTROL = Message("E0", "078", "EDI: Field &1 in control record has invalid value &2")
TOO_LONG = Message("E0", "079", "EDI: Field &1 in segment &2 is longer than &3")  # [UNCONF]
FINAL = frozenset({"51", "53", "56", "60"})
Ordering = Literal["in_order", "random", "reverse", "parallel"]


class Faults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    latency_ms: float = 0.0
    error_rate: float = 0.0  # share of calls answered 500 before anything is stored
    outage_until: Annotated[datetime, msgspec.Meta(tz=True)] | None = None  # 503 until then
    lost_answer_next: int = 0  # the next N IDoc calls: stored, then the answer is lost ...
    lost_answer_rate: float = 0.0  # ... and this share of the others
    lost_answer_mode: Literal["reset", "500"] = "reset"  # connection cut, or a 500
    lock_next: int = 0  # the next N postings fail with M3 897 (status 51)
    open_period: str | None = None  # "YYYY/MM": M7 053 outside it and the previous period
    function_lost_answer_next: int = 0  # the next N wrapper calls: applied, answer lost ...
    function_lost_answer_rate: float = 0.0  # ... and this share of the others
    order_lock_next: int = 0  # the next N wrapper calls find their sales document locked


class Processing(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    ordering: Ordering = "in_order"
    delay_ms: float = 0.0  # an IDoc stays in 64 at least this long
    tick_ms: float = 20.0  # the background job's period
    apply_ms: float = 0.0  # a posting holds its plant-data locks this long (slow application)
    paused: bool = False  # the job does not run (IDocs pile up in 64)
    number_buffers: int = 1  # application servers with buffered IDoc number ranges
    buffer_size: int = 10  # numbers per buffered block
    inventory_differences: bool = True  # 701/702 accepted by the BAPI [UNCONF]
    overlong: Literal["reject", "truncate"] = "reject"
    job_user: str = "ALEREMOTE"  # the user the job posts as (named in M3 897)
    reprocess_locks_ms: float | None = None  # RBDMANIN: re-post lock-failed IDocs this later


class Audit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str | None = None  # where ALEAUD01 IDocs are POSTed; None: no audit
    user: str = ""
    password: str = ""
    interval_ms: float = 1000.0  # RBDSTATE's schedule
    max_per_idoc: int = xml.AUDIT_LIMIT
    drop_rate: float = 0.0  # share of confirmations never sent
    duplicate_rate: float = 0.0  # share sent again in the next round
    delay_ms: float = 0.0  # a final status waits this long before it is confirmed
    content_type: str = "application/x-sap.idoc"


class EccSimulator:
    def __init__(
        self,
        *,
        sid: str = "ECD",
        client: str = "100",
        user: str = "SKUFLOW_RFC",
        password: str = "skuflow-dev-ecc-password",
        company_code: str = "1000",
        seed: int | None = None,
    ) -> None:
        self.sid, self.client = sid, client
        self.logical_system = f"{sid}CLNT{client}"
        self._credentials = (user, password)
        self._random = random.Random(seed)
        self.faults = Faults()
        self.processing = Processing()
        self.audit = Audit()
        self.master = model.MasterData(company_code=company_code)
        self.book = model.StockBook()
        self.partners: dict[str, tuple[str, frozenset[str]]] = {}  # SNDPRN → (port, MESTYPs)
        self.idocs: dict[str, Idoc] = {}
        self.documents: list[model.MaterialDocument] = []
        self.sales = SalesBook(self.master, self.book, self._post_goods_movement)
        self.functions = SalesFunctions(self.sales)
        self._arckeys: defaultdict[str, list[str]] = defaultdict(list)
        self._by_mblnr: dict[str, model.MaterialDocument] = {}
        self._by_xblnr: defaultdict[str, list[model.MaterialDocument]] = defaultdict(list)
        self.audits: list[AuditDelivery] = []
        self.requests: list[RecordedRequest] = []
        self.counters: Counter[str] = Counter()
        self._history: defaultdict[Place, list[Applied]] = defaultdict(list)
        self._ready: list[Idoc] = []
        self._locks: dict[tuple[str, str], str] = {}  # (MATNR, WERKS) → user holding it
        self._pending_audit: list[Idoc] = []
        self._reprocess: list[tuple[float, Idoc]] = []  # (monotonic due time, 51 lock IDoc)
        self._next_number = 1_000_000
        self._blocks: list[list[int]] = []
        self._next_mblnr = 4_900_000_000
        self._sequence = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.url = ""
        app = web.Application(middlewares=[self._gateway])
        app.router.add_post("/sap/bc/idoc_xml", self._idoc_xml)
        app.router.add_post("/sap/bc/srt/idoc", self._srt_idoc)
        app.router.add_post("/sap/bc/soap/rfc", self._soap_rfc)
        controls.add_routes(app.router, self)
        self._server = LocalServer(app)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.url = await self._server.start(host, port)
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._job()), asyncio.create_task(self._audit_job())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
        await self._server.stop()

    # --- configuration ---

    def add_partner(
        self, prn: str, port: str = "SKUFLOW", message_types: Iterable[str] = ("MBGMCR",)
    ) -> None:
        """A WE20 partner profile (type LS) with inbound parameters for ``message_types``,
        reached through port ``port`` (WE21)."""
        self.partners[prn] = (port, frozenset(message_types))

    def add_storage_location(self, werks: str, lgort: str, name: str = "") -> None:
        self.master.storage_locations[werks, lgort] = name or f"Sloc {lgort}"

    def add_material(
        self,
        matnr: str,
        plants: Iterable[str] = (),
        *,
        meins: str = "EA",
        batches: bool = False,
        serial_profile: str = "",
        deleted: bool = False,
    ) -> None:
        """MARA + a MARC row per plant (``matnr`` in internal format: 18 digits with leading
        zeros for a numeric material)."""
        self.master.materials[matnr] = model.Material(matnr, meins, deleted=deleted)
        for werks in plants:
            self.master.plants[matnr, werks] = model.PlantData(
                matnr, werks, batches=batches, serial_profile=serial_profile
            )

    def update_plant_data(self, matnr: str, werks: str, **changes: Any) -> None:
        """Change MARC fields: ``deleted``, ``status`` (MMSTA, non-blank blocks), ``batches``..."""
        plant = self.master.plants[matnr, werks]
        for name, value in changes.items():
            if not hasattr(plant, name):
                raise TypeError(f"unknown plant data field {name!r}")
            setattr(plant, name, value)

    def set_stock(
        self, matnr: str, werks: str, lgort: str, quantity: int | Decimal | str, batch: str = ""
    ) -> None:
        """Book opening stock (unrestricted) outside any material document."""
        place, amount = (matnr, werks, lgort), Decimal(quantity)
        if batch:
            old = self.book.mchb.get((*place, batch), Decimal(0))
            self.book.mchb[(*place, batch)] = amount
            self.book.mard[place] += amount - old
        else:
            self.book.mard[place] = amount

    def add_serials(self, matnr: str, werks: str, lgort: str, *serials: str) -> None:
        for serial in serials:
            self.book.serials[matnr][serial] = (werks, lgort)
        self.book.mard[matnr, werks, lgort] += len(serials)

    def set_faults(self, **changes: Any) -> Faults:
        self.faults = _merge(self.faults, changes)
        return self.faults

    def set_processing(self, **changes: Any) -> Processing:
        self.processing = _merge(self.processing, changes)
        return self.processing

    def set_audit(self, **changes: Any) -> Audit:
        self.audit = _merge(self.audit, changes)
        return self.audit

    # --- inspection ---

    def idoc(self, docnum: str) -> Idoc:
        return self.idocs[docnum]

    def idocs_by_status(self) -> dict[str, list[str]]:
        """Receiver IDoc numbers per current status, each list in arrival order (the live view)."""
        by_status: dict[str, list[str]] = defaultdict(list)
        for entry in sorted(self.idocs.values(), key=lambda i: i.sequence):
            by_status[entry.status].append(entry.docnum)
        return dict(by_status)

    def history(self, matnr: str, werks: str, lgort: str) -> list[Applied]:
        return list(self._history.get((matnr, werks, lgort), ()))

    def stock(self, matnr: str, werks: str, lgort: str, batch: str = "") -> Decimal:
        if batch:
            return self.book.mchb.get((matnr, werks, lgort, batch), Decimal(0))
        return self.book.mard.get((matnr, werks, lgort), Decimal(0))

    def serials(self, matnr: str, werks: str, lgort: str) -> set[str]:
        held = self.book.serials.get(matnr, {})
        return {serial for serial, place in held.items() if place == (werks, lgort)}

    def by_sender(self, sender_docnum: str) -> list[Idoc]:
        return [i for i in self.idocs.values() if i.sender_docnum == sender_docnum]

    async def settle(self, within: float = 5.0) -> None:
        """Wait (polling, bounded) until no IDoc is in 50, 64 or 62 or due to be reprocessed."""
        deadline = time.monotonic() + within
        while self._reprocess or any(i.status not in FINAL for i in self.idocs.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"IDocs still in process: {self.idocs_by_status()}")
            await asyncio.sleep(0.01)

    # --- the gateway: outage, faults, auth, client ---

    @web.middleware
    async def _gateway(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        try:
            response = await self._admit(request) or await handler(request)
        except web.HTTPException as exc:
            response = web.Response(status=exc.status, text=exc.text or exc.reason)
        self.requests.append(
            RecordedRequest(
                request.method, request.path, request.query_string, request.content_type,
                response.status, time.time(),
            )
        )  # fmt: skip
        return response

    async def _admit(self, request: web.Request) -> web.StreamResponse | None:
        faults = self.faults
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.outage_until is not None and datetime.now(UTC) < faults.outage_until:
            return web.Response(status=503, text=OUTAGE_PAGE, content_type="text/html")
        if self._random.random() < faults.error_rate:
            self.counters["errors_500"] += 1
            return web.Response(status=500, text="500 Internal Server Error")
        client = request.query.get("sap-client", self.client)
        if self._user(request) is None or client != self.client:
            self.counters["unauthorised"] += 1
            realm = f'Basic realm="SAP NetWeaver Application Server [{self.sid}]"'
            return web.Response(
                status=401, text="Logon failed", headers={"WWW-Authenticate": realm}
            )
        return None

    def _user(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (
            user
            if (user.upper(), password) == (self._credentials[0].upper(), self._credentials[1])
            else None
        )

    # --- inbound IDocs ---

    async def _idoc_xml(self, request: web.Request) -> web.StreamResponse:
        if request.content_type not in IDOC_CONTENT_TYPES:
            return web.Response(
                status=415, text=f"Content type {request.content_type} not supported"
            )
        try:
            documents = xml.parse_idoc_xml(await request.read())
            self._check_types(documents)
        except IdocXmlError as exc:
            self.counters["rejected_http"] += 1
            return web.Response(status=400, text=str(exc))
        self._store(documents, self._user(request) or "")
        return await self._answer(request, web.Response(status=200))

    async def _srt_idoc(self, request: web.Request) -> web.StreamResponse:
        try:
            documents = xml.parse_idoc_soap(await request.read())
            self._check_types(documents)
        except IdocXmlError as exc:
            self.counters["rejected_http"] += 1
            return _soap(xml.soap_fault("Client", str(exc)), 500)
        stored = self._store(documents, self._user(request) or "")
        body = xml.idoc_assign(stored[-1].docnum, uuid.uuid4().hex.upper()[:24])
        return await self._answer(request, _soap(body, 200))

    def _check_types(self, documents: list[IdocDocument]) -> None:
        for document in documents:
            declared = document.control.get("IDOCTYP", "")
            if document.basic_type not in BASIC_TYPES or declared != document.basic_type:
                raise IdocXmlError(f"Basic type {declared or document.basic_type} is unknown")

    async def _answer(
        self, request: web.Request, response: web.Response, knob: str = "lost_answer"
    ) -> web.StreamResponse:
        """``response``, or — by the ``<knob>_next``/``<knob>_rate`` faults — it is lost."""
        faults = self.faults
        left: int = getattr(faults, f"{knob}_next")
        lost = left > 0 or self._random.random() < getattr(faults, f"{knob}_rate")
        if not lost:
            return response
        self.faults = msgspec.structs.replace(faults, **{f"{knob}_next": max(0, left - 1)})
        self.counters["lost_answers"] += 1
        if faults.lost_answer_mode == "500":
            return web.Response(status=500, text="500 Internal Server Error")
        if request.transport is not None:
            request.transport.abort()  # the IDoc is stored; the sender never hears so
        return response

    def _store(self, documents: list[IdocDocument], user: str) -> list[Idoc]:
        stored = []
        for document in documents:
            self._sequence += 1
            entry = Idoc(self._assign_number(), self._sequence, document, user)
            self.idocs[entry.docnum] = entry
            if entry.arckey:
                self._arckeys[entry.arckey].append(entry.docnum)
            self.counters["received"] += 1
            self._status(entry, "50", ADDED)
            problem = self._syntax_problem(document)
            if problem is not None:
                self._status(entry, "60", *problem, statyp="E")
            elif (profile := self._profile_problem(document)) is not None:
                self._status(entry, "56", *profile, statyp="E")
            else:
                self._status(entry, "64", READY)
                entry.ready_at = time.monotonic()
                self._ready.append(entry)
            stored.append(entry)
        return stored

    def _assign_number(self) -> str:
        buffers = max(1, self.processing.number_buffers)
        while len(self._blocks) < buffers:
            self._blocks.append([])
        block = self._blocks[self._random.randrange(buffers)]
        if not block:
            size = max(1, self.processing.buffer_size) if buffers > 1 else 1
            block.extend(range(self._next_number, self._next_number + size))
            self._next_number += size
        return f"{block.pop(0):016d}"

    def _syntax_problem(self, document: IdocDocument) -> tuple[Message, str, str, str] | None:
        segments = [xml.Segment(xml.CONTROL, document.control)]
        segments += [s for top in document.segments for s in top.walk()]
        for segment in segments:
            for name, limit in LENGTHS.get(segment.name, {}).items():
                if len(segment.get(name)) <= limit:
                    continue
                if self.processing.overlong == "truncate":
                    segment.fields[name] = segment.fields[name][:limit]
                else:
                    return TOO_LONG, name, segment.name, str(limit)
        return None

    def _profile_problem(self, document: IdocDocument) -> tuple[Message, str, str, str] | None:
        control = document.control
        expected = {
            "TABNAM": xml.CONTROL,
            "DIRECT": "2",
            "MESTYP": BASIC_TYPES[document.basic_type],
            "SNDPRT": "LS",
            "RCVPRT": "LS",
            "RCVPRN": self.logical_system,
        }
        for name, value in expected.items():
            if control.get(name, "") != value:
                return BAD_CONTROL, name, control.get(name, ""), ""
        profile = self.partners.get(control.get("SNDPRN", ""))
        mestyp, prn = control["MESTYP"], control.get("SNDPRN", "")
        if profile is None or mestyp not in profile[1]:
            return NO_PROFILE, prn, "LS", mestyp
        if control.get("SNDPOR", "") != profile[0]:
            return BAD_CONTROL, "SNDPOR", control.get("SNDPOR", ""), ""
        return None

    def _status(
        self, entry: Idoc, status: str, message: Message, *values: str, statyp: str = ""
    ) -> None:
        text, stapa = message.format(*values)
        uname = entry.user if status in ("50", "56", "60", "64") else self.processing.job_user
        record = StatusRecord(
            status, text, message.klass, message.number, statyp, stapa, uname, datetime.now(UTC)
        )
        entry.statuses.append(record)
        if status in FINAL:
            entry.final_at = time.monotonic()
            self.counters[f"status_{status}"] += 1
            if status in ("51", "53"):
                self._pending_audit.append(entry)

    # --- application: the background job ---

    async def _job(self) -> None:
        while True:
            await asyncio.sleep(max(0.001, self.processing.tick_ms / 1000))
            try:
                await self.run_job()
            except Exception:
                log.exception("ECC simulator: the IDoc job failed")

    async def run_job(self) -> int:
        """One run of the background job; the number of IDocs it applied."""
        processing = self.processing
        if processing.paused:
            return 0
        now, delay = time.monotonic(), processing.delay_ms / 1000
        again = [entry for due_at, entry in self._reprocess if due_at <= now]
        self._reprocess = [(due_at, entry) for due_at, entry in self._reprocess if due_at > now]
        for entry in again:
            entry.ready_at = now - delay
            self._ready.append(entry)
        due = [entry for entry in self._ready if now - entry.ready_at >= delay]
        if not due:
            return 0
        self._ready = [entry for entry in self._ready if entry not in due]
        if processing.ordering == "random":
            self._random.shuffle(due)
        elif processing.ordering == "reverse":
            due.reverse()
        if processing.ordering == "parallel":
            await asyncio.gather(*(self._apply(entry) for entry in due))
        else:
            for entry in due:
                await self._apply(entry)
        return len(due)

    async def _apply(self, entry: Idoc) -> None:
        self._status(entry, "62", PASSED)
        if entry.document.basic_type == "ORDERS05":
            self._apply_orders(entry)
            return
        keys: set[tuple[str, str]] = set()
        try:
            movement = model.read_goods_movement(
                entry.document,
                self.master,
                inventory_differences=self.processing.inventory_differences,
            )
            keys = movement.plant_keys()
            self._lock(keys)
            try:
                await asyncio.sleep(self.processing.apply_ms / 1000)
                model.check_period(
                    movement.budat, self.faults.open_period, self.master.company_code
                )
                lines = model.plan(movement, self.master, self.book)
                model.apply(lines, self.book)
            finally:
                for key in keys:
                    self._locks.pop(key, None)
        except Rejected as error:
            self._status(entry, "51", error.message, *error.values, statyp="E")
            if error.message is model.LOCKED:
                self.counters["lock_errors"] += 1
                later = self.processing.reprocess_locks_ms
                if later is not None:
                    self._reprocess.append((time.monotonic() + later / 1000, entry))
            return
        document = self._document(entry, movement, lines)
        self._status(entry, "53", model.POSTED, document.mblnr, statyp="S")

    def _apply_orders(self, entry: Idoc) -> None:
        """IDOC_INPUT_ORDERS: a sales order, or 51 with the first error."""
        try:
            order = self.sales.create_order(entry.document, entry.user)
        except Rejected as error:
            self._status(entry, "51", error.message, *error.values, statyp="E")
            return
        entry.sales_document = order.vbeln
        self._status(entry, "53", SAVED, "Standard Order", order.vbeln, statyp="S")

    def _post_goods_movement(
        self, lines: list[model.DocumentLine], xblnr: str, bktxt: str
    ) -> tuple[str, str]:
        """A delivery's goods issue or receipt (601, 651, 653): checked by the caller, applied
        to the stock book as one material document (MKPF-VGART WL); (MBLNR, MJAHR)."""
        model.apply(lines, self.book)
        self._next_mblnr += 1
        now = datetime.now(UTC)
        budat = now.strftime("%Y%m%d")
        document = model.MaterialDocument(
            str(self._next_mblnr), budat[:4], budat, budat, xblnr, bktxt, "", tuple(lines), "",
            posted_at=now, vgart="WL",
        )  # fmt: skip
        self._record(document, "", "")
        return document.mblnr, document.mjahr

    def _record(self, document: model.MaterialDocument, docnum: str, sender: str) -> None:
        self.documents.append(document)
        self._by_mblnr[document.mblnr] = document
        self._by_xblnr[document.xblnr].append(document)
        now = time.time()
        for line in document.lines:
            self._history[line.matnr, line.werks, line.lgort].append(
                Applied(
                    document.mblnr, document.mjahr, line.zeile, line.bwart, line.delta,
                    line.charg, document.xblnr, docnum, sender, now,
                )
            )  # fmt: skip

    def _lock(self, keys: set[tuple[str, str]]) -> None:
        faults, user = self.faults, self.processing.job_user
        if faults.lock_next > 0:
            self.faults = replace_struct(faults, lock_next=faults.lock_next - 1)
            matnr = min(keys)[0] if keys else ""
            raise Rejected(model.LOCKED, matnr.lstrip("0"), user)
        for key in sorted(keys):
            if key in self._locks:
                raise Rejected(model.LOCKED, key[0].lstrip("0"), self._locks[key])
        for key in keys:
            self._locks[key] = user

    def _document(
        self, entry: Idoc, movement: model.GoodsMovement, lines: list[model.DocumentLine]
    ) -> model.MaterialDocument:
        self._next_mblnr += 1
        document = model.MaterialDocument(
            str(self._next_mblnr), movement.budat[:4], movement.budat, movement.bldat,
            movement.xblnr, movement.bktxt, movement.gm_code, tuple(lines), entry.docnum,
        )  # fmt: skip
        entry.material_document = document
        self._record(document, entry.docnum, entry.sender_docnum)
        return document

    # --- SOAP-RFC ---

    async def _soap_rfc(self, request: web.Request) -> web.StreamResponse:
        try:
            call = xml.soap_body(await request.read())
        except IdocXmlError as exc:
            return _soap(xml.soap_fault("Client", str(exc)), 500)
        function = call.tag.rsplit("}", 1)[-1]
        if self.functions.knows(function):
            return await self._wrapper(request, function, call)
        if function != "RFC_READ_TABLE":
            return _soap(xml.soap_fault("Server", "FU_NOT_FOUND"), 500)
        try:
            answer = rfc.read_table(call, self._rows, self.client, SCHEMA, WIDE_TABLES)
        except rfc.RfcException as exc:
            return _soap(xml.soap_fault("Server", exc.name, exc.detail(function)), 500)
        except ValueError:
            bad = rfc.RfcException("OPTION_NOT_VALID", "ROWSKIPS/ROWCOUNT must be numbers")
            return _soap(xml.soap_fault("Server", bad.name, bad.detail(function)), 500)
        self.counters["rfc_calls"] += 1
        return _soap(xml.soap_envelope(answer), 200)

    async def _wrapper(self, request: web.Request, function: str, call: Any) -> web.StreamResponse:
        """A wrapper function module: applied (committed unless it answers an error), then its
        answer — which the lost-answer faults may lose."""
        forced = self.faults.order_lock_next > 0
        if forced:
            self.faults = replace_struct(
                self.faults, order_lock_next=self.faults.order_lock_next - 1
            )
        user = (self._user(request) or "").upper()
        answer = await self.functions.call(function, call, user, forced_lock=forced)
        self.counters["function_calls"] += 1
        return await self._answer(
            request, _soap(xml.soap_envelope(answer), 200), "function_lost_answer"
        )

    def _rows(self, table: str, where: rfc.Where) -> Iterable[rfc.Row]:
        if table in sales_tables.TABLES:
            return sales_tables.rows(table, self.sales, where)
        db = tables.Database(
            self.master, self.book, self.idocs, self.documents, self.processing.job_user,
            self._arckeys, self._by_mblnr, self._by_xblnr,
        )  # fmt: skip
        return tables.rows(table, db, where)

    # --- ALE audit ---

    async def _audit_job(self) -> None:
        while True:
            await asyncio.sleep(max(0.01, self.audit.interval_ms / 1000))
            try:
                await self.send_audit()
            except Exception:
                log.exception("ECC simulator: the audit job failed")

    async def send_audit(self) -> int:
        """One RBDSTATE run: confirm final statuses to the audit URL; how many were sent."""
        audit = self.audit
        if audit.url is None or self._session is None:
            return 0
        now, delay = time.monotonic(), audit.delay_ms / 1000
        due = [entry for entry in self._pending_audit if now - entry.final_at >= delay]
        self._pending_audit = [entry for entry in self._pending_audit if entry not in due]
        by_partner: dict[tuple[str, str], list[Idoc]] = defaultdict(list)
        for entry in due:
            if self._random.random() < audit.drop_rate:
                self.counters["audit_dropped"] += 1
                continue
            if self._random.random() < audit.duplicate_rate:
                self.counters["audit_duplicated"] += 1
                self._pending_audit.append(entry)
            by_partner[entry.partner, entry.control.get("MESTYP", "")].append(entry)
        sent = 0
        for (partner, mestyp), entries in by_partner.items():
            confirmations = [_confirmation(entry) for entry in entries]
            for chunk in xml.chunks(confirmations, audit.max_per_idoc):
                status = await self._deliver(audit, partner, chunk, mestyp)
                if 200 <= status < 300:
                    sent += len(chunk)
                else:  # not delivered: confirmed again next round
                    self._pending_audit.extend(
                        e for e in entries if e.sender_docnum in {c.sender_docnum for c in chunk}
                    )
        self.counters["audit_confirmations"] += sent
        return sent

    async def _deliver(
        self, audit: Audit, partner: str, chunk: list[xml.Confirmation], mestyp: str
    ) -> int:
        assert self._session is not None
        assert audit.url is not None
        docnum = self._assign_number()
        port = self.partners.get(partner, ("", frozenset()))[0]
        control = {
            "MANDT": self.client, "DOCNUM": docnum, "DIRECT": "1", "IDOCTYP": "ALEAUD01",
            "MESTYP": "ALEAUD", "SNDPOR": f"SAP{self.sid}", "SNDPRT": "LS",
            "SNDPRN": self.logical_system, "RCVPOR": port, "RCVPRT": "LS", "RCVPRN": partner,
            "CREDAT": datetime.now(UTC).strftime("%Y%m%d"),
            "CRETIM": datetime.now(UTC).strftime("%H%M%S"),
        }  # fmt: skip
        body = xml.build_idoc_xml("ALEAUD01", control, xml.audit_segments(mestyp, chunk))
        status = 0
        try:
            async with self._session.post(
                audit.url,
                data=body,
                headers={
                    "Content-Type": audit.content_type,
                    "Authorization": aiohttp.encode_basic_auth(audit.user, audit.password),
                },
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        confirmed = tuple(c.sender_docnum for c in chunk)
        self.audits.append(AuditDelivery(docnum, partner, confirmed, status, time.time()))
        return status


SCHEMA = {**rfc.TABLES, **sales_tables.TABLES}
WIDE_TABLES = rfc.WIDE_TABLES | sales_tables.WIDE


def _merge(struct: Any, changes: dict[str, Any]) -> Any:
    return msgspec.convert(
        {**msgspec.structs.asdict(struct), **changes}, type(struct), strict=False
    )


def replace_struct(struct: Faults, **changes: Any) -> Faults:
    return msgspec.structs.replace(struct, **changes)


def _soap(body: bytes, status: int) -> web.Response:
    return web.Response(body=body, status=status, content_type="text/xml", charset="utf-8")


def _confirmation(entry: Idoc) -> xml.Confirmation:
    record = entry.statuses[-1]
    document = entry.material_document
    if entry.sales_document:  # BUS2032: the sales order an ORDERS05 made
        objtype, objkey = "BUS2032", entry.sales_document
    else:
        objtype = "BUS2017" if document else ""
        objkey = f"{document.mblnr}{document.mjahr}" if document else ""
    return xml.Confirmation(
        sender_docnum=entry.sender_docnum,
        receiver_docnum=entry.docnum,
        status=record.status,
        logdat=record.at.strftime("%Y%m%d"),
        logtim=record.at.strftime("%H%M%S"),
        statxt=record.text,
        statyp=record.statyp,
        stamid=record.stamid,
        stamno=record.stamno,
        stapa=record.stapa,
        objtype=objtype,
        objkey=objkey,
    )
