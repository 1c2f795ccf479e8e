r"""SAP Business One Service Layer connector: session, master data, stock documents.

For callers: :meth:`B1Client.get_item` / :meth:`B1Client.get_warehouse` return the master
record or ``None`` (404, ODBC -2028). :meth:`B1Client.post_document` posts a
:class:`StockDocument` as ``InventoryGenEntries`` (``"entry"``, stock in) or
``InventoryGenExits`` (``"exit"``, stock out) and returns its :class:`PostedDocument`. The
document's idempotency ``key`` goes into a queryable header field, ``key_field`` —
``Reference2`` by default (B1's "Ref. 2", NVARCHAR(11), shown on the goods receipt/issue
screen); ``JournalMemo`` (50) or a ``U_`` field for longer keys — and into ``Comments`` as
``skuflow posting <key>``; after a :class:`B1Unavailable` with ``ambiguous`` true,
:meth:`B1Client.find_document` finds the document by that key before anything is posted again.
Other Service Layer calls (the sales documents of :mod:`handlers.connectors.b1.sales`) go through
:meth:`B1Client.read`, :meth:`B1Client.read_all` (following ``odata.nextLink``),
:meth:`B1Client.write` and :meth:`B1Client.find_by_key`, in the same session and with the same
error translation; :func:`odata_string` / :func:`odata_filter` build their queries.
:meth:`B1Client.batch` sends many independent sub requests in one ``$batch`` round trip
(:mod:`handlers.connectors.b1.batch`) and :meth:`B1Client.sub_request_error` translates a sub
request's error answer as the same call alone would be.
Every failure is a :class:`~handlers.connectors.b1.errors.B1Error` (:class:`B1Locked`,
:class:`B1DuplicateEntry` for the ``collision_codes`` (ODBC -2035), :class:`B1Unavailable`,
:class:`B1Rejected` with B1's ``code``/``message``/``line``, :class:`B1AuthError`), never an
aiohttp exception.

Sessions: ``POST /Login`` once; this client's ``B1SESSION``/``ROUTEID`` cookies go with each
request (per request, so a cookie jar shared with other clients never mixes sessions). A 401
(session timed out) logs in again — one login at a time, concurrent callers share its outcome
— and repeats the call once; otherwise the client does not retry (the caller owns backoff). At
most ``max_concurrent_writes`` postings are in flight. The password and the session id are
:class:`~config.settings.Secret`\ s, revealed only into the request that needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import date
from decimal import Decimal
from http.cookies import SimpleCookie
from typing import Literal, NamedTuple, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from config.settings import B1Settings, Secret
from handlers.connectors.b1.batch import (
    BatchAnswer,
    BatchRequest,
    MalformedAnswer,
    batch_answers,
    batch_body,
)
from handlers.connectors.b1.errors import COLLISION_CODES, parse_answer, redact, translate
from handlers.connectors.b1.errors import B1AuthError as B1AuthError
from handlers.connectors.b1.errors import B1DuplicateEntry as B1DuplicateEntry
from handlers.connectors.b1.errors import B1Error as B1Error
from handlers.connectors.b1.errors import B1Locked as B1Locked
from handlers.connectors.b1.errors import B1Rejected as B1Rejected
from handlers.connectors.b1.errors import B1Unavailable as B1Unavailable
from handlers.connectors.http import exchange

log = logging.getLogger("skuflow.b1")

DocumentKind = Literal["entry", "exit", "transfer"]
ENTITY_SETS: dict[DocumentKind, str] = {
    "entry": "InventoryGenEntries", "exit": "InventoryGenExits", "transfer": "StockTransfers",
}  # fmt: skip
COMMENTS_MAX, JOURNAL_MEMO_MAX = 254, 50  # OIGN.Comments, OIGN.JrnlMemo (9.3); longer is refused
#: Header fields that can carry the idempotency key, and how many characters B1 stores (OIGN/
#: OIGE.Ref2 is NVARCHAR(11)); a user-defined field ``U_...`` holds what it was created with.
KEY_FIELDS = {"Reference2": 11, "JournalMemo": JOURNAL_MEMO_MAX}
ITEM_SELECT = (
    "ItemCode,Valid,Frozen,InventoryItem,ManageBatchNumbers,ManageSerialNumbers,"
    "ItemWarehouseInfoCollection"
)
WAREHOUSE_SELECT = "WarehouseCode,WarehouseName,Inactive"
YesNo = Literal["tYES", "tNO"]
T = TypeVar("T")


# --- what callers send and get back ---


class BatchQuantity(msgspec.Struct, frozen=True):
    batch_number: str
    quantity: Decimal


class StockLine(msgspec.Struct, frozen=True, kw_only=True):
    """One ``DocumentLines`` entry; ``quantity`` is positive (the kind says in or out)."""

    item_code: str
    warehouse_code: str
    quantity: Decimal
    batches: tuple[BatchQuantity, ...] = ()
    serial_numbers: tuple[str, ...] = ()
    #: A ``StockTransfers`` line's destination (``warehouse_code`` is then its source).
    to_warehouse_code: str | None = None

    def __post_init__(self) -> None:
        if not self.quantity > 0:
            raise ValueError(f"{self.item_code}: quantity must be > 0, not {self.quantity}")
        if self.batches and sum(b.quantity for b in self.batches) != self.quantity:
            raise ValueError(f"{self.item_code}: batch quantities must add up to the quantity")
        if self.serial_numbers and len(set(self.serial_numbers)) != self.quantity:
            raise ValueError(f"{self.item_code}: one distinct serial number per unit")


class StockDocument(msgspec.Struct, frozen=True, kw_only=True):
    """A goods receipt or issue; its ``key`` must fit the client's ``key_field``."""

    key: str
    lines: tuple[StockLine, ...]
    doc_date: date | None = None  # posting date; B1's default (today) when None
    remarks: str = ""  # appended to "skuflow posting <key>" in Comments, clipped to fit
    journal_memo: str | None = None  # clipped to 50 characters

    def __post_init__(self) -> None:
        if not (0 < len(self.key) <= 100 and self.key.isprintable()):
            raise ValueError(f"key must be 1 to 100 printable characters: {self.key!r}")
        if not self.lines:
            raise ValueError("a document needs at least one line")

    @property
    def comments(self) -> str:
        return tagged_comments(f"skuflow posting {self.key}", self.remarks)


