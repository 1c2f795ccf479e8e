r"""Seko Logistics iHub connector: sales orders, cancellations, products, stock, retrieves.

For callers (every failure one of :mod:`handlers.connectors.seko.errors`, never aiohttp's):

* :meth:`SekoClient.submit_order` loads a :class:`~handlers.connectors.seko.protocol.SalesOrder`
  (``salesorders/v4/submit``) and returns :class:`Submitted`. It is idempotent on the
  SalesOrderNumber: the order's GUID is a UUID5 of its content
  (:func:`~handlers.connectors.seko.protocol.order_guid`), so when iHub answers "already
  exists" [UNCONF text] — or "no free stock" where an earlier, lost attempt may have taken the
  stock itself — the client reads the status of that GUID: found, it is this same order
  (``Submitted.already``); not found, another order holds the number (:class:`SekoRejected`,
  ``conflict``). No free stock → :class:`SekoNoFreeStock` (the whole order waits).
* :meth:`SekoClient.cancel_order` (``salesorders/v3/{number}/cancel``): a repeat is success;
  refused once picking started [OBS/UNCONF] → :class:`SekoRejected`.
* :meth:`SekoClient.order_status` / :meth:`SekoClient.order_tracking` (``salesorders/v1/
  {GUID}/status|tracking`` [OBS]): ``None`` when iHub has no such order.
* :meth:`SekoClient.submit_product` / :meth:`SekoClient.update_product` (``products/v4``):
  loading a product that exists is ``False``, not an error (its flags cannot change [DOC]:
  check them with :mod:`handlers.connectors.seko.rules` before sending orders).
* :meth:`SekoClient.stock_quantity` (``stock/v3/quantity``): free units per product and DC; a
  product missing means zero [DOC]; the codes are split over as many reads as keep each query
  string under iHub's 2048 characters [DOC].
* :meth:`SekoClient.dispatches`, :meth:`SekoClient.grns`, :meth:`SekoClient.adjustments`: the
  v1 retrieves [OBS paths] for a time window ``[start, end)``; a cursor overlapping its last
  window is the caller's (whether iHub honours the time of day is [UNCONF]).

The client does not retry: the caller owns backoff (``retry_after`` when iHub sent one).

The api_key is a :class:`~config.settings.Secret` sent as ``?api_key=`` (iHub has no header
for it [DOC]): no URL is ever logged or put in an error, every error text is redacted
(:func:`redact`), ``repr`` shows the base URL only. **The aiohttp session's tracing must not
record full URLs**: ``worker.tracing.http_trace_configs`` needs a ``url_filter`` dropping
``api_key``/``token`` before this client shares a traced session.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import msgspec
from yarl import URL

from config.redaction import redact_secrets
from config.settings import Secret, SekoSettings
from handlers.connectors.http import exchange
from handlers.connectors.seko import protocol
from handlers.connectors.seko.errors import SekoAuthFailed as SekoAuthFailed
from handlers.connectors.seko.errors import SekoError as SekoError
from handlers.connectors.seko.errors import SekoNoFreeStock as SekoNoFreeStock
from handlers.connectors.seko.errors import SekoRejected as SekoRejected
from handlers.connectors.seko.errors import SekoUnavailable as SekoUnavailable
from handlers.connectors.seko.protocol import (
    Answer,
    CallStatus,
    CancelReason,
    Dispatch,
    GrnLine,
    OrderStatus,
    ProductMaster,
    SalesOrder,
    StockAdjustment,
    StockQuantity,
    Tracking,
    order_body,
    order_guid,
)

log = logging.getLogger("skuflow.seko")
T = TypeVar("T")
_ENCODE = msgspec.json.Encoder(decimal_format="number").encode
_QUERY_SECRET = re.compile(r"(?i)((?:api_key|token)=)[^&#\s'\"<]*")


class Submitted(msgspec.Struct, frozen=True, kw_only=True):
    number: str
    guid: str
    already: bool  # iHub held this very order already (an earlier attempt landed)
    status: str | None = None  # its status then, when it was looked up


class Cancelled(msgspec.Struct, frozen=True, kw_only=True):
    number: str
    already: bool  # it was cancelled before


def redact(text: str, api_key: str) -> str:
    """``text`` without the api_key in any form, nor any ``api_key=``/``token=`` value."""
    return _QUERY_SECRET.sub(r"\1***", redact_secrets(text, api_key))


class SekoClient:
    """iHub REST calls over one shared aiohttp session; see the module docstring."""

    def __init__(
        self,
        url: str,
        api_key: Secret,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 30.0,
        query_cap: int = protocol.QUERY_CAP,
    ) -> None:
        if not api_key.reveal():
            raise SekoAuthFailed("an api_key is required", operation="settings")
        self._url, self._api_key, self._session = url.rstrip("/"), api_key, session
        self._timeout, self._query_cap = timeout, query_cap

    def __repr__(self) -> str:
        return f"SekoClient(url={self._url!r}, timeout={self._timeout:g})"

    # --- sales orders ---

    async def submit_order(self, order: SalesOrder) -> Submitted:
        operation, guid = "salesorders.submit", order_guid(order)
        path = "salesorders/v4/" + ("websubmit" if order.web else "submit")
        body = _ENCODE(order_body(msgspec.structs.replace(order, guid=guid)))
        answer = await self._call(operation, "POST", path, body=body, write=True)
        status = _status(answer, operation)
        if status.success:
            return Submitted(number=order.number, guid=answer.guid or guid, already=False)
        stock = protocol.NO_FREE_STOCK.search(status.message)
        if stock is None and not protocol.ALREADY_EXISTS.search(status.message):
            raise SekoRejected(status.code, status.message, operation=operation)
        existing = await self._existing(guid, operation)
        if existing is not None:
            log.info("Seko already holds order %s (%s)", order.number, existing.status)
            return Submitted(number=order.number, guid=guid, already=True, status=existing.status)
        if stock is not None:
            product = stock.group("product")
            raise SekoNoFreeStock(product, status.code, status.message, operation=operation)
        message = f"{status.message} (held by another order than {order.number}'s content)"
        raise SekoRejected(status.code, message, operation=operation, conflict=True)

    async def _existing(self, guid: str, operation: str) -> OrderStatus | None:
        try:
            return await self.order_status(guid)
        except SekoUnavailable as failure:  # the load's outcome stays unknown
            reason = f"looking the order up: {failure.reason}"
            raise SekoUnavailable(reason, ambiguous=True, operation=operation) from None

    async def cancel_order(self, number: str, reason: CancelReason = "006") -> Cancelled:
        operation = "salesorders.cancel"
        path = f"salesorders/v3/{quote(number, safe='')}/cancel"
        answer = await self._call(operation, "POST", path, query={"reasonCode": reason}, write=True)
        status = _status(answer, operation)
        if status.success or protocol.ALREADY_CANCELLED.search(status.message):
            return Cancelled(number=number, already=not status.success)
        raise SekoRejected(status.code, status.message, operation=operation)

    async def order_status(self, guid: str) -> OrderStatus | None:
        answer = await self._read("salesorders.status", f"salesorders/v1/{quote(guid)}/status")
        if answer is None or answer.status is None:
            return None
        return OrderStatus(guid=answer.guid or guid, status=answer.status)

    async def order_tracking(self, guid: str) -> Tracking | None:
        path = f"salesorders/v1/{quote(guid)}/tracking"
        answer = await self._read("salesorders.tracking", path)
        if answer is None:
            return None
        return Tracking(
            guid=answer.guid or guid, courier=answer.courier, tracking_number=answer.tracking_number
        )

    # --- products and stock ---

    async def submit_product(self, product: ProductMaster) -> bool:
        """Load ``product``: True when created, False when iHub already had it."""
        operation = "products.submit"
        status = await self._load_product(operation, "products/v4/submit", product)
        if status.success:
            return True
        if protocol.ALREADY_EXISTS.search(status.message):
            return False
        raise SekoRejected(status.code, status.message, operation=operation)

    async def update_product(self, product: ProductMaster) -> None:
        operation = "products.update"
        status = await self._load_product(operation, "products/v4/update", product)
        if not status.success:
            raise SekoRejected(status.code, status.message, operation=operation)

    async def _load_product(self, operation: str, path: str, product: ProductMaster) -> CallStatus:
        body = _ENCODE({"ProductMaster": product})
        return _status(await self._call(operation, "POST", path, body=body, write=True), operation)

    async def stock_quantity(
        self, product_codes: Iterable[str] = (), dc: str | None = None
    ) -> list[StockQuantity]:
        """Free stock of these products (all, when none is named) in ``dc`` (every DC)."""
        operation, rows = "stock.quantity", []
        for chunk in self._chunks(list(dict.fromkeys(product_codes)), dc):
            query = {"productCodes": ",".join(chunk)} if chunk else {}
            if dc:
                query["dc"] = dc
            answer = await self._typed(operation, "stock/v3/quantity", query, protocol.StockAnswer)
            rows += answer.list_.rows if answer else []
        return rows

    def _chunks(self, codes: list[str], dc: str | None) -> list[list[str]]:
        """``codes`` in groups whose query string fits under the cap ([[]]: all products)."""
        if not codes:
            return [[]]
        fixed = len(self._query({"dc": dc} if dc else {})) + len("&productCodes=")
        groups: list[list[str]] = [[]]
        size = fixed
        for code in codes:
            grow = len(quote(code, safe="")) + (3 if groups[-1] else 0)  # "%2C" between codes
            if groups[-1] and size + grow > self._query_cap:
                groups.append([])
                size, grow = fixed, len(quote(code, safe=""))
            if fixed + grow > self._query_cap:
                raise ValueError(f"product code too long for a stock query: {code[:40]!r}")
            groups[-1].append(code)
            size += grow
        return groups

    # --- retrieves (v1) ---

    async def dispatches(
        self, start: datetime, end: datetime, dc: str | None = None
    ) -> list[Dispatch]:
        path = f"dispatches/v1/status/{_span(start, end)}"
        query = {"status": "Dispatched"} | ({"dc": dc} if dc else {})
        answer = await self._typed("dispatches.status", path, query, protocol.DispatchesAnswer)
        return answer.list_.items if answer else []

    async def grns(self, start: datetime, end: datetime, dc: str | None = None) -> list[GrnLine]:
        path = f"grns/v1/{_span(start, end)}"  # [UNCONF] the window form
        answer = await self._typed("grns.range", path, {"dc": dc} if dc else {}, protocol.GrnAnswer)
        return answer.list_.items if answer else []

    async def grn(self, guid: str) -> list[GrnLine]:
        answer = await self._typed("grns.guid", f"grns/v1/{quote(guid)}", {}, protocol.GrnAnswer)
        return answer.list_.items if answer else []

    async def adjustments(
        self, start: datetime, end: datetime, dc: str | None = None
    ) -> list[StockAdjustment]:
        path = f"stock/v1/adjustment/{_span(start, end)}"
        answer = await self._typed(
            "stock.adjustment", path, {"dc": dc} if dc else {}, protocol.AdjustmentsAnswer
        )
        return answer.list_.items if answer else []

    # --- transport ---

    async def _read(self, operation: str, path: str) -> Answer | None:
        """A GET's envelope, or None for iHub's "no results" (Code 100)."""
        answer = await self._call(operation, "GET", path)
        return answer if _found(answer, operation) else None

    async def _typed(
        self, operation: str, path: str, query: dict[str, str], kind: type[T]
    ) -> T | None:
        raw = await self._send(operation, "GET", path, query, None, write=False)
        if not _found(self._decode(raw, Answer, operation, write=False), operation):
            return None
        return self._decode(raw, kind, operation, write=False)

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        write: bool = False,
    ) -> Answer:
        raw = await self._send(operation, method, path, query or {}, body, write=write)
        answer = self._decode(raw, Answer, operation, write=write)
        if answer.call_status is None:  # a 2xx that is not iHub's envelope
            reason = "an answer without CallStatus"
            raise SekoUnavailable(reason, ambiguous=write, operation=operation)
        return answer

    def _query(self, query: dict[str, str]) -> str:
        return urlencode({**query, "api_key": self._api_key.reveal()}, quote_via=quote)

    async def _send(
        self,
        operation: str,
        method: str,
        path: str,
        query: dict[str, str],
        body: bytes | None,
        *,
        write: bool,
    ) -> bytes:
        """One request; the body of an answer that carries iHub's envelope, else raised."""
        url = URL(f"{self._url}/{path}?{self._query(query)}", encoded=True)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self._session.request(
            method, url, data=body, headers=headers, allow_redirects=False
        )
        status, raw, answered, _ = await exchange(
            request,
            self._timeout,
            write=write,
            unavailable=lambda reason, ambiguous: SekoUnavailable(
                reason, ambiguous=ambiguous, operation=operation
            ),
        )
        log.debug("Seko %s %s: HTTP %d", method, path, status)  # (never the query string)
        text = self._redact(raw[:300].decode(errors="replace"))
        if status in (401, 403):
            raise SekoAuthFailed(
                f"{operation}: iHub refused the api_key (HTTP {status}): {text}",
                operation=operation,
            )
        if status == 429 or status >= 500:
            ambiguous = write and status in (500, 502, 504)
            retry_after = _seconds(answered.get("Retry-After"))
            raise SekoUnavailable(
                f"HTTP {status}: {text}",
                ambiguous=ambiguous,
                operation=operation,
                status=status,
                retry_after=retry_after,
            )
        if not 200 <= status < 300 and b"CallStatus" not in raw:  # (a 4xx with an envelope
            raise SekoRejected(status, f"HTTP {status}: {text}", operation=operation)  # is read)
        return raw

    def _decode(self, raw: bytes, kind: type[T], operation: str, *, write: bool) -> T:
        try:
            return protocol.decode(raw, kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reason = self._redact(f"unreadable answer: {exc}")
            raise SekoUnavailable(reason, ambiguous=write, operation=operation) from None

    def _redact(self, text: str) -> str:
        return redact(text, self._api_key.reveal())


def _status(answer: Answer, operation: str) -> CallStatus:
    if answer.call_status is None:
        reason = "an answer without CallStatus"
        raise SekoUnavailable(reason, ambiguous=False, operation=operation)
    return answer.call_status


def _found(answer: Answer, operation: str) -> bool:
    """True for a successful read, False for iHub's "no results"; any other refusal raised."""
    status = _status(answer, operation)
    if status.success:
        return True
    if status.code == protocol.NO_RESULTS_CODE or protocol.NO_RESULTS.search(status.message):
        return False
    raise SekoRejected(status.code, status.message, operation=operation)


def _span(start: datetime, end: datetime) -> str:
    """``{from}/{to}`` of a v1 retrieve, UTC, ``yyyy-MM-ddTHH:mm:ssZ`` [OBS]."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("retrieve windows are timezone-aware")
    form = "%Y-%m-%dT%H:%M:%SZ"
    return f"{start.astimezone(UTC).strftime(form)}/{end.astimezone(UTC).strftime(form)}"


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def seko_client_from_settings(settings: SekoSettings, session: aiohttp.ClientSession) -> SekoClient:
    """The process's client from ``[seko]``; the api_key must be set."""
    if settings.api_key is None or not settings.api_key.reveal():
        raise SekoAuthFailed("seko.api_key must be set", operation="settings")
    return SekoClient(settings.url, settings.api_key, session, timeout=settings.timeout_seconds)


__all__ = [
    "Cancelled",
    "SekoAuthFailed",
    "SekoClient",
    "SekoError",
    "SekoNoFreeStock",
    "SekoRejected",
    "SekoUnavailable",
    "Submitted",
    "redact",
    "seko_client_from_settings",
]
