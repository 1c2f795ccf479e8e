"""A protocol-faithful SAP Business One Service Layer (``/b1s/v1``, OData v3) on aiohttp.

``POST /Login`` (``CompanyDB``/``UserName``/``Password``) answers ``SessionId``, ``Version``,
``SessionTimeout`` and sets ``B1SESSION`` (``HttpOnly``, no path, as Service Layer sends it) and
``ROUTEID`` (``path=/b1s``, the load balancer's); ``POST /Logout`` answers 204. A session idles
out after ``SessionTimeout`` minutes: then 401, code 301. ``Items`` (with
``ItemWarehouseInfoCollection``), ``Warehouses``, ``InventoryGenEntries``/``InventoryGenExits``
(lines in ``DocumentLines``) and ``StockTransfers`` (lines in ``StockTransferLines``, each moving
its quantity, batches and serials from ``FromWarehouseCode`` to ``WarehouseCode``, defaulted from
the header's ``FromWarehouse``/``ToWarehouse`` [UNCONF]): GET by key (404, -2028), GET a
collection (``$filter`` of ``eq`` with ``and``/``or``/parentheses, ``$select``, ``$top``,
``$skip``, pages of 20 with ``odata.nextLink``), POST → 201 with ``DocEntry``/``DocNum``
(numbered per entity), or with ``Prefer: return-no-content`` 204 with ``Location``
(``/b1s/v1/<Entity>(<DocEntry>)``) and ``Preference-Applied``. A posting moves stock only if
every line passes :mod:`devstack.sims.b1.model`, else B1's error; one touching an item that
another touched less than ``conflict_window_ms`` ago, or still in flight, gets ODBC -2039.

Sales documents (:mod:`devstack.sims.b1.sales`, which lists their rules, knobs and hooks):
``BusinessPartners``, ``Orders`` (actions ``Orders(n)/Cancel``, ``/Close``), ``Drafts``
(``DELETE Drafts(n)``; ``POST DraftsService_SaveDraftToDocument``), ``DeliveryNotes``,
``Invoices``, ``Returns``, ``CreditNotes``; hooks on ``sim.sales``.

Every fault knob below applies to every write alike — the stock documents, the sales documents,
the order actions and the draft services; the items a write holds and touches are those of its
lines (a based line's: its base line's item; an action's: the order's).

Hooks: ``add_item``/``update_item``/``add_warehouse``/``add_batch``/``add_serials``;
``set_faults`` (``latency_ms``; ``error_rate`` → 500; ``outage_until`` → 503 from the load
balancer; ``lock_storm_rate`` → share of postings refused with -2039; ``conflict_window_ms``;
``timeout_after_apply_ms``/``_rate`` → applied, answered that much later; ``post_ms`` → a
posting holds its items that long, as B1's transaction does; the -2035 knobs below;
``batch_max_parts``, ``batch_continue_on_error``: see ``$batch`` below);
``expire_sessions``;
records ``requests``, ``documents``, ``stock()`` — over HTTP ``GET /_sim/requests|documents|
stock|faults|sales-rules``, ``POST /_sim/faults``, ``POST /_sim/expire-sessions``, and the sales
controls ``POST /_sim/customers``, ``/_sim/tax-codes``, ``/_sim/sales-rules``,
``/_sim/orders/{n}/confirmed``, ``/_sim/drafts/{n}/approve|reject``. ``documents`` holds every
document created (stock and sales, drafts included) as it was answered then. Login passwords are
recorded as ``***``.

``POST /$batch`` (:mod:`devstack.sims.b1.batch`: the wire format, the order of execution, change
sets all or nothing, the batch stopped at its first failure): each sub request is served as it
would be alone, in the batch's session — every fault knob but the door's (latency, the outage's
503 and the session hit the batch as one request; ``error_rate``'s 500s hit each sub request),
locks, the -2035 knobs, drafts, ``Prefer: return-no-content``; a 201 carries ``Location`` as in
the manual's batch answer (p.86). Sub requests of one batch never fight over an item (one
session, one after another); other requests still do. More than ``batch_max_parts`` sub
requests (100 [UNCONF]), Login/Logout/$batch as sub requests and a malformed body are refused
with 400, code -1000. ``requests`` records each sub request, then the batch (operation
``$batch``), with the batch's number (``batch``; 0 for a request alone); ``batches`` counts them.

ODBC -2035 "This entry already exists in the following tables" is B1's duplicate-key error on
insert. How B1 comes to answer it while posting stock documents is not documented; this is
*our model* of it, in three knobs: ``collision_count`` (the next N postings) and
``collision_until`` (every posting until then) are refused with -2035 and write nothing — a
collision with a concurrent write on a numbering or log row, gone when retried;
``collision_after_apply`` (the next N postings) are applied and then answered -2035 — a
request replayed after its first run committed, so the answer hides that the document exists;
``unique_key_field`` (e.g. ``"JournalMemo"``) makes that header field unique, so a posting
repeating an existing document's value is answered -2035 instead of creating a second
document — a database where the posting key is protected by a unique index. ``collisions``
counts the -2035 answers.
"""

