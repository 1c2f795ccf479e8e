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
posting holds its items that long, as B1's transaction does; the -2035 knobs below);
``expire_sessions``;
records ``requests``, ``documents``, ``stock()`` — over HTTP ``GET /_sim/requests|documents|
stock|faults|sales-rules``, ``POST /_sim/faults``, ``POST /_sim/expire-sessions``, and the sales
controls ``POST /_sim/customers``, ``/_sim/tax-codes``, ``/_sim/sales-rules``,
``/_sim/orders/{n}/confirmed``, ``/_sim/drafts/{n}/approve|reject``. ``documents`` holds every
document created (stock and sales, drafts included) as it was answered then. Login passwords are
recorded as ``***``.

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
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode

import msgspec
from aiohttp import web

from devstack.sims.b1 import model, sales
from devstack.sims.http import LocalServer

PREFIX = "/b1s/v1"
VERSION = "1000190"  # a 10.0 release, in the form Service Layer reports it
PAGE_SIZE = 20  # Service Layer's default page size
OUTAGE_PAGE = "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>"  # noqa: E501
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
    at: float = msgspec.field(default_factory=time.time)


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
        self._touched: dict[str, float] = {}  # item -> monotonic time of its last posting
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
        app = web.Application(middlewares=[self._gateway])
        router = app.router
        router.add_post(f"{PREFIX}/Login", self._login, name="Login")
        router.add_post(f"{PREFIX}/Logout", self._logout, name="Logout")
        readable = ("Items", "Warehouses", "BusinessPartners", *model.ENTITIES, *sales.ENTITIES)
        for entity in readable:
            router.add_get(f"{PREFIX}/{entity}", self._collection, name=entity)
            router.add_get(f"{PREFIX}/{entity}({{key}})", self._entity, name=f"{entity}.key")
        for entity in (*model.ENTITIES, *sales.POSTABLE):
            router.add_post(f"{PREFIX}/{entity}", self._post, name=f"{entity}.post")
        actions = f"{PREFIX}/Orders({{key}})/{{action:Cancel|Close}}"
        router.add_post(actions, self._order_action, name="Orders.action")
        router.add_delete(f"{PREFIX}/Drafts({{key}})", self._delete_draft, name="Drafts.delete")
        service = "DraftsService_SaveDraftToDocument"
        router.add_post(f"{PREFIX}/{service}", self._save_draft, name=service)
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
        operation = (request.match_info.route.name or "").split(".")[0]
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
            segment = request.path.removeprefix(PREFIX).strip("/").split("(")[0]
            message = f"Resource not found for the segment '{segment}'"
            response = model.SLError(exc.status, -1000, message).response
        body = model.loggable(operation, raw)
        query, status = request.query_string, response.status
        self.requests.append(
            RecordedRequest(request.method, request.path, query, operation, body, status)
        )
        return response

    async def _admit(self, request: web.Request, operation: str) -> web.Response | None:
        faults = self._faults
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.outage_until is not None and datetime.now(UTC) < faults.outage_until:
            return web.Response(status=503, text=OUTAGE_PAGE, content_type="text/html")
        if self._random.random() < faults.error_rate:
            raise model.SLError(500, -1, "Internal error (-1) occurred")
        if operation != "Login" and not self._live(request.cookies.get("B1SESSION", "")):
            raise model.SLError.of(401, model.INVALID_SESSION)
        return None

    def _live(self, sid: str) -> bool:
        now, last_used = time.monotonic(), self._sessions.get(sid)
        if last_used is None or now - last_used > self.session_timeout_minutes * 60:
            self._sessions.pop(sid, None)
            return False
        self._sessions[sid] = now
        return True

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

    async def _collection(self, request: web.Request) -> web.Response:
        entity = request.match_info.route.name or ""
        query = request.query
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

    async def _entity(self, request: web.Request) -> web.Response:
        entity = (request.match_info.route.name or "").split(".")[0]
        key = _key(request)
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
                    model.project(body, request.query.get("$select"), model.entity_kind(entity))
                )
        raise model.SLError.of(404, model.NOT_FOUND)

    async def _post(self, request: web.Request) -> web.Response:
        entity = (request.match_info.route.name or "").split(".")[0]
        body = model.decode_body(await request.read())
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

        record = await self._write(codes, prepare)
        if record is None:  # pragma: no cover - a POST always creates a document
            raise model.SLError(500, -1, "Internal error (-1) occurred")
        if "return-no-content" in request.headers.get("Prefer", ""):
            headers = {
                "Location": f"{PREFIX}/{record.entity}({record.doc_entry})",
                "Preference-Applied": "return-no-content",
            }
            return web.Response(status=204, headers=headers)
        if record.entity != entity:  # an approval procedure made a draft of it [DOC-SLREF]
            raise model.SLError(self.sales.rules.draft_answer_status, *model.NOT_FOUND)
        return model.json_response(
            {"odata.metadata": f"{self.url}/$metadata#{entity}/@Element", **record.body},
            status=201,
        )

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

    async def _order_action(self, request: web.Request) -> web.Response:
        entry, action = _entry(request), request.match_info["action"]
        codes = self.sales.order_items("Orders", entry)
        await self._write(codes, lambda: self.sales.plan_action(entry, action))
        return web.Response(status=204)

    async def _delete_draft(self, request: web.Request) -> web.Response:
        entry = _entry(request)
        codes = self.sales.order_items("Drafts", entry)
        await self._write(codes, lambda: self.sales.plan_delete_draft(entry))
        return web.Response(status=204)

    async def _save_draft(self, request: web.Request) -> web.Response:
        body = model.decode_body(await request.read())
        document = body.get("Document") if isinstance(body, dict) else None
        key = document.get("DocEntry") if isinstance(document, dict) else None
        codes = self.sales.order_items("Drafts", key) if isinstance(key, int) else set()
        await self._write(codes, lambda: self.sales.plan_save_draft(body))
        return web.Response(status=204)

    async def _write(
        self, codes: set[str], prepare: Callable[[], model.Plan]
    ) -> model.SimDocument | None:
        """One write through every fault knob: locks and collisions first (nothing written),
        the write's checks (``prepare``), a unique key, then applied — and maybe answered late
        or answered -2035 although applied."""
        faults, now = self._faults, time.monotonic()
        window = faults.conflict_window_ms / 1000
        if any(self._holding[c] for c in codes):
            self.held_conflicts += 1
            raise model.SLError.of(400, model.MODIFIED)
        if any(now - self._touched.get(c, -math.inf) < window for c in codes):
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
            self._touched[code] = time.monotonic()
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


def _key(request: web.Request) -> str:
    """An entity's key as the URL gives it: ``5``, ``DocEntry=5`` or ``'A-100'``."""
    return unquote(request.match_info["key"]).split("=", 1)[-1].strip()


def _entry(request: web.Request) -> int:
    key = _key(request)
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