def tagged_comments(tag: str, remarks: str) -> str:
    """``Comments`` carrying ``tag`` (e.g. ``skuflow posting <key>``), then the remarks, clipped
    to what B1 stores; remarks that already start with the tag are not tagged again."""
    if remarks.startswith(tag):
        return remarks[:COMMENTS_MAX]
    return f"{tag}: {remarks}"[:COMMENTS_MAX] if remarks else tag


class PostedDocument(msgspec.Struct, frozen=True, rename="pascal"):
    doc_entry: int
    doc_num: int


class ItemMaster(msgspec.Struct, frozen=True, kw_only=True):
    item_code: str
    valid: bool
    frozen: bool
    inventory_item: bool
    manage_batches: bool
    manage_serials: bool
    in_stock: dict[str, Decimal]  # warehouse code -> InStock

    @property
    def active(self) -> bool:
        return self.valid and not self.frozen


class WarehouseMaster(msgspec.Struct, frozen=True, kw_only=True):
    warehouse_code: str
    name: str
    inactive: bool


class WriteStatistics(msgspec.Struct, frozen=True):
    limit: int
    in_flight: int
    peak: int  # most postings ever in flight at once


# --- Service Layer's JSON ---


class _Session(msgspec.Struct):
    SessionId: str
    SessionTimeout: int | None = None


class _Stock(msgspec.Struct, rename="pascal"):
    warehouse_code: str
    in_stock: Decimal = Decimal(0)


class _Item(msgspec.Struct, rename="pascal"):
    item_code: str
    valid: YesNo = "tYES"
    frozen: YesNo = "tNO"
    inventory_item: YesNo = "tYES"
    manage_batch_numbers: YesNo = "tNO"
    manage_serial_numbers: YesNo = "tNO"
    item_warehouse_info_collection: list[_Stock] = []


class _Warehouse(msgspec.Struct, rename="pascal"):
    warehouse_code: str
    warehouse_name: str = ""
    inactive: YesNo = "tNO"


class _Documents(msgspec.Struct):
    value: list[PostedDocument]


class _Page(msgspec.Struct):
    value: list[msgspec.Raw]
    next_link: str | None = msgspec.field(default=None, name="odata.nextLink")