from __future__ import annotations

import asyncio
import copy
import math
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode

import msgspec
from aiohttp import web
from yarl import URL

from devstack.sims.b1 import batch, model, sales
from devstack.sims.http import LocalServer

PREFIX = "/b1s/v1"
VERSION = "1000190"  # a 10.0 release, in the form Service Layer reports it
PAGE_SIZE = 20  # Service Layer's default page size
OUTAGE_PAGE = "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>"  # noqa: E501
BATCH = "$batch"
_BATCH_NUMBER = web.RequestKey("batch", int)  # the number of the $batch a request is
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Faults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    latency_ms: float = 0.0
    error_rate: float = 0.0  # share of calls answered 500
    outage_until: Annotated[datetime, msgspec.Meta(tz=True)] | None = None  # 503 until then
    lock_storm_rate: float = 0.0  # share of postings refused with ODBC -2039
    conflict_window_ms: float = 50.0  # postings touching one item closer than this → -2039
    timeout_after_apply_ms: float = 0.0  # apply a posting, then answer this much later ...
    timeout_after_apply_rate: float = 1.0  # ... for this share of postings
    post_ms: float = 0.0  # a posting holds its items this long (B1's transaction) before applying
    collision_count: int = 0  # the next N postings refused with ODBC -2035, nothing written
    collision_until: Annotated[datetime, msgspec.Meta(tz=True)] | None = None  # -2035 until then
    collision_after_apply: int = 0  # the next N postings applied, then answered -2035
    unique_key_field: str | None = None  # a posting repeating this field's value → -2035
    batch_max_parts: int = 100  # sub requests a $batch may hold [UNCONF]; more → 400
    batch_continue_on_error: bool = False  # B1 stops a batch at a failed part (manual p.86)


class CustomerChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /_sim/customers``: a customer to add, or the fields of one to change."""

    code: str
    name: str | msgspec.UnsetType = msgspec.UNSET
    credit_limit: Decimal | msgspec.UnsetType = msgspec.UNSET
    frozen: bool | msgspec.UnsetType = msgspec.UNSET
    credit_hold: bool | msgspec.UnsetType = msgspec.UNSET
    approval: bool | msgspec.UnsetType = msgspec.UNSET
    approval_above: Decimal | msgspec.UnsetType | None = msgspec.UNSET


class RecordedRequest(msgspec.Struct, frozen=True):
    method: str
    path: str
    query: str
    operation: str  # "Login", "Items", "InventoryGenExits", "Orders", ... or "" for an unknown path
    body: Any
    status: int
    batch: int = 0  # the $batch (1, 2, ...) a sub request came in; its record has it too
    at: float = msgspec.field(default_factory=time.time)


@dataclass(frozen=True)
class Call:
    """One Service Layer request as a handler reads it: alone, or a sub request of ``batch``.
    ``route``: the route's name (``Orders.post``); ``operation`` its entity or service."""

    route: str
    match: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    batch: batch.Run | None = None

    @property
    def operation(self) -> str:
        return self.route.split(".")[0]


_CallHandler = Callable[[Call], Awaitable[web.Response]]


