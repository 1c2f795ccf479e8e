"""The errors every iHub call raises, each a :class:`~worker.errors.SkuflowError`.

- :class:`SekoNoFreeStock` — iHub refused a sales order because ``product`` has no free stock
  in the DC [DOC: the whole order is refused]. Nothing was created: submit it again when stock
  arrives.
- :class:`SekoRejected` — any other refusal (``CallStatus.Success`` false, or a 4xx that is not
  about credentials): iHub's ``code`` and ``message``; sending the same again cannot succeed.
  ``conflict`` is true when the SalesOrderNumber is already held by a *different* order.
- :class:`SekoUnavailable` — timeout, connection failure, 5xx, 429, an answer that cannot be
  read. ``ambiguous``: a write may have been applied (a timeout or a dropped connection after
  sending, a 500/502/504, an unreadable 2xx); resending the same order is safe (idempotent on
  its number), other writes look first.
- :class:`SekoAuthFailed` — the api_key was refused (401/403): no retry helps until it is fixed.

Messages never carry the api_key, which travels in the query string: every text is redacted
before it is raised.
"""

from __future__ import annotations

from worker.errors import SkuflowError


class SekoError(SkuflowError):
    """Any failed iHub call; ``operation`` names it (``salesorders.submit``, ``stock.quantity``)."""

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message)
        self.operation = operation


class SekoRejected(SekoError):
    def __init__(self, code: int, message: str, *, operation: str, conflict: bool = False) -> None:
        super().__init__(
            f"{operation} refused by Seko (code {code}): {message}", operation=operation
        )
        self.code, self.message, self.conflict = code, message, conflict


class SekoNoFreeStock(SekoError):
    def __init__(self, product: str, code: int, message: str, *, operation: str) -> None:
        super().__init__(
            f"{operation} refused by Seko: no free stock of {product} (code {code}): {message}",
            operation=operation,
        )
        self.product, self.code, self.message = product, code, message


class SekoUnavailable(SekoError):
    def __init__(
        self,
        reason: str,
        *,
        ambiguous: bool,
        operation: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        maybe = " (the request may have been applied)" if ambiguous else ""
        super().__init__(f"{operation} unavailable: {reason}{maybe}", operation=operation)
        self.reason, self.ambiguous, self.status = reason, ambiguous, status
        self.retry_after = retry_after


class SekoAuthFailed(SekoError):
    pass
