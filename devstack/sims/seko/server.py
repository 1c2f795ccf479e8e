"""A protocol-faithful Seko Logistics iHub (SupplyStream / SEKO 360) on aiohttp.

REST as iHub serves it [DOC]: ``<url>/<service>/<version>/<parameters>?api_key=<key>`` (or
``token=``; interchangeable), ``url`` being ``http://host:port/api``. Answers carry the
``CallStatus`` envelope (``Success``, ``Code`` 0 or 100, ``Message``); a refused load is
HTTP 200 with ``Success: false`` (``refusal_status``, ``refusal_code`` [UNCONF]); v1 answers are
wrapped in ``Response`` and return ``GUID`` [OBS]; lists and empties show iHub's XML-to-JSON
artefacts (:mod:`devstack.sims.seko.wire`). Served:

* ``POST salesorders/v4/submit`` / ``v4/websubmit`` (``SalesOrder`` / ``WebSalesOrder``,
  ``SalesOrderHeader.DCCode``, ``List.SalesOrderLineItem``, unwrapped as the v4 client sends it
  [OBS]); the rules, statuses and shipping are :mod:`devstack.sims.seko.warehouse`'s.
* ``POST salesorders/v3/{SalesOrderNumber}/cancel?reasonCode=001..006`` [DOC/OBS].
* ``GET salesorders/v1/{GUID}/status`` and ``/tracking`` [OBS].
* ``POST products/v4/submit`` / ``v4/update`` (``ProductMaster``) [DOC/OBS].
* ``GET stock/v3/quantity?productCodes=a,b&dc=`` — free stock, zeros and negatives left out,
  the query string capped at ``query_cap`` (2048 [DOC]; over it: IIS's 404.15 [UNCONF]).
* Retrieves, v1 [OBS paths; the one version the public clients show]:
  ``dispatches/v1/status/{from}/{to}?status=Dispatched&dc=``, ``stock/v1/adjustment/{from}/
  {to}?dc=``, ``grns/v1/{GUID}``, and ``grns/v1/{from}/{to}?dc=`` [UNCONF]; ``from`` inclusive,
  ``to`` exclusive [UNCONF]; a v1 path may end ``.json`` [OBS].
* ``POST receipts/v1/submit`` (an ASN, ``Request``-wrapped) [OBS].

Pushes (:mod:`devstack.sims.seko.push`) go to ``webhook_url``. Time is the simulator's clock:
real time plus what :meth:`SekoSimulator.advance` added; a background tick moves orders on,
runs the push scheduler every ``push_interval_seconds`` and the retries when due.

Hooks (and ``/_sim`` over HTTP): ``add_dc``, ``add_product``, ``add_stock`` (set-up, no push);
``load_receipt``/``receive`` (an ASN's goods, or a manual receipt → GRN), ``adjust`` (→ stock
adjustments), ``overnight_summary``; ``hold``/``release``/``plan`` an order; ``advance``,
``run_scheduler``, ``resend``; ``set_knobs`` (:class:`~devstack.sims.seko.model.Knobs`: every
guess and every fault); records ``requests`` (the api_key shown as ``***``), ``orders``,
``pushes``, ``batches``. ``GET /_sim/requests|orders|pushes|batches|knobs|stock|products|grns|
adjustments``; ``POST /_sim/knobs``, ``/_sim/dcs``, ``/_sim/products``, ``/_sim/stock``,
``/_sim/receipts`` (receive), ``/_sim/adjustments``, ``/_sim/overnight``, ``/_sim/advance``
(``{"seconds"}``), ``/_sim/scheduler/run``, ``/_sim/orders/{n}/hold|release|plan``,
``/_sim/batches/{id}/resend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from devstack.sims.http import LocalServer
from devstack.sims.seko import model
from devstack.sims.seko.model import Knobs, with_changes
from devstack.sims.seko.push import PushBatch, Pusher, PushMessage
from devstack.sims.seko.records import Grn, Order, stamp
from devstack.sims.seko.warehouse import Refused, Warehouse
from devstack.sims.seko.wire import Unreadable, call_status, read_body, respond, shaped, text

log = logging.getLogger("skuflow.sims.seko")
PREFIX = "/api"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Invalid(Exception):
    """A request iHub cannot read: HTTP 400 ``The request is invalid.`` [UNCONF]."""


class RecordedRequest(msgspec.Struct, frozen=True):
    method: str
    path: str
    query: str  # api_key / token shown as ***
    operation: str
    body: Any
    status: int
    at: float


class SekoSimulator:
    def __init__(
        self,
        api_key: str = "skuflow-dev-seko-key",
        *,
        knobs: Knobs | None = None,
        dcs: Sequence[str] = ("DCIW01",),
        seed: int | None = None,
        tick_seconds: float = 0.05,
    ) -> None:
        self.api_key = api_key
        self._knobs = knobs or Knobs()
        self._offset = 0.0  # seconds the clock is ahead of real time
        self._random = random.Random(seed)
        self._tick_seconds = tick_seconds
        self.pusher = Pusher(lambda: self._knobs, self.set_knobs, self.now, self._random)
        self.warehouse = Warehouse(lambda: self._knobs, self.now, self.pusher.emit, self._random)
        for dc in dcs:
            self.warehouse.add_dc(dc)
        self.requests: list[RecordedRequest] = []  # every REST call, in arrival order
        self.url = ""
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        app = web.Application(middlewares=[self._gateway])
        route, v1 = app.router, r"{guid:[^/]+?}{ext:(?:\.json)?}"
        route.add_post(
            f"{PREFIX}/salesorders/v4/{{kind:submit|websubmit}}",
            self._submit,
            name="salesorders.submit",
        )
        route.add_post(
            f"{PREFIX}/salesorders/v3/{{number}}/cancel", self._cancel, name="salesorders.cancel"
        )
        route.add_get(
            f"{PREFIX}/salesorders/v1/{{guid}}/{{what:status|tracking}}{{ext:(?:\\.json)?}}",
            self._order_read,
            name="salesorders.read",
        )
        route.add_post(
            f"{PREFIX}/products/v4/{{kind:submit|update}}", self._product, name="products.load"
        )
        route.add_get(f"{PREFIX}/stock/v3/quantity", self._quantity, name="stock.quantity")
        span = r"{start}/{end:[^/]+?}{ext:(?:\.json)?}"
        route.add_get(
            f"{PREFIX}/dispatches/v1/status/{span}", self._dispatches, name="dispatches.status"
        )
        route.add_get(
            f"{PREFIX}/stock/v1/adjustment/{span}", self._adjustments, name="stock.adjustment"
        )
        route.add_get(f"{PREFIX}/grns/v1/{span}", self._grns_between, name="grns.range")
        route.add_get(f"{PREFIX}/grns/v1/{v1}", self._grn, name="grns.guid")
        route.add_post(
            f"{PREFIX}/receipts/v1/submit{{ext:(?:\\.json)?}}",
            self._receipt,
            name="receipts.submit",
        )
        records = "requests|orders|pushes|batches|knobs|stock|products|grns|adjustments"
        route.add_get(f"/_sim/{{record:{records}}}", self._inspect, name="sim")
        for action in (
            "knobs",
            "dcs",
            "products",
            "stock",
            "receipts",
            "adjustments",
            "overnight",
            "advance",
            "scheduler/run",
        ):
            route.add_post(f"/_sim/{action}", self._control, name=f"sim.{action.replace('/', '-')}")
        route.add_post(
            "/_sim/orders/{number}/{action:hold|release|plan}",
            self._order_control,
            name="sim.order",
        )
        route.add_post(r"/_sim/batches/{batch:\d+}/resend", self._resend, name="sim.resend")
        self._server = LocalServer(app)

    # --- lifecycle and time ---

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.url = await self._server.start(host, port) + PREFIX
        self._session = aiohttp.ClientSession()
        self.pusher.last_run = self.now()
        self._task = asyncio.create_task(self._ticker(), name="seko-sim-tick")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._server.stop()

    @property
    def sim_base(self) -> str:
        """The root of the ``/_sim`` controls."""
        return self.url.removesuffix(PREFIX) + "/_sim"

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    async def advance(self, seconds: float) -> list[PushBatch]:
        """Move the clock on: orders progress, a due scheduler run and due retries happen."""
        self._offset += seconds
        return await self.tick()

    async def tick(self) -> list[PushBatch]:
        async with self._lock:
            self.warehouse.advance()
            last = self.pusher.last_run or self.now()
            if (self.now() - last).total_seconds() >= self._knobs.push_interval_seconds:
                return await self.pusher.run(self._client())
            return await self.pusher.retry_due(self._client())

    async def run_scheduler(self) -> list[PushBatch]:
        """A push scheduler run now (orders moved on first)."""
        async with self._lock:
            self.warehouse.advance()
            return await self.pusher.run(self._client())

    async def resend(self, batch_id: int) -> PushBatch:
        async with self._lock:
            return await self.pusher.resend(self._client(), batch_id)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_seconds)
            try:
                await self.tick()
            except Exception:  # a simulator keeps running; the failure is logged
                log.exception("Seko simulator tick failed")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the simulator is not started")
        return self._session

    # --- knobs and hooks ---

    @property
    def knobs(self) -> Knobs:
        return self._knobs

    def set_knobs(self, **changes: Any) -> Knobs:
        """Change some knobs, keep the others."""
        self._knobs = with_changes(self._knobs, changes)
        return self._knobs

    def add_dc(self, dc: str) -> None:
        self.warehouse.add_dc(dc)

    def add_product(self, code: str, **fields: Any) -> None:
        self.warehouse.add_product(code, **fields)

    def add_stock(
        self, dc: str, code: str, quantity: int, lot: str = "", serials: Sequence[str] = ()
    ) -> None:
        self.warehouse.add_stock(dc, code, quantity, lot, serials)

    def receive(
        self,
        lines: Sequence[tuple[str, int] | tuple[str, int, str]] | None = None,
        **where: Any,
    ) -> Grn:
        return self.warehouse.receive(lines, **where)

    def adjust(
        self, dc: str, changes: Sequence[tuple[str, int, str] | tuple[str, int, str, str]]
    ) -> None:
        self.warehouse.adjust(dc, changes)

    def overnight_summary(self, dc: str | None = None) -> None:
        self.warehouse.overnight_summary(dc)

    def hold(self, number: str) -> Order:
        return self.warehouse.hold(number, True)

    def release(self, number: str) -> Order:
        return self.warehouse.hold(number, False)

    def plan(self, number: str, shipments: Sequence[dict[str, int]]) -> Order:
        return self.warehouse.plan(number, shipments)

    def order(self, number: str) -> Order | None:
        return self.warehouse.orders.get(number.upper())

    @property
    def orders(self) -> list[Order]:
        return list(self.warehouse.orders.values())

    @property
    def pushes(self) -> list[PushMessage]:
        return self.pusher.messages

    @property
    def batches(self) -> list[PushBatch]:
        return self.pusher.batches

    def stock(self, dc: str, code: str) -> tuple[int, int]:
        """(on hand, free) units of ``code`` in ``dc``."""
        book, key = self.warehouse.book, code.upper()
        return book.on_hand(dc, key), book.free(dc, key)

    # --- the gateway: record, faults, auth ---

    @web.middleware
    async def _gateway(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        raw = await request.read()
        try:
            response = await self._admit(request) or await handler(request)
        except _Invalid:
            response = web.json_response({"Message": model.INVALID_REQUEST}, status=400)
        except web.HTTPException as exc:  # unknown path or method: ASP.NET's text [UNCONF]
            uri = str(request.url)  # (it echoes the whole URI, api_key included)
            message = f"No HTTP resource was found that matches the request URI '{uri}'."
            response = web.json_response({"Message": message}, status=exc.status)
        query = "&".join(
            f"{k}=***" if k.lower() in ("api_key", "token") else f"{k}={v}"
            for k, v in request.query.items()
        )
        operation = request.match_info.route.name or ""
        body: Any = raw.decode(errors="replace")
        with contextlib.suppress(Unreadable):
            body = read_body(raw, request.content_type) if raw else None
        self.requests.append(
            RecordedRequest(
                request.method, request.path, query, operation, body, response.status, time.time()
            )
        )
        return response

    async def _admit(self, request: web.Request) -> web.Response | None:
        knobs = self._knobs
        if knobs.latency_ms > 0:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if knobs.outage_until is not None and datetime.now(UTC) < knobs.outage_until:
            return web.Response(status=503, text=model.OUTAGE_PAGE, content_type="text/html")
        if len(request.query_string) > knobs.query_cap:
            page = model.QUERY_TOO_LONG_PAGE
            return web.Response(status=404, text=page, content_type="text/html")
        if self._random.random() < knobs.error_rate:
            return web.json_response({"Message": model.SERVER_ERROR}, status=500)
        given = request.query.get("api_key") or request.query.get("token") or ""
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            return web.json_response({"Message": model.UNAUTHORISED}, status=knobs.auth_status)
        return None

    # --- answers ---

    def _answer(
        self, request: web.Request, body: dict[str, Any], *, v1: bool = False
    ) -> web.Response:
        knobs = self._knobs
        shown = shaped(
            body, single_as_object=knobs.single_as_object, empty_as_object=knobs.empty_as_object
        )
        if not v1 and "CallStatus" in body:  # v3/v4: an empty Message is "" [DOC]
            shown["CallStatus"]["Message"] = body["CallStatus"]["Message"]
        status = 200
        if not body.get("CallStatus", {}).get("Success", True) and not v1:
            status = knobs.refusal_status
        return respond(request, {"Response": shown} if v1 else shown, status)

    def _refusal(self, request: web.Request, message: str, *, v1: bool = False) -> web.Response:
        code = 100 if message == model.NO_RESULTS else self._knobs.refusal_code
        return self._answer(request, call_status(False, code, message) | {"List": {}}, v1=v1)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            return read_body(await request.read(), request.content_type)
        except Unreadable:
            return web.json_response({"Message": model.INVALID_REQUEST}, status=400)

    # --- sales orders ---

    async def _submit(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        web_order = request.match_info["kind"] == "websubmit"
        try:
            order = self.warehouse.submit_order(body, web=web_order)
        except Refused as refusal:
            return self._refusal(request, refusal.message)
        return self._answer(request, call_status(True) | {"GUID": order.guid})

    async def _cancel(self, request: web.Request) -> web.Response:
        reason = request.query.get("reasonCode", "006")
        if reason not in model.REASON_CODES:
            return self._refusal(request, f"Invalid reasonCode {reason}.")  # [UNCONF]
        try:
            self.warehouse.cancel(request.match_info["number"], reason)
        except Refused as refusal:
            return self._refusal(request, refusal.message)
        return self._answer(request, call_status(True) | {"GUID": None})  # [OBS] GUID null

    async def _order_read(self, request: web.Request) -> web.Response:
        order = self.warehouse.order_by_guid(request.match_info["guid"])
        if order is None:
            return self._refusal(request, model.NO_RESULTS, v1=True)
        body = call_status(True) | {"GUID": order.guid}
        if request.match_info["what"] == "status":
            return self._answer(request, body | {"Status": order.status}, v1=True)
        last = order.dispatches[-1] if order.dispatches else None
        courier, number = (last.courier, last.tracking_number) if last else ("", "")
        return self._answer(request, body | {"Courier": courier, "TrackingNumber": number}, v1=True)

    # --- products and stock ---

    async def _product(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            self.warehouse.load_product(body, update=request.match_info["kind"] == "update")
        except Refused as refusal:
            return self._refusal(request, refusal.message)
        return self._answer(request, call_status(True))

    async def _quantity(self, request: web.Request) -> web.Response:
        codes = [c for c in request.query.get("productCodes", "").split(",") if c]
        rows = self.warehouse.stock_rows(codes, request.query.get("dc", ""))
        if not rows:
            return self._refusal(request, model.NO_RESULTS)
        return self._answer(request, call_status(True) | {"List": {"StockQuantityLineItem": rows}})

    # --- retrieves (v1) ---

    def _span(self, request: web.Request) -> tuple[datetime, datetime]:
        try:
            return _moment(request.match_info["start"]), _moment(request.match_info["end"])
        except ValueError:
            raise _Invalid from None

    def _rows(self, request: web.Request, key: str, rows: list[dict[str, Any]]) -> web.Response:
        if not rows:
            return self._refusal(request, model.NO_RESULTS, v1=True)
        return self._answer(request, call_status(True) | {"List": {key: rows}}, v1=True)

    async def _dispatches(self, request: web.Request) -> web.Response:
        start, end = self._span(request)
        dc, status = request.query.get("dc", ""), request.query.get("status", model.DISPATCHED)
        rows = [
            d.row()
            for o in self.warehouse.orders.values()
            for d in o.dispatches
            if start <= d.at < end and (not dc or d.dc == dc) and status == model.DISPATCHED
        ]
        return self._rows(request, "DispatchLineItem", rows)

    async def _adjustments(self, request: web.Request) -> web.Response:
        start, end = self._span(request)
        dc = request.query.get("dc", "")
        rows = [
            a.row()
            for a in self.warehouse.adjustments
            if start <= a.at < end and (not dc or a.dc == dc)
        ]
        return self._rows(request, "StockAdjustment", rows)

    async def _grns_between(self, request: web.Request) -> web.Response:
        start, end = self._span(request)
        dc = request.query.get("dc", "")
        rows = [
            row
            for g in self.warehouse.grns
            if start <= g.confirmed_at < end and (not dc or g.dc == dc)
            for row in g.rows()
        ]
        return self._rows(request, "GRNResponseItem", rows)

    async def _grn(self, request: web.Request) -> web.Response:
        guid = request.match_info["guid"].lower()
        rows = [row for g in self.warehouse.grns if g.guid.lower() == guid for row in g.rows()]
        return self._rows(request, "GRNResponseItem", rows)

    async def _receipt(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            receipt = self.warehouse.load_receipt(body)
        except Refused as refusal:
            return self._refusal(request, refusal.message, v1=True)
        return self._answer(request, call_status(True) | {"GUID": receipt.guid}, v1=True)

    # --- /_sim ---

    async def _inspect(self, request: web.Request) -> web.Response:
        record, house = request.match_info["record"], self.warehouse
        views: dict[str, Callable[[], Any]] = {
            "requests": lambda: self.requests,
            "orders": lambda: [o.wire() for o in house.orders.values()],
            "pushes": lambda: [m.wire() for m in self.pusher.messages],
            "batches": lambda: [b.wire() for b in self.pusher.batches],
            "knobs": lambda: self._knobs,
            "stock": lambda: [
                {
                    "dc": dc,
                    "product": house.products[key].code,
                    "lot": lot,
                    "units": units,
                    "free": house.book.free(dc, key),
                }
                for (dc, key, lot), units in house.book.lots.items()
            ],
            "products": lambda: [
                p.fields
                | {
                    "LotControlled": p.lot_controlled,
                    "SerialNumberControlled": p.serial_controlled,
                }
                for p in house.products.values()
            ],
            "grns": lambda: [g.entity() | {"List": g.lines_wire()} for g in house.grns],
            "adjustments": lambda: [a.row() for a in house.adjustments],
        }
        return _json(views[record]())

    async def _control(self, request: web.Request) -> web.Response:
        action = request.path.removeprefix("/_sim/")
        raw = await request.read()
        try:
            given: dict[str, Any] = msgspec.json.decode(raw) if raw else {}
            return _json(await self._act(action, given))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
            return web.json_response({"Message": str(exc)}, status=400)
        except KeyError as exc:
            return web.json_response({"Message": str(exc.args[0])}, status=400)

    async def _act(self, action: str, given: dict[str, Any]) -> Any:
        house = self.warehouse
        if action == "knobs":
            return self.set_knobs(**given)
        if action == "dcs":
            house.add_dc(given["dc"])
            return sorted(house.dcs)
        if action == "products":
            code = given.pop("code")
            return house.add_product(code, **given).fields
        if action == "stock":
            house.add_stock(
                given["dc"],
                given["code"],
                int(given["quantity"]),
                given.get("lot", ""),
                given.get("serials", ()),
            )
            return self.stock(given["dc"], given["code"])
        if action == "receipts":
            lines = [_row(line) for line in given.pop("lines")] if "lines" in given else None
            grn = house.receive(lines, **given)
            return grn.entity() | {"List": grn.lines_wire()}
        if action == "adjustments":
            changes = [(*_row(c[:3]), str(c[3]) if len(c) > 3 else "") for c in given["changes"]]
            return [a.row() for a in house.adjust(given["dc"], changes)]
        if action == "overnight":
            house.overnight_summary(given.get("dc"))
            return [m.wire() for m in self.pusher.pending]
        if action == "advance":
            return [b.wire() for b in await self.advance(float(given["seconds"]))]
        return [b.wire() for b in await self.run_scheduler()]  # scheduler/run

    async def _order_control(self, request: web.Request) -> web.Response:
        number, action = request.match_info["number"], request.match_info["action"]
        if self.order(number) is None:
            return web.json_response({"Message": f"no order {number}"}, status=404)
        if action == "plan":
            given = msgspec.json.decode(await request.read(), type=dict[str, list[dict[str, int]]])
            return _json(self.plan(number, given["shipments"]).wire())
        order = self.hold(number) if action == "hold" else self.release(number)
        return _json(order.wire())

    async def _resend(self, request: web.Request) -> web.Response:
        batch_id = int(request.match_info["batch"])
        if not 1 <= batch_id <= len(self.pusher.batches):
            return web.json_response({"Message": f"no batch {batch_id}"}, status=404)
        return _json((await self.resend(batch_id)).wire())


def _json(value: Any) -> web.Response:
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return stamp(obj)
        if isinstance(obj, date):
            return obj.isoformat()
        raise NotImplementedError(type(obj).__name__)

    body = msgspec.json.encode(value, enc_hook=default)
    return web.Response(body=body, content_type="application/json")


def _row(given: Sequence[Any]) -> tuple[str, int, str]:
    """A JSON row ``[code, units]`` or ``[code, units, text]`` (a lot, or a reason code)."""
    code, units, *rest = given
    return str(code), int(units), str(rest[0]) if rest else ""


def _moment(value: str) -> datetime:
    """A retrieve bound: ``yyyy-MM-dd``, ``yyyy-MM-ddTHH:mm:ssZ`` or with ``.fffZ`` [DOC]."""
    given = text(value).removesuffix(".json")
    parsed = datetime.fromisoformat(given.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