class B1Simulator:
    def __init__(
        self,
        company: str = "SBODEMO",
        user: str = "manager",
        password: str = "skuflow-dev-b1-password",
        session_timeout_minutes: float = 30.0,
        *,
        seed: int | None = None,
    ) -> None:
        self._credentials = (company, user, password)
        self.session_timeout_minutes = session_timeout_minutes
        self._random = random.Random(seed)
        self._sessions: dict[str, float] = {}  # B1SESSION -> monotonic time of last use
        self._items: dict[str, model.Item] = {}
        self._warehouses: dict[str, model.Warehouse] = {}
        self._book = model.StockBook()
        self._faults = Faults()
        #: item -> (monotonic time of its last posting, the batch it came in or 0)
        self._touched: dict[str, tuple[float, int]] = {}
        self._holding: Counter[str] = Counter()  # items of postings still being answered
        self._next: dict[str, int] = dict.fromkeys(model.ENTITIES, 1)
        self.logins = 0
        self.requests: list[RecordedRequest] = []  # every call but /_sim, in arrival order
        #: Postings refused because another one still held one of their items (a lock fight).
        self.held_conflicts = 0
        self.collisions = 0  # postings answered ODBC -2035 (see the module docstring)
        self.documents: list[model.SimDocument] = []  # every posted document, in posting order
        #: Customers, orders, drafts, deliveries, invoices, returns, credit notes, their hooks.
        self.sales = sales.SalesBook(self._items, self._warehouses, self._book, self.documents)
        self.url = ""
        #: The routes a request alone or a sub request of a batch reaches: (method, path
        #: pattern under /b1s/v1, route name, handler).
        self._routes: list[tuple[str, re.Pattern[str], str, _CallHandler]] = []
        self._transaction = asyncio.Lock()  # held by a change set: other writes wait for it
        self.batches = 0  # $batch requests served
        app = web.Application(middlewares=[self._gateway])
        router = app.router
        router.add_post(f"{PREFIX}/Login", self._login, name="Login")
        router.add_post(f"{PREFIX}/Logout", self._logout, name="Logout")
        router.add_post(f"{PREFIX}/$batch", self._batch, name="batch")
        readable = ("Items", "Warehouses", "BusinessPartners", *model.ENTITIES, *sales.ENTITIES)
        for entity in readable:
            self._route(router, "GET", f"/{entity}", self._collection, entity)
            self._route(router, "GET", f"/{entity}({{key}})", self._entity, f"{entity}.key")
        for entity in (*model.ENTITIES, *sales.POSTABLE):
            self._route(router, "POST", f"/{entity}", self._post, f"{entity}.post")
        actions = "/Orders({key})/{action:Cancel|Close}"
        self._route(router, "POST", actions, self._order_action, "Orders.action")
        self._route(router, "DELETE", "/Drafts({key})", self._delete_draft, "Drafts.delete")
        service = "DraftsService_SaveDraftToDocument"
        self._route(router, "POST", f"/{service}", self._save_draft, service)
        router.add_get("/_sim/{record:requests|documents|stock|faults|sales-rules}", self._inspect)
        router.add_post("/_sim/faults", self._post_faults, name="sim.faults")
        router.add_post("/_sim/expire-sessions", self._post_expire, name="sim.expire")
        router.add_post("/_sim/customers", self._post_customer, name="sim.customers")
        router.add_post("/_sim/tax-codes", self._post_tax_code, name="sim.tax")
        router.add_post("/_sim/sales-rules", self._post_sales_rules, name="sim.rules")
        confirm = "/_sim/orders/{entry:\\d+}/confirmed"
        router.add_post(confirm, self._post_confirmed, name="sim.confirmed")
        decide = "/_sim/drafts/{entry:\\d+}/{action:approve|reject}"
        router.add_post(decide, self._post_draft_decision, name="sim.drafts")
        self._server = LocalServer(app)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.url = await self._server.start(host, port) + PREFIX

    async def stop(self) -> None:
        await self._server.stop()

    # --- master data and stock ---

    def add_warehouse(self, code: str, name: str | None = None) -> None:
        self._warehouses[code] = model.Warehouse(code, name or f"Warehouse {code}")

    def add_item(
        self,
        code: str,
        *,
        name: str | None = None,
        valid: bool = True,
        frozen: bool = False,
        inventory: bool = True,
        batches: bool = False,
        serials: bool = False,
        stock: Mapping[str, int | Decimal] | None = None,
    ) -> None:
        """Add an item; ``stock`` per warehouse is booked under batch ``<code>-OPEN`` for a
        batch-managed item and as serials ``<code>-S<n>`` for a serial-managed one."""
        flags = (valid, frozen, inventory, batches, serials)
        self._items[code] = model.Item(code, name or f"Item {code}", *flags)
        for warehouse, quantity in (stock or {}).items():
            if warehouse not in self._warehouses:
                self.add_warehouse(warehouse)
            if batches:
                self.add_batch(code, warehouse, f"{code}-OPEN", quantity)
            elif serials:
                self.add_serials(code, warehouse, *(f"{code}-S{n}" for n in range(int(quantity))))
            else:
                self._book.on_hand[code, warehouse] += Decimal(quantity)

    def update_item(self, code: str, **changes: bool) -> None:
        """Change master data flags (``valid``, ``frozen``, ``inventory``, ...) of an item."""
        for name, value in changes.items():
            if not hasattr(self._items[code], name):
                raise TypeError(f"unknown item field {name!r}")
            setattr(self._items[code], name, value)

    def add_batch(self, item: str, warehouse: str, batch: str, quantity: int | Decimal) -> None:
        self._book.batches[item, warehouse, batch] += Decimal(quantity)
        self._book.on_hand[item, warehouse] += Decimal(quantity)

    def add_serials(self, item: str, warehouse: str, *numbers: str) -> None:
        self._book.serials[item, warehouse].update(numbers)
        self._book.on_hand[item, warehouse] += len(numbers)

    def stock(self, item: str, warehouse: str) -> Decimal:
        return self._book.on_hand.get((item, warehouse), Decimal(0))

    def batch_stock(self, item: str, warehouse: str, batch: str) -> Decimal:
        return self._book.batches.get((item, warehouse, batch), Decimal(0))

    def serials(self, item: str, warehouse: str) -> set[str]:
        return set(self._book.serials.get((item, warehouse), set()))

    # --- knobs ---

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change some knobs, keep the others."""
        self._faults = model.with_changes(self._faults, changes)
        return self._faults

    def expire_sessions(self) -> None:
        """Every session opened so far times out now: its next call gets 401 (code 301)."""
        self._sessions.clear()

    @property
    def active_sessions(self) -> int:
        return sum(1 for sid in list(self._sessions) if self._live(sid))

    # --- the gateway: record, faults, sessions ---

    @web.middleware
    async def _gateway(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        name = request.match_info.route.name or ""
        operation = BATCH if name == "batch" else name.split(".")[0]
        if operation == "sim" or request.path.startswith("/_sim/"):
            return await handler(request)
        raw = await request.read()
        response: web.StreamResponse | None
        try:
            response = await self._admit(request, operation)
            if response is None:
                response = await handler(request)
        except model.SLError as error:
            response = error.response
        except web.HTTPException as exc:  # unknown path or method
            response = _unknown(request.path, exc.status).response
        body = None if operation == BATCH else model.loggable(operation, raw)
        self._record(request.method, request.rel_url, operation, body, response.status,
                     request.get(_BATCH_NUMBER, 0))  # fmt: skip
        return response

    def _record(
        self, method: str, url: URL, operation: str, body: Any, status: int, batch: int
    ) -> None:
        path, query = url.path, url.query_string
        self.requests.append(RecordedRequest(method, path, query, operation, body, status, batch))

    async def _admit(self, request: web.Request, operation: str) -> web.Response | None:
        """The door every request passes (a batch once, as one request): latency, the load
        balancer's 503 in an outage, the session; the 500s of ``error_rate`` hit operations,
        so a batch's sub requests each instead of the batch."""
        faults = self._faults
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.outage_until is not None and datetime.now(UTC) < faults.outage_until:
            return web.Response(status=503, text=OUTAGE_PAGE, content_type="text/html")
        if operation != BATCH:
            self._internal_error()
        if operation != "Login" and not self._live(request.cookies.get("B1SESSION", "")):
            raise model.SLError.of(401, model.INVALID_SESSION)
        return None

    def _internal_error(self) -> None:
        if self._random.random() < self._faults.error_rate:
            raise model.SLError(500, -1, "Internal error (-1) occurred")

    def _live(self, sid: str) -> bool:
        now, last_used = time.monotonic(), self._sessions.get(sid)
        if last_used is None or now - last_used > self.session_timeout_minutes * 60:
            self._sessions.pop(sid, None)
            return False
        self._sessions[sid] = now
        return True

    # --- $batch ---

    def _route(
        self, router: web.UrlDispatcher, method: str, path: str, handler: _CallHandler, name: str
    ) -> None:
        """A route under ``/b1s/v1`` whose handler serves a request alone and a sub request."""

        async def alone(request: web.Request) -> web.Response:
            query, headers = request.query, request.headers
            body = await request.read()
            return await handler(Call(name, request.match_info, query, headers, body))

        router.add_route(method, PREFIX + path, alone, name=name)
        self._routes.append((method, _pattern(path), name, handler))

    def _resolve(self, method: str, path: str) -> tuple[str, Mapping[str, str], _CallHandler]:
        """(route name, match, handler) of a sub request; Login, Logout and $batch are not
        served in a batch [UNCONF: B1's answer]; an unknown path is 404, a method 405."""
        if path in (f"{PREFIX}/Login", f"{PREFIX}/Logout", f"{PREFIX}/{BATCH}"):
            name = path.removeprefix(f"{PREFIX}/")
            raise model.SLError(400, -1000, f"{name} is not supported in a batch request")
        allowed = False
        for route_method, pattern, name, handler in self._routes:
            found = pattern.fullmatch(path.removeprefix(PREFIX))
            if found is not None and route_method == method:
                return name, found.groupdict(), handler
            allowed = allowed or found is not None
        raise _unknown(path, 405 if allowed else 404)

    async def _batch(self, request: web.Request) -> web.Response:
        """``POST /$batch``: its parts executed (:func:`devstack.sims.b1.batch.execute`), each
        sub request served by :meth:`_sub_request`."""
        try:
            parts = batch.parse(request.headers.get("Content-Type", ""), await request.read())
        except batch.BatchFormatError as exc:
            raise model.SLError(400, -1000, str(exc)) from None
        limit = self._faults.batch_max_parts
        if batch.count(parts) > limit:  # the text is [UNCONF]
            raise model.SLError(400, -1000, f"A batch request holds at most {limit} requests")
        self.batches += 1
        run = batch.Run(self.batches)
        request[_BATCH_NUMBER] = run.number
        answers = await batch.execute(
            parts, run, self._sub_request, transaction=self._transaction, save=self._save,
            continue_on_error=self._faults.batch_continue_on_error,
        )  # fmt: skip
        content_type, body = batch.render(answers)
        return web.Response(status=202, body=body, headers={"Content-Type": content_type})

    async def _sub_request(
        self, sub: batch.SubRequest, run: batch.Run, created: Mapping[str, str]
    ) -> batch.SubAnswer:
        """A sub request served as it would be alone, in the session of its batch."""
        url = URL(batch.target(sub.target, PREFIX, created))
        operation = ""
        try:
            route, match, handler = self._resolve(sub.method, url.path)
            operation = route.split(".")[0]
            self._internal_error()
            response = await handler(Call(route, match, url.query, sub.headers, sub.body, run))
        except model.SLError as error:
            response = error.response
        self._record(sub.method, url, operation, model.loggable(operation, sub.body),
                     response.status, run.number)  # fmt: skip
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        body = response.body if isinstance(response.body, bytes) else b""
        return batch.SubAnswer(response.status, headers, body, sub.content_id)

    def _save(self) -> Callable[[], None]:
        """Undoes every change to the company database (master data, stock, documents, sales,
        numbering) made after this call."""
        book, on_hand = self._book, model.OnHand()  # (OnHand cannot be deep-copied)
        for key, quantity in book.on_hand.items():
            on_hand[key] = quantity
        batches = copy.deepcopy(book.batches)
        book_copy = model.StockBook(on_hand, batches, copy.deepcopy(book.serials))
        state = (self._items, self._warehouses, self._book, self._next, self.documents)
        saved = copy.deepcopy((*state, self.sales), {id(book): book_copy})

        def undo() -> None:
            self._items, self._warehouses, self._book, self._next, self.documents = saved[:5]
            self.sales = saved[5]

        return undo

    # --- Login / Logout ---

    async def _login(self, request: web.Request) -> web.Response:
        body = model.decode_body(await request.read())
        fields = ("CompanyDB", "UserName", "Password")
        given = tuple(body.get(k) for k in fields) if isinstance(body, dict) else ()
        if given != self._credentials:
            raise model.SLError.of(401, model.LOGIN_FAILED)
        self.logins += 1
        sid, route = str(uuid.uuid4()), f".node{self.logins % 2}"
        self._sessions[sid] = time.monotonic()
        response = model.json_response(
            {
                "odata.metadata": f"{self.url}/$metadata#B1Sessions/@Element",
                "SessionId": sid,
                "Version": VERSION,
                "SessionTimeout": max(1, math.ceil(self.session_timeout_minutes)),
            }
        )
        response.headers.add("Set-Cookie", f"B1SESSION={sid};HttpOnly;")
        response.headers.add("Set-Cookie", f"ROUTEID={route}; path=/b1s")
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        self._sessions.pop(request.cookies.get("B1SESSION", ""), None)
        return web.Response(status=204)

    # --- entities ---

    def _rows(self, entity: str, where: model.Filter) -> Iterable[dict[str, Any]]:
        """The rows that can match ``where``: master data by dictionary lookup of a key it
        names, sales documents by their indexes, stock documents by scan."""
        if entity in sales.ENTITIES or entity == "BusinessPartners":
            return self.sales.rows(entity, where)
        if entity in ("Items", "Warehouses"):
            table: Mapping[str, model.Item | model.Warehouse]
            table = self._items if entity == "Items" else self._warehouses
            keys = [[v for n, v in clauses if n == KEY_FIELDS[entity]] for clauses in where]
            found: Iterable[model.Item | model.Warehouse] = table.values()
            if all(values and isinstance(values[0], str) for values in keys):
                codes = dict.fromkeys(values[0] for values in keys)  # in the filter's order
                found = [table[code] for code in codes if code in table]
            return (
                row.as_json(self._book) if isinstance(row, model.Item) else row.as_json()
                for row in found
            )
        return (doc.body for doc in self.documents if doc.entity == entity)

    async def _collection(self, call: Call) -> web.Response:
        entity, query = call.route, call.query
        where = model.parse_filter(query.get("$filter", ""))
        kind = model.entity_kind(entity)
        rows = [row for row in self._rows(entity, where) if model.matches(row, where, kind)]
        skip = model.count(query.get("$skip", "0"))
        top = min(model.count(query.get("$top", str(PAGE_SIZE))), PAGE_SIZE)
        page = rows[skip : skip + top]
        body: dict[str, Any] = {
            "odata.metadata": f"{self.url}/$metadata#{entity}",
            "value": [model.project(row, query.get("$select"), kind) for row in page],
        }
        if skip + top < len(rows) and "$top" not in query:
            rest = {k: v for k, v in query.items() if k != "$skip"}
            query_string = urlencode({**rest, "$skip": skip + top}, safe="$',", quote_via=quote)
            body["odata.nextLink"] = f"{entity}?{query_string}"
        return model.json_response(body)

    async def _entity(self, call: Call) -> web.Response:
        entity, key = call.operation, _key(call)
        field = KEY_FIELDS.get(entity, "DocEntry")
        value: int | str | None
        if field == "DocEntry":
            value = int(key) if key.isdigit() else None
        else:
            value = key[1:-1].replace("''", "'") if key[:1] == key[-1:] == "'" else None
        literal = Decimal(value) if isinstance(value, int) else value
        for row in [] if value is None else self._rows(entity, [[(field, literal)]]):
            if row[field] == value:
                body = {"odata.metadata": f"{self.url}/$metadata#{entity}/@Element", **row}
                return model.json_response(
                    model.project(body, call.query.get("$select"), model.entity_kind(entity))
                )
        raise model.SLError.of(404, model.NOT_FOUND)

    async def _post(self, call: Call) -> web.Response:
        entity, body = call.operation, model.decode_body(call.body)
        prepare: Callable[[], model.Plan]
        if entity in model.ENTITIES:
            kind = model.ENTITIES[entity]
            lines = body.get(model.LINES[kind]) if isinstance(body, dict) else None
            codes = {str(line.get("ItemCode")) for line in lines or [] if isinstance(line, dict)}

            def prepare() -> model.Plan:
                return self._stock_plan(entity, kind, body)
        else:
            codes = self.sales.item_codes(entity, body)

            def prepare() -> model.Plan:
                return self.sales.plan_post(entity, body)

        record = await self._write(codes, prepare, call.batch)
        if record is None:  # pragma: no cover - a POST always creates a document
            raise model.SLError(500, -1, "Internal error (-1) occurred")
        location = f"{PREFIX}/{record.entity}({record.doc_entry})"
        if "return-no-content" in call.headers.get("Prefer", ""):
            headers = {"Location": location, "Preference-Applied": "return-no-content"}
            return web.Response(status=204, headers=headers)
        if record.entity != entity:  # an approval procedure made a draft of it [DOC-SLREF]
            raise model.SLError(self.sales.rules.draft_answer_status, *model.NOT_FOUND)
        response = model.json_response(
            {"odata.metadata": f"{self.url}/$metadata#{entity}/@Element", **record.body},
            status=201,
        )
        response.headers["Location"] = location  # as in the manual's batch answer (p.86)
        return response

    def _stock_plan(self, entity: str, kind: model.Kind, body: Any) -> model.Plan:
        moves = model.check_document(kind, body, entity, self._items, self._warehouses, self._book)

        def apply() -> model.SimDocument:
            for move in moves:
                move.apply(self._book)
            number = self._next[entity]
            self._next[entity] += 1
            body_json = model.document_json(number, kind, body)
            record = model.SimDocument(kind, entity, number, number, body_json)
            self.documents.append(record)
            return record

        return model.Plan(entity, body, apply)

    async def _order_action(self, call: Call) -> web.Response:
        entry, action = _entry(call), call.match["action"]
        codes = self.sales.order_items("Orders", entry)
        await self._write(codes, lambda: self.sales.plan_action(entry, action), call.batch)
        return web.Response(status=204)

    async def _delete_draft(self, call: Call) -> web.Response:
        entry = _entry(call)
        codes = self.sales.order_items("Drafts", entry)
        await self._write(codes, lambda: self.sales.plan_delete_draft(entry), call.batch)
        return web.Response(status=204)

    async def _save_draft(self, call: Call) -> web.Response:
        body = model.decode_body(call.body)
        document = body.get("Document") if isinstance(body, dict) else None
        key = document.get("DocEntry") if isinstance(document, dict) else None
        codes = self.sales.order_items("Drafts", key) if isinstance(key, int) else set()
        await self._write(codes, lambda: self.sales.plan_save_draft(body), call.batch)
        return web.Response(status=204)

    async def _write(
        self, codes: set[str], prepare: Callable[[], model.Plan], run: batch.Run | None = None
    ) -> model.SimDocument | None:
        """One write through every fault knob: locks and collisions first (nothing written),
        the write's checks (``prepare``), a unique key, then applied — and maybe answered late
        or answered -2035 although applied. The sub requests of one batch run one after
        another in one session: an item an earlier one wrote is no conflict for a later one
        (``run``)."""
        faults, now = self._faults, time.monotonic()
        window, batch = faults.conflict_window_ms / 1000, run.number if run else 0
        if any(self._holding[c] for c in codes):
            self.held_conflicts += 1
            raise model.SLError.of(400, model.MODIFIED)
        touched = (self._touched.get(c, (-math.inf, 0)) for c in codes)
        if any(now - at < window and not (batch and by == batch) for at, by in touched):
            raise model.SLError.of(400, model.MODIFIED)
        if self._random.random() < faults.lock_storm_rate:
            raise model.SLError.of(400, model.MODIFIED)
        if faults.collision_count > 0:
            faults.collision_count -= 1
            raise self._collision()
        if faults.collision_until is not None and datetime.now(UTC) < faults.collision_until:
            raise self._collision()
        if faults.post_ms > 0:  # the items are locked while the document is written
            self._holding.update(codes)
            try:
                await asyncio.sleep(faults.post_ms / 1000)
            finally:
                self._holding.subtract(codes)
        if self._transaction.locked() and not (run and run.in_change_set):
            async with self._transaction:  # a change set is being written: after it
                pass
        plan = prepare()
        unique = faults.unique_key_field
        value = plan.body.get(unique) if unique else None
        if (
            unique
            and value is not None
            and any(
                doc.entity == plan.entity and doc.body.get(unique) == value
                for doc in self.documents
            )
        ):
            raise self._collision()
        record = plan.apply()
        stall = faults.timeout_after_apply_ms / 1000
        if stall > 0 and self._random.random() < faults.timeout_after_apply_rate:
            self._holding.update(codes)
            try:
                await asyncio.sleep(stall)
            finally:
                self._holding.subtract(codes)
        for code in codes:
            self._touched[code] = (time.monotonic(), batch)
        if faults.collision_after_apply > 0:  # written, but the answer says it collided
            faults.collision_after_apply -= 1
            raise self._collision()
        return record

    def _collision(self) -> model.SLError:
        self.collisions += 1
        return model.SLError.of(400, model.DUPLICATE)

    # --- inspection ---

    async def _inspect(self, request: web.Request) -> web.Response:
        record = request.match_info["record"]
        if record == "stock":
            return model.json_response(model.stock_rows(self._book))
        if record == "sales-rules":
            return model.json_response(self.sales.rules)
        return model.json_response(self._faults if record == "faults" else getattr(self, record))

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            self.set_faults(**msgspec.json.decode(await request.read()))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            return model.rejected(str(exc), -1000).response
        return model.json_response(self._faults)

    async def _post_expire(self, request: web.Request) -> web.Response:
        self.expire_sessions()
        return web.Response(status=204)

    # --- sales controls (the hooks of ``self.sales`` over HTTP) ---

    async def _post_customer(self, request: web.Request) -> web.Response:
        async def change(raw: bytes) -> Any:
            given = msgspec.json.decode(raw, type=CustomerChange)
            fields = {
                name: value
                for name, value in msgspec.structs.asdict(given).items()
                if value is not msgspec.UNSET and name != "code"
            }
            if given.code in self.sales.customers:
                self.sales.update_customer(given.code, **fields)
            else:
                self.sales.add_customer(given.code, **fields)
            return next(iter(self.sales.rows("BusinessPartners", [[("CardCode", given.code)]])))

        return await _control(request, change)

    async def _post_tax_code(self, request: web.Request) -> web.Response:
        async def add(raw: bytes) -> Any:
            given = msgspec.json.decode(raw, type=dict[str, Any])
            self.sales.add_tax_code(str(given["code"]), Decimal(str(given.get("rate", 0))))
            return {"code": given["code"], "rate": self.sales.tax_codes[str(given["code"])]}

        return await _control(request, add)

    async def _post_sales_rules(self, request: web.Request) -> web.Response:
        async def change(raw: bytes) -> Any:
            return self.sales.set_rules(**msgspec.json.decode(raw, type=dict[str, Any]))

        return await _control(request, change)

    async def _post_confirmed(self, request: web.Request) -> web.Response:
        entry = int(request.match_info["entry"])

        async def confirm(raw: bytes) -> Any:
            given = msgspec.json.decode(raw, type=dict[str, bool])
            self.sales.set_confirmed(entry, given["confirmed"])
            return self.sales.document("Orders", entry)

        return await _control(request, confirm)

    async def _post_draft_decision(self, request: web.Request) -> web.Response:
        entry, action = int(request.match_info["entry"]), request.match_info["action"]

        async def decide(raw: bytes) -> Any:
            if action == "reject":
                self.sales.reject_draft(entry)
                return self.sales.document("Drafts", entry)
            options = msgspec.json.decode(raw or b"{}", type=dict[str, bool])
            order = self.sales.approve_draft(entry, save=options.get("save", True))
            return {"DocEntry": order, "Draft": self.sales.document("Drafts", entry)}

        return await _control(request, decide)


