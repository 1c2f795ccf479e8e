"""Amazon SP-API connector: LWA access tokens, Orders v0 ``confirmShipment`` and ``getOrder``.

The contract for callers (the dispatch handler parks whatever this raises):

* ``confirm_shipment`` returns :class:`ShipmentConfirmed` once Amazon answered 204, and
  ``get_order`` an :class:`OrderInfo`. Anything else raises one of these subclasses of
  :class:`SpApiError` (a :class:`~worker.errors.SkuflowError`), never an aiohttp exception:

  - :class:`SpApiRejected` — Amazon refused the request (400-class: unknown order or order
    item, overfulfilment, order cancelled or already shipped, bad carrier or date). Sending it
    again cannot succeed: record an exception with ``code``/``message``/``details``.
  - :class:`SpApiThrottled` — still 429 after the in-call retries; try again after
    ``retry_after`` seconds.
  - :class:`SpApiUnavailable` — 5xx, timeout or connection failure after the in-call retries;
    retry later. ``ambiguous`` is true when a request may have reached Amazon and been applied
    (timeout, dropped connection, 500/502/504). Resending the same order and
    ``packageReferenceId`` is then safe: Amazon treats it as an edit of that package (so a
    rejection after an ambiguous attempt deserves a ``get_order`` before it is believed).
  - :class:`SpApiAuthError` — the credentials were refused (LWA ``invalid_client`` or
    ``invalid_grant``, or a 401/403 with a fresh token): no retry helps until they are fixed.

* The client retries a little by itself: up to ``RetryPolicy.attempts`` sends with jittered
  backoff (429 waits for ``Retry-After`` or one token of the advertised rate), and gives up
  early rather than sleep past ``max_elapsed``; the caller owns the long, durable retries.
  Every send, retries included, first takes a token from the operation's shared limiter: for
  confirmShipment a :class:`~worker.pacing.DeadlinePacer` (the token goes to the most urgent
  dispatch when it is free; a 429 stops every grant until ``Retry-After``), else a
  :class:`~handlers.connectors.ratelimit.TokenBucket`. An access token that Amazon calls
  expired, revoked or missing is invalidated and the call repeated once with a new one.
* Secrets (client secret, refresh token, access tokens) are :class:`~config.settings.Secret`
  here, revealed only into the request that needs them: never in logs, errors or ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import asyncpg
import msgspec
from opentelemetry import trace

from config.settings import Secret, SpApiSettings
from handlers.common.telemetry import DomainTelemetry
from handlers.connectors.http import exchange
from handlers.connectors.ratelimit import TokenBucket
from handlers.connectors.shared_bucket import SharedTokenBucket, bucket_name
from handlers.connectors.spapi.lwa import LwaTokenProvider as LwaTokenProvider
from handlers.connectors.spapi.lwa import SpApiAuthError as SpApiAuthError
from handlers.connectors.spapi.lwa import SpApiError as SpApiError
from handlers.connectors.spapi.lwa import SpApiRejected as SpApiRejected
from handlers.connectors.spapi.lwa import SpApiThrottled as SpApiThrottled
from handlers.connectors.spapi.lwa import SpApiUnavailable as SpApiUnavailable
from worker.pacing import DeadlinePacer

log = logging.getLogger("skuflow.spapi")

CONFIRM_SHIPMENT, GET_ORDER = "confirmShipment", "getOrder"
#: getOrder's published usage plan (rate per second, burst).
GET_ORDER_PLAN = (0.5, 30)


class _StaleToken(Exception):
    def __init__(self, token: Secret) -> None:
        super().__init__("stale access token")
        self.token = token


# --- the Orders v0 model, with SP-API's JSON names ---


class ConfirmShipmentItem(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True
):
    order_item_id: str
    quantity: int
    transparency_codes: tuple[str, ...] | None = None


class PackageDetail(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """One package of a shipment; ``package_reference_id`` is a positive number, unique per
    order (repeating it edits that package). ``carrier_name`` is required with ``Others``."""

    package_reference_id: str
    carrier_code: str
    tracking_number: str
    ship_date: datetime  # timezone-aware; sent as ISO 8601 UTC
    order_items: tuple[ConfirmShipmentItem, ...]
    carrier_name: str | None = None
    shipping_method: str | None = None
    ship_from_supply_source_id: str | None = None

    def __post_init__(self) -> None:
        if self.ship_date.tzinfo is None:
            raise ValueError("ship_date must be timezone-aware")


class _ConfirmShipmentRequest(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True
):
    marketplace_id: str
    package_detail: PackageDetail
    cod_collection_method: str | None = None


class OrderInfo(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    """The parts of getOrder's ``Order`` skuflow uses; ``latest_ship_date`` is the deadline."""

    amazon_order_id: str
    order_status: str  # Pending, Unshipped, PartiallyShipped, Shipped, Canceled, ...
    marketplace_id: str | None = None
    latest_ship_date: datetime | None = None
    earliest_ship_date: datetime | None = None
    number_of_items_shipped: int | None = None
    number_of_items_unshipped: int | None = None


