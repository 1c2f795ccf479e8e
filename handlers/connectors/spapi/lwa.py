"""Login with Amazon access tokens for SP-API, and the errors every SP-API call raises.

:class:`LwaTokenProvider` runs the refresh-token grant and caches the access token until
shortly before it expires. The :class:`SpApiError` family lives here because the token
provider raises it too; :mod:`handlers.connectors.spapi.client` re-exports it and documents the
contract for callers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import msgspec

from config.redaction import redact_secrets
from config.settings import Secret
from worker.errors import SkuflowError

# --- errors: what the caller decides on ---


class SpApiError(SkuflowError):
    """Any failed SP-API or LWA call; ``operation`` names it (``confirmShipment``, ``lwa``)."""

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message)
        self.operation = operation


class SpApiRejected(SpApiError):
    def __init__(
        self, code: str, message: str, details: str = "", *, status: int, operation: str
    ) -> None:
        text = f"{operation} rejected (HTTP {status} {code}): {message}"
        super().__init__(f"{text} ({details})" if details else text, operation=operation)
        self.code, self.message, self.details, self.status = code, message, details, status


class SpApiThrottled(SpApiError):
    def __init__(self, retry_after: float, *, operation: str) -> None:
        super().__init__(
            f"{operation} throttled; retry after {retry_after:.2f}s", operation=operation
        )
        self.retry_after = retry_after


class SpApiUnavailable(SpApiError):
    def __init__(
        self, reason: str, *, ambiguous: bool, operation: str, status: int | None = None
    ) -> None:
        maybe = " (the request may have been applied)" if ambiguous else ""
        super().__init__(f"{operation} unavailable: {reason}{maybe}", operation=operation)
        self.reason, self.ambiguous, self.status = reason, ambiguous, status


class SpApiAuthError(SpApiError):
    pass


# --- Login with Amazon ---


class _LwaToken(msgspec.Struct):
    access_token: str
    expires_in: float = 3600.0


class _LwaError(msgspec.Struct):
    error: str = "unknown_error"
    error_description: str = ""


class LwaTokenProvider:
    """Access tokens from the refresh-token grant, cached until shortly before they expire.

    One refresh at a time: concurrent callers queue on a lock and take the token the first
    of them fetched, or the error it got (so an LWA outage costs one request, not one each).
    """

    def __init__(
        self,
        endpoint: str,
        client_id: str,
        client_secret: Secret,
        refresh_token: Secret,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 10.0,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoint, self._client_id = endpoint, client_id
        self._client_secret, self._refresh_token = client_secret, refresh_token
        self._session, self._timeout = session, timeout
        self._margin, self._clock = refresh_margin, clock
        self._lock = asyncio.Lock()
        self._token: Secret | None = None
        self._valid_until = 0.0
        self._failure: tuple[int, SpApiError] | None = None
        self.refreshes = 0  # token requests sent

    def __repr__(self) -> str:
        return f"LwaTokenProvider(endpoint={self._endpoint!r}, client_id={self._client_id!r})"

    def _cached(self) -> Secret | None:
        return self._token if self._clock() < self._valid_until else None

    async def token(self) -> Secret:
        cached = self._cached()
        if cached is not None:
            return cached
        seen = self.refreshes - 1 if self._lock.locked() else self.refreshes  # one in flight?
        async with self._lock:
            cached = self._cached()
            if cached is not None:
                return cached
            if self._failure is not None and self._failure[0] > seen:
                raise self._failure[1]  # it failed while we queued: share the outcome
            self.refreshes += 1
            try:
                token, lifetime = await self._fetch()
            except SpApiError as exc:
                self._failure = (self.refreshes, exc)
                raise
            self._failure = None
            self._token = token
            self._valid_until = self._clock() + lifetime - min(self._margin, lifetime / 10)
            return token

    def invalidate(self, token: Secret | None = None) -> None:
        """Forget the cached token (only if it is ``token``, when given: a stale 403 must not
        discard a token fetched meanwhile)."""
        if token is None or token == self._token:
            self._token, self._valid_until = None, 0.0

    async def _fetch(self) -> tuple[Secret, float]:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token.reveal(),
            "client_id": self._client_id,
            "client_secret": self._client_secret.reveal(),
        }
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.post(self._endpoint, data=form) as response:
                    status, raw = response.status, await response.read()
        except TimeoutError:
            reason = f"no token response within {self._timeout:g}s"
            raise SpApiUnavailable(reason, ambiguous=False, operation="lwa") from None
        except aiohttp.ClientError as exc:
            reason = f"token request failed ({type(exc).__name__})"
            raise SpApiUnavailable(reason, ambiguous=False, operation="lwa") from None
        try:
            if status == 200:
                grant = msgspec.json.decode(raw, type=_LwaToken)
                return Secret(grant.access_token), max(1.0, grant.expires_in)
            problem = msgspec.json.decode(raw, type=_LwaError)
        except msgspec.MsgspecError:
            problem = _LwaError(f"malformed answer (HTTP {status})")
        if status >= 500 or status in (200, 429):
            reason = f"LWA answered HTTP {status} {problem.error}"
            raise SpApiUnavailable(reason, ambiguous=False, operation="lwa")
        text = f"LWA refused the refresh-token grant: {problem.error} {problem.error_description}"
        # never echo a credential, in whatever form the server sends it back
        text = redact_secrets(text, self._client_secret.reveal(), self._refresh_token.reveal())
        raise SpApiAuthError(text.strip(), operation="lwa")