_ENCODE = msgspec.json.Encoder(decimal_format="number").encode


class _Answer(NamedTuple):
    status: int
    body: bytes
    cookies: SimpleCookie
    content_type: str = ""


# --- the client ---


class B1Client:
    """Service Layer calls over one shared aiohttp session; see the module docstring."""

    def __init__(
        self,
        url: str,
        company: str,
        user: str,
        password: Secret,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 30.0,
        verify_tls: bool = True,
        max_concurrent_writes: int = 2,
        key_field: str = "Reference2",
        collision_codes: Collection[int] = COLLISION_CODES,
    ) -> None:
        if max_concurrent_writes < 1:
            raise ValueError("max_concurrent_writes must be >= 1")
        if key_field not in KEY_FIELDS and not key_field.startswith("U_"):
            raise ValueError(f"key_field must be one of {sorted(KEY_FIELDS)} or a U_ field")
        self.key_field = key_field
        self._collision_codes = frozenset(collision_codes)
        self._key_max = KEY_FIELDS.get(key_field, COMMENTS_MAX)
        self._url, self._company, self._user = url.rstrip("/"), company, user
        self._password, self._session, self._timeout = password, session, timeout
        self._ssl = verify_tls
        self._cookies: dict[str, Secret] | None = None  # B1SESSION, ROUTEID of this client
        self._login_lock = asyncio.Lock()
        self._failure: tuple[int, B1Error] | None = None
        self._writes = asyncio.Semaphore(max_concurrent_writes)
        self._limit, self._in_flight, self._peak = max_concurrent_writes, 0, 0
        self.logins = 0  # login requests sent
        self.session_timeout: int | None = None  # minutes, as the last login reported

    def __repr__(self) -> str:
        return f"B1Client(url={self._url!r}, company={self._company!r}, user={self._user!r})"

    # --- session ---

    async def login(self) -> None:
        """Open a session now (otherwise the first call does)."""
        await self._session_cookies()

    async def logout(self) -> None:
        """End the session, if any; best effort (a failed logout is logged, not raised)."""
        cookies, self._cookies = self._cookies, None
        if cookies is None:
            return
        try:
            answer = await self._send("POST", "/Logout", None, cookies, "Logout", write=False)
        except B1Unavailable as exc:
            log.warning("B1 logout failed: %s", exc)
            return
        if answer.status >= 300:
            log.warning("B1 logout answered HTTP %d", answer.status)

    async def _session_cookies(self) -> dict[str, Secret]:
        cookies = self._cookies
        if cookies is not None:
            return cookies
        seen = self.logins - 1 if self._login_lock.locked() else self.logins  # one in flight?
        async with self._login_lock:
            if self._cookies is not None:
                return self._cookies
            if self._failure is not None and self._failure[0] > seen:
                raise self._failure[1]  # it failed while we queued: share the outcome
            self.logins += 1
            try:
                cookies = await self._login()
            except B1Error as exc:
                self._failure = (self.logins, exc)
                raise
            self._failure, self._cookies = None, cookies
            return cookies

    async def _login(self) -> dict[str, Secret]:
        password = self._password.reveal()
        body = _ENCODE({"CompanyDB": self._company, "UserName": self._user, "Password": password})
        answer = await self._send("POST", "/Login", body, {}, "Login", write=False)
        if answer.status == 200:
            try:
                session = msgspec.json.decode(answer.body, type=_Session)
            except msgspec.MsgspecError:
                reason = "malformed login answer"
                raise B1Unavailable(reason, ambiguous=False, operation="Login") from None
            cookies = {name: Secret(morsel.value) for name, morsel in answer.cookies.items()}
            cookies.setdefault("B1SESSION", Secret(session.SessionId))
            self.session_timeout = session.SessionTimeout
            log.info("B1 session opened for %s on %s", self._user, self._company)
            return {k: v for k, v in cookies.items() if k in ("B1SESSION", "ROUTEID")}
        code, message = parse_answer(answer.body)
        if 400 <= answer.status < 500 and answer.status not in (408, 429):
            reason = f"login of {self._user} to {self._company} refused (code {code}): {message}"
            raise B1AuthError(redact(reason, password), operation="Login")
        reason = redact(f"HTTP {answer.status}: {message}", password)
        raise B1Unavailable(reason, ambiguous=False, operation="Login", status=answer.status)

    # --- master data ---

    async def get_item(self, code: str) -> ItemMaster | None:
        path = f"/Items({_literal(code)})?$select={ITEM_SELECT}"
        item = await self.read(path, _Item, operation="Items", missing_ok=True)
        if item is None:
            return None
        return ItemMaster(
            item_code=item.item_code,
            valid=item.valid == "tYES",
            frozen=item.frozen == "tYES",
            inventory_item=item.inventory_item == "tYES",
            manage_batches=item.manage_batch_numbers == "tYES",
            manage_serials=item.manage_serial_numbers == "tYES",
            in_stock={s.warehouse_code: s.in_stock for s in item.item_warehouse_info_collection},
        )

    async def get_warehouse(self, code: str) -> WarehouseMaster | None:
        path = f"/Warehouses({_literal(code)})?$select={WAREHOUSE_SELECT}"
        found = await self.read(path, _Warehouse, operation="Warehouses", missing_ok=True)
        if found is None:
            return None
        return WarehouseMaster(
            warehouse_code=found.warehouse_code,
            name=found.warehouse_name,
            inactive=found.inactive == "tYES",
        )

    # --- stock documents ---

    async def post_document(self, kind: DocumentKind, document: StockDocument) -> PostedDocument:
        entity = ENTITY_SETS[kind]
        codes, body = [line.item_code for line in document.lines], self._body(document, kind)
        async with self._write_slot():
            return await self.create(entity, body, codes=codes)

    async def find_document(self, kind: DocumentKind, key: str) -> PostedDocument | None:
        """The document posted with idempotency ``key`` (the first, should there be several)."""
        return await self.find_by_key(ENTITY_SETS[kind], self.key_field, key)

    async def find_by_key(self, entity: str, field: str, key: str) -> PostedDocument | None:
        """The ``entity`` document whose header ``field`` is ``key`` (the first, should there
        be several — logged, as a duplicate is never meant to exist)."""
        where = odata_filter(f"{field} eq {odata_string(key)}")
        path = f"/{entity}?$filter={where}&$select=DocEntry,DocNum"
        found = await self.read_all(path, PostedDocument, operation=entity)
        if len(found) > 1:
            log.error("B1 holds %d %s documents with key %s", len(found), entity, key)
        return min(found, key=lambda doc: doc.doc_entry) if found else None

    def _body(self, document: StockDocument, kind: DocumentKind = "entry") -> bytes:
        if len(document.key) > self._key_max:
            reason = f"{self.key_field} holds {self._key_max} characters"
            raise ValueError(f"key {document.key!r} does not fit: {reason}")
        return _body(document, self.key_field, transfer=kind == "transfer")

    def write_statistics(self) -> WriteStatistics:
        return WriteStatistics(self._limit, self._in_flight, self._peak)

    @contextlib.asynccontextmanager
    async def _write_slot(self) -> AsyncIterator[None]:
        async with self._writes:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            try:
                yield
            finally:
                self._in_flight -= 1

    # --- any Service Layer call, in this session ---

    async def read(
        self, path: str, kind: type[T], *, operation: str, missing_ok: bool = False
    ) -> T | None:
        """GET ``path`` (after the ``/b1s/v1`` root, query URL-encoded) decoded as ``kind``;
        ``None`` for a 404 when ``missing_ok``."""
        answer = await self._call("GET", path, operation=operation, missing_ok=missing_ok)
        if answer.status == 404:
            return None
        return _decode(answer.body, kind, operation)

    async def read_all(self, path: str, kind: type[T], *, operation: str) -> list[T]:
        """Every row of a collection GET, page after page (``odata.nextLink``)."""
        rows: list[T] = []
        next_path: str | None = path
        while next_path is not None:
            answer = await self._call("GET", next_path, operation=operation)
            page = _decode(answer.body, _Page, operation)
            rows += [_decode(raw, kind, operation) for raw in page.value]
            next_path = None if page.next_link is None else self._next_path(page.next_link)
        return rows

    async def write(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        operation: str,
        codes: Sequence[str] = (),
    ) -> bytes:
        """A write (POST, PATCH, DELETE, an action): its 2xx answer's body. ``codes``: the
        item code of each document line, so a rejection naming an item names its line. An
        unclear outcome is :class:`B1Unavailable` with ``ambiguous`` true."""
        answer = await self._call(method, path, body, operation=operation, write=True,
                                  codes=list(codes))  # fmt: skip
        return answer.body

    async def create(
        self, entity: str, body: bytes, *, codes: Sequence[str] = ()
    ) -> PostedDocument:
        """POST a document to ``entity``: its ``DocEntry``/``DocNum``. A 2xx answer that cannot
        be read is ambiguous (a document was created; which one, we cannot tell)."""
        answer = await self.write("POST", f"/{entity}", body, operation=entity, codes=codes)
        try:
            return msgspec.json.decode(answer, type=PostedDocument)
        except msgspec.MsgspecError:
            reason = "malformed answer to a posting"
            raise B1Unavailable(reason, ambiguous=True, operation=entity) from None

    async def batch(self, requests: Sequence[BatchRequest]) -> list[BatchAnswer]:
        """``requests`` as independent sub requests of one ``$batch`` round trip: the answer
        of each sub request B1 executed, in order — at least one; fewer than ``requests`` when
        B1 stopped at a failed one (the rest were not executed). A failure of the batch itself
        is raised as for a write: a lost or unreadable answer is ambiguous for every sub
        request."""
        if not requests:
            return []
        boundary = f"batch_{uuid.uuid4()}"
        body = batch_body(boundary, URL(self._url).path, requests)
        write = any(request.method != "GET" for request in requests)
        answer = await self._call("POST", "/$batch", body, operation="$batch", write=write,
                                  content_type=f"multipart/mixed;boundary={boundary}")  # fmt: skip
        try:
            answers = batch_answers(answer.content_type, answer.body)
        except MalformedAnswer as exc:
            reason = f"malformed answer to a batch: {exc}"
            raise B1Unavailable(reason, ambiguous=write, operation="$batch") from None
        if not 0 < len(answers) <= len(requests):
            reason = f"{len(answers)} answers to a batch of {len(requests)}"
            raise B1Unavailable(reason, ambiguous=write, operation="$batch")
        return answers

    def sub_request_error(self, request: BatchRequest, answer: BatchAnswer) -> B1Error:
        """The error a sub request's answer says, as :meth:`write` would raise it."""
        return translate(
            request.operation,
            answer.status,
            answer.body,
            write=request.method != "GET",
            item_codes=request.codes,
            collision_codes=self._collision_codes,
        )

    def _next_path(self, link: str) -> str:
        """``odata.nextLink`` (relative to the root, absolute-path or a full URL) as a path
        after the root."""
        root = URL(self._url)
        if link.startswith(("http://", "https://")):
            full = link
        elif link.startswith("/"):
            full = str(root.origin()) + link
        else:
            full = f"{self._url}/{link}"
        if not full.startswith(self._url + "/"):
            reason = f"a next page outside the Service Layer root: {link[:100]!r}"
            raise B1Unavailable(reason, ambiguous=False, operation="nextLink")
        return full[len(self._url) :]

    # --- transport ---

    async def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        operation: str,
        write: bool = False,
        codes: list[str] | None = None,
        missing_ok: bool = False,
        content_type: str = "application/json",
    ) -> _Answer:
        """One call in this client's session (renewed once on a 401): a 2xx answer, or a 404
        when ``missing_ok``; anything else raised as its :class:`B1Error`."""
        renewed = False
        while True:
            cookies = await self._session_cookies()
            answer = await self._send(method, path, body, cookies, operation, write=write,
                                      content_type=content_type)  # fmt: skip
            if answer.status == 401 and not renewed:  # timed out or logged out: never applied
                log.info("B1 session expired; logging in again")
                renewed = True
                if self._cookies is cookies:
                    self._cookies = None
                continue
            if 200 <= answer.status < 300 or (answer.status == 404 and missing_ok):
                return answer
            if answer.status == 401:
                reason = f"{operation}: a fresh session was refused (HTTP 401)"
                raise B1AuthError(reason, operation=operation)
            status, raw = answer.status, answer.body
            raise translate(
                operation,
                status,
                raw,
                write=write,
                item_codes=codes or [],
                collision_codes=self._collision_codes,
            )

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        cookies: dict[str, Secret],
        operation: str,
        *,
        write: bool,
        content_type: str = "application/json",
    ) -> _Answer:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self._session.request(
            method,
            URL(self._url + path, encoded=True),
            data=body,
            headers=headers,
            cookies={name: value.reveal() for name, value in cookies.items()},
            ssl=self._ssl,
            allow_redirects=False,
        )
        answer = await exchange(
            request, self._timeout, write=write,
            unavailable=lambda reason, ambiguous: B1Unavailable(
                reason, ambiguous=ambiguous, operation=operation
            ),
        )  # fmt: skip
        content = answer.headers.get("Content-Type", "")
        return _Answer(answer.status, answer.body, answer.cookies, content)