class ShipmentConfirmed(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    package_reference_id: str
    request_id: str | None  # Amazon's x-amzn-RequestId, for support cases
    attempts: int


class ApiError(msgspec.Struct, frozen=True):
    code: str
    message: str = ""
    details: str = ""


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    attempts: int = 3  # sends per call, the first included
    initial_backoff: float = 0.25
    max_backoff: float = 4.0
    max_elapsed: float = 15.0  # never start a wait that would end later than this


class _ErrorList(msgspec.Struct):
    errors: list[ApiError] = []


class _GetOrderResponse(msgspec.Struct):
    payload: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


_ENCODE = msgspec.json.Encoder().encode
_DECODE_ERRORS = msgspec.json.Decoder(_ErrorList).decode
_DECODE_ORDER = msgspec.json.Decoder(_GetOrderResponse).decode


# --- the SP-API client ---


class _Answer(msgspec.Struct, frozen=True):
    body: bytes
    request_id: str | None
    attempts: int


class SpApiClient:
    """Orders v0 calls over one shared aiohttp session; see the module docstring."""

    def __init__(
        self,
        endpoint: str,
        tokens: LwaTokenProvider,
        session: aiohttp.ClientSession,
        bucket: TokenBucket | SharedTokenBucket | DeadlinePacer,
        timeout: float = 10.0,
        *,
        order_bucket: TokenBucket | None = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        telemetry: DomainTelemetry | None = None,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._telemetry = telemetry or DomainTelemetry()
        self._tokens, self._session, self._timeout = tokens, session, timeout
        self._buckets: dict[str, TokenBucket | SharedTokenBucket | DeadlinePacer] = {
            CONFIRM_SHIPMENT: bucket,
            GET_ORDER: order_bucket or TokenBucket(*GET_ORDER_PLAN),
        }
        self._retry = retry or RetryPolicy()
        self._random = rng or random.Random()
        self.rate_limits: dict[str, float] = {}  # last x-amzn-RateLimit-Limit per operation

    def __repr__(self) -> str:
        return f"SpApiClient(endpoint={self._endpoint!r}, timeout={self._timeout:g})"

    @property
    def pacer(self) -> DeadlinePacer | None:
        """confirmShipment's deadline pacer, when it has one (the worker must run it)."""
        bucket = self._buckets[CONFIRM_SHIPMENT]
        return bucket if isinstance(bucket, DeadlinePacer) else None

    async def confirm_shipment(
        self, order_id: str, marketplace_id: str, package: PackageDetail
    ) -> ShipmentConfirmed:
        package = msgspec.structs.replace(package, ship_date=package.ship_date.astimezone(UTC))
        body = _ENCODE(
            _ConfirmShipmentRequest(marketplace_id=marketplace_id, package_detail=package)
        )
        path = f"/orders/v0/orders/{quote(order_id, safe='')}/shipmentConfirmation"
        answer = await self._call(CONFIRM_SHIPMENT, "POST", path, body)
        return ShipmentConfirmed(
            order_id=order_id,
            package_reference_id=package.package_reference_id,
            request_id=answer.request_id,
            attempts=answer.attempts,
        )

    async def get_order(self, order_id: str) -> OrderInfo:
        answer = await self._call(
            GET_ORDER, "GET", f"/orders/v0/orders/{quote(order_id, safe='')}", None
        )
        try:
            payload = _DECODE_ORDER(answer.body).payload
            if bytes(payload).strip() in (b"", b"null", b"{}"):  # Amazon's "not found"
                raise SpApiRejected(
                    "NotFound", f"Order {order_id} not found.", status=200, operation=GET_ORDER
                )
            return msgspec.json.decode(payload, type=OrderInfo)
        except msgspec.MsgspecError as exc:
            reason = f"malformed getOrder response: {exc}"
            raise SpApiUnavailable(reason, ambiguous=False, operation=GET_ORDER) from None

    def pace(self, operation: str, bucket: TokenBucket) -> None:
        """Pace ``operation`` (one a sibling module calls through :meth:`get`) by ``bucket``."""
        self._buckets[operation] = bucket

    async def get(self, operation: str, path: str, query: Sequence[tuple[str, str]] = ()) -> bytes:
        """A paced, retried ``GET path?query``: the body of the 2xx answer (any other answer
        raised as the module docstring says). ``operation`` must be paced (:meth:`pace`)."""
        if query:
            path = f"{path}?{urlencode(query, quote_via=quote)}"
        return (await self._call(operation, "GET", path, None)).body

    async def _call(self, operation: str, method: str, path: str, body: bytes | None) -> _Answer:
        result = "ok"
        try:
            return await self._attempts(operation, method, path, body)
        except SpApiError as failure:
            result = type(failure).__name__
            span = trace.get_current_span()
            span.add_event(
                "spapi.failed", {"skuflow.operation": operation, "skuflow.reason": str(failure)}
            )
            raise
        finally:
            self._telemetry.spapi_calls.add(1, {"skuflow.operation": operation, "result": result})

    async def _attempts(
        self, operation: str, method: str, path: str, body: bytes | None
    ) -> _Answer:
        started, attempts, ambiguous, renewed = time.monotonic(), 0, False, False
        while True:
            attempts += 1
            try:
                return await self._send(operation, method, path, body, attempts)
            except _StaleToken as stale:
                if renewed:
                    raise SpApiAuthError(
                        f"{operation}: access denied with a fresh token", operation=operation
                    ) from None
                renewed, attempts = True, attempts - 1
                self._tokens.invalidate(stale.token)
                continue
            except (SpApiThrottled, SpApiUnavailable) as failure:
                if isinstance(failure, SpApiUnavailable):
                    ambiguous = ambiguous or failure.ambiguous
                    if ambiguous and not failure.ambiguous:  # an earlier send may have landed
                        failure = SpApiUnavailable(
                            failure.reason,
                            ambiguous=True,
                            operation=operation,
                            status=failure.status,
                        )
                delay = self._delay(failure, attempts)
                throttled = isinstance(failure, SpApiThrottled)
                if throttled:
                    self._telemetry.spapi_throttles.add(1, {"skuflow.operation": operation})
                trace.get_current_span().add_event(
                    "spapi.throttled" if throttled else "spapi.retry",
                    {
                        "skuflow.operation": operation,
                        "skuflow.attempt": attempts,
                        "skuflow.reason": str(failure),
                        "skuflow.retry_in_s": round(delay, 3),
                    },
                )
                bucket = self._buckets[operation]
                pacer = bucket if isinstance(bucket, DeadlinePacer) else None
                if throttled and pacer is not None:
                    # Amazon's bucket is empty: nobody gets a token before Retry-After (and a
                    # retry of this call waits for its next one by its deadline, not at the back).
                    pacer.throttled(delay)
                elapsed = time.monotonic() - started
                if attempts >= self._retry.attempts or elapsed + delay > self._retry.max_elapsed:
                    raise failure from None
                log.warning(
                    "%s attempt %d: %s; retrying in %.2fs", operation, attempts, failure, delay
                )
                if not (throttled and pacer is not None):
                    await asyncio.sleep(delay)

    def _delay(self, failure: SpApiError, attempt: int) -> float:
        if isinstance(failure, SpApiThrottled):
            return failure.retry_after * (1 + self._random.random() / 2)
        ceiling = min(self._retry.max_backoff, self._retry.initial_backoff * 2.0 ** (attempt - 1))
        return ceiling / 2 + self._random.random() * ceiling / 2

    async def _send(
        self, operation: str, method: str, path: str, body: bytes | None, attempt: int
    ) -> _Answer:
        """One paced, authenticated request; any answer but 2xx is raised as its error."""
        await self._buckets[operation].acquire()
        token = await self._tokens.token()
        headers = {"x-amz-access-token": token.reveal(), "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self._session.request(method, self._endpoint + path, data=body, headers=headers)
        status, raw, answer, _ = await exchange(
            request, self._timeout, write=True,  # (every call may have been applied)
            unavailable=lambda reason, ambiguous: SpApiUnavailable(
                reason, ambiguous=ambiguous, operation=operation
            ),
        )  # fmt: skip
        limit = _positive_float(answer.get("x-amzn-RateLimit-Limit"))
        if limit is not None:
            self.rate_limits[operation] = limit
        if 200 <= status < 300:
            return _Answer(raw, answer.get("x-amzn-RequestId"), attempt)
        errors = _errors(raw) or [ApiError(f"HTTP{status}", raw[:200].decode(errors="replace"))]
        first = errors[0]
        if status == 429:
            raise SpApiThrottled(self._retry_after(operation, answer), operation=operation)
        if status in (401, 403) and any(
            "token" in f"{e.message} {e.details}".lower() for e in errors
        ):
            raise _StaleToken(token)  # expired, revoked or missing: renew and send again
        if status in (401, 403):
            reason = f"{operation} denied: {first.code}: {first.message} {first.details}"
            raise SpApiAuthError(reason.strip(), operation=operation)
        if status >= 500:  # a 503 is refused at the door; 500/502/504 may have been applied
            reason = f"HTTP {status} {first.code}: {first.message}"
            raise SpApiUnavailable(
                reason, ambiguous=status != 503, operation=operation, status=status
            )
        raise SpApiRejected(
            first.code, first.message, first.details, status=status, operation=operation
        )

    def _retry_after(self, operation: str, answer: Any) -> float:
        """Retry-After if Amazon sent one, else one token at the advertised (or our) rate."""
        value = answer.get("Retry-After") or ""
        seconds = _positive_float(value)
        if seconds is None and value:
            with contextlib.suppress(TypeError, ValueError):
                seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        if seconds is not None:
            return max(0.0, seconds)
        return 1.0 / (self.rate_limits.get(operation) or self._buckets[operation].rate)


def _errors(raw: bytes) -> list[ApiError]:
    try:
        return _DECODE_ERRORS(raw).errors
    except msgspec.MsgspecError:
        return []


def _positive_float(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and number > 0 else None


def spapi_client_from_settings(
    settings: SpApiSettings,
    session: aiohttp.ClientSession,
    telemetry: DomainTelemetry | None = None,
    pool: asyncpg.Pool | None = None,
) -> SpApiClient:
    """The process's client: one token provider, one confirmShipment bucket from settings."""
    if not (settings.client_id and settings.client_secret and settings.refresh_token):
        raise SpApiAuthError(
            "spapi.client_id, spapi.client_secret and spapi.refresh_token must be set",
            operation="lwa",
        )
    tokens = LwaTokenProvider(
        settings.lwa_endpoint,
        settings.client_id,
        settings.client_secret,
        settings.refresh_token,
        session,
    )
    source: TokenBucket | SharedTokenBucket
    if pool is not None and settings.shared_rate_limit:
        # one plan per (application, seller): every replica draws from the same bucket
        name = bucket_name(CONFIRM_SHIPMENT, settings.client_id, settings.refresh_token.reveal())
        source = SharedTokenBucket(pool, name, settings.rate_per_second, settings.burst)
    else:
        source = TokenBucket(settings.rate_per_second, settings.burst)
    # Earliest deadline first at the token: the worker runs this pacer and hands it to the
    # urgent class, whose lanes are picked when it grants (see worker.pacing).
    pacer = DeadlinePacer(source)
    return SpApiClient(settings.endpoint, tokens, session, pacer, telemetry=telemetry)