KEY_FIELDS = {"Items": "ItemCode", "Warehouses": "WarehouseCode", "BusinessPartners": "CardCode"}


def _pattern(path: str) -> re.Pattern[str]:
    """An aiohttp route path (``/Orders({key})/{action:Cancel|Close}``) as a pattern."""
    parts = re.split(r"\{(\w+)(?::([^}]+))?\}", path)
    text = ""
    for index in range(0, len(parts), 3):
        text += re.escape(parts[index])
        if index + 1 < len(parts):
            text += f"(?P<{parts[index + 1]}>{parts[index + 2] or '[^{}/]+'})"
    return re.compile(text)


def _unknown(path: str, status: int) -> model.SLError:
    segment = path.removeprefix(PREFIX).strip("/").split("(")[0]
    return model.SLError(status, -1000, f"Resource not found for the segment '{segment}'")


def _key(call: Call) -> str:
    """An entity's key as the URL gives it: ``5``, ``DocEntry=5`` or ``'A-100'``."""
    return unquote(call.match["key"]).split("=", 1)[-1].strip()


def _entry(call: Call) -> int:
    key = _key(call)
    if not key.isdigit():
        raise model.SLError.of(404, model.NOT_FOUND)
    return int(key)


async def _control(request: web.Request, act: Callable[[bytes], Awaitable[Any]]) -> web.Response:
    """A ``/_sim`` control call: ``act`` on the body, its result as JSON, or a 400 naming why."""
    try:
        return model.json_response(await act(await request.read()))
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError, KeyError) as exc:
        reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        return model.rejected(reason, -1000).response