def _literal(value: str) -> str:
    """An OData string literal, percent-encoded for a URL path: ``O'Brien`` → ``'O''Brien'``."""
    return "'" + quote(value.replace("'", "''"), safe="'") + "'"


def odata_string(value: str) -> str:
    """An OData string literal, not yet URL-encoded: ``O'Brien`` → ``'O''Brien'``."""
    return "'" + value.replace("'", "''") + "'"


def odata_filter(expression: str) -> str:
    """A ``$filter`` expression percent-encoded (once) for the query string."""
    return quote(expression, safe="'()")


def _decode(raw: bytes | msgspec.Raw, kind: type[T], operation: str) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.MsgspecError as exc:
        reason = f"malformed answer: {exc}"
        raise B1Unavailable(reason, ambiguous=False, operation=operation) from None


def _body(document: StockDocument, key_field: str, *, transfer: bool = False) -> bytes:
    """A goods receipt / issue (``DocumentLines``), or a ``StockTransfer``
    (``StockTransferLines``: ``FromWarehouseCode`` the source, ``WarehouseCode`` the
    destination; the header's ``FromWarehouse``/``ToWarehouse`` are the first line's)."""
    lines = []
    for line in document.lines:
        entry: dict[str, object] = {"ItemCode": line.item_code, "Quantity": line.quantity}
        if transfer:
            if line.to_warehouse_code is None:
                raise ValueError(f"{line.item_code}: a transfer line needs its destination")
            entry["FromWarehouseCode"] = line.warehouse_code
            entry["WarehouseCode"] = line.to_warehouse_code
        else:
            entry["WarehouseCode"] = line.warehouse_code
        lines.append(entry | batches_and_serials(line.batches, line.serial_numbers))
    header: dict[str, object] = {key_field: document.key, "Comments": document.comments}
    if document.doc_date is not None:
        header["DocDate"] = document.doc_date.isoformat()
    if document.journal_memo:
        header["JournalMemo"] = document.journal_memo[:JOURNAL_MEMO_MAX]
    if transfer:
        first = document.lines[0]
        header["FromWarehouse"] = first.warehouse_code
        header["ToWarehouse"] = first.to_warehouse_code
        return _ENCODE({**header, "StockTransferLines": lines})
    return _ENCODE({**header, "DocumentLines": lines})


def batches_and_serials(
    batches: Sequence[BatchQuantity], serial_numbers: Sequence[str]
) -> dict[str, object]:
    """A document line's ``BatchNumbers`` / ``SerialNumbers``, when it has any."""
    entry: dict[str, object] = {}
    if batches:
        entry["BatchNumbers"] = [
            {"BatchNumber": b.batch_number, "Quantity": b.quantity} for b in batches
        ]
    if serial_numbers:
        entry["SerialNumbers"] = [
            {"InternalSerialNumber": number, "Quantity": 1} for number in serial_numbers
        ]
    return entry


def b1_client_from_settings(
    settings: B1Settings,
    session: aiohttp.ClientSession,
    *,
    max_concurrent_writes: int = 2,
    key_field: str = "Reference2",
) -> B1Client:
    """The process's client from ``[b1]`` settings; the password must be set."""
    if settings.password is None or not settings.password.reveal():
        raise B1AuthError("b1.password must be set", operation="Login")
    return B1Client(
        settings.url,
        settings.company,
        settings.user,
        settings.password,
        session,
        timeout=settings.timeout_seconds,
        verify_tls=settings.verify_tls,
        max_concurrent_writes=max_concurrent_writes,
        key_field=key_field,
        collision_codes=settings.collision_codes,
    )
