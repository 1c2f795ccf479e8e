"""The errors every SAP Business One Service Layer call raises, translated from B1's answers.

Service Layer answers an error with ``{"error": {"code": ..., "message": ...}}``: under
``/b1s/v1`` (OData v3) the code is a number and the message ``{"lang", "value"}``; under
``/b1s/v2`` (OData v4) both are strings. :func:`parse_answer` reads either (and the HTML page a
load balancer sends when no Service Layer node is up); :func:`translate` turns it into one of:

- :class:`B1Locked` — ODBC -2039 "Another user or another operation modified data", a 412, or
  a database lock text (deadlock, lock wait timeout): nothing was written; retry later.
- :class:`B1DuplicateEntry` — ODBC -2035 "This entry already exists in the following tables":
  a row B1 was about to insert already exists. For a document that is either the document
  itself (an earlier attempt did reach B1: look it up by its key) or a collision with a
  concurrent write on a numbering or log row (retry later) — never a bad line. The codes read
  this way are ``collision_codes`` (``b1.collision_codes``, default ``{-2035}``).
- :class:`B1Unavailable` — 5xx, timeout, connection failure. ``ambiguous`` is true when a
  write may have been applied (500/502/504, a timeout or a connection dropped after sending);
  a 503 (refused at the door) or a refused connection is not ambiguous.
- :class:`B1Rejected` — a business rejection that resending cannot fix (negative stock,
  inactive item, missing batch, unknown record). ``line`` is the 0-based index of the
  ``DocumentLines`` entry B1 blames, when it says: B1 writes the 1-based row as
  ``[IGE1.ItemCode][line: 2]`` (or "selected in row 2"), or names the item.
- :class:`B1AuthError` — the login was refused, or a fresh session was refused at once.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import msgspec

from config.redaction import redact_secrets
from worker.errors import SkuflowError

#: B1's concurrent-modification error (ODBC -2039); 412 is its answer to a stale If-Match.
LOCK_CODES = frozenset({-2039})
#: B1's "This entry already exists in the following tables (ODBC -2035)": a duplicate key on
#: insert. Service Layer puts the code in ``code``; some builds answer ``code: -1`` and carry
#: ``(ODBC -2035)`` in the text only, so the text is read for the same codes.
COLLISION_CODES = frozenset({-2035})
LOCK_TEXTS = (
    "another user or another operation modified data",
    "deadlock",  # SQL Server 1205 / HANA 133, passed through by B1
    "lock wait timeout",  # HANA 131
    "lock-wait time out",
)
_ROW = re.compile(r"\[line:\s*(\d+)\]|\bin row (\d+)\b", re.IGNORECASE)
_ITEM = re.compile(r"\bitem\s+'?([^'\s]+?)'?(?:\s|$)", re.IGNORECASE)


class B1Error(SkuflowError):
    """Any failed Service Layer call; ``operation`` names it (``Login``, ``InventoryGenExits``)."""

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message)
        self.operation = operation


class B1AuthError(B1Error):
    pass


class B1Unavailable(B1Error):
    def __init__(
        self, reason: str, *, ambiguous: bool, operation: str, status: int | None = None
    ) -> None:
        maybe = " (the request may have been applied)" if ambiguous else ""
        super().__init__(f"{operation} unavailable: {reason}{maybe}", operation=operation)
        self.reason, self.ambiguous, self.status = reason, ambiguous, status


class B1Locked(B1Error):
    def __init__(self, code: int | None, message: str, *, operation: str, status: int) -> None:
        super().__init__(
            f"{operation} refused, data locked or modified by another operation "
            f"(HTTP {status}, code {code}): {message}",
            operation=operation,
        )
        self.code, self.message, self.status = code, message, status


class B1DuplicateEntry(B1Error):
    """B1 refused an insert whose row already exists (ODBC -2035): nothing was written by it."""

    def __init__(self, code: int | None, message: str, *, operation: str, status: int) -> None:
        super().__init__(
            f"{operation} refused, the entry already exists (HTTP {status}, code {code}): "
            f"{message}",
            operation=operation,
        )
        self.code, self.message, self.status = code, message, status


class B1Rejected(B1Error):
    def __init__(
        self, code: int | None, message: str, line: int | None, *, operation: str, status: int
    ) -> None:
        where = f" [document line {line}]" if line is not None else ""
        super().__init__(
            f"{operation} rejected (HTTP {status}, code {code}): {message}{where}",
            operation=operation,
        )
        self.code, self.message, self.line, self.status = code, message, line, status


class _Message(msgspec.Struct):
    value: str = ""


class _Error(msgspec.Struct):
    code: int | str | None = None
    message: _Message | str = ""


class _Answer(msgspec.Struct):
    error: _Error


_DECODE = msgspec.json.Decoder(_Answer).decode


def parse_answer(raw: bytes) -> tuple[int | None, str]:
    """(code, message) of an error answer; a non-JSON body gives (None, its start)."""
    try:
        error = _DECODE(raw).error
    except msgspec.MsgspecError:
        text = re.sub(r"<[^>]+>", " ", raw[:300].decode(errors="replace"))
        return None, " ".join(text.split())
    code = error.code
    if isinstance(code, str):
        code = int(code) if re.fullmatch(r"-?\d+", code.strip()) else None
    message = error.message if isinstance(error.message, str) else error.message.value
    return code, message


def is_lock(status: int, code: int | None, message: str) -> bool:
    text = message.lower()
    return status == 412 or code in LOCK_CODES or any(t in text for t in LOCK_TEXTS)


def is_collision(
    status: int, code: int | None, message: str, codes: Collection[int] = COLLISION_CODES
) -> bool:
    """A 4xx answer with one of ``codes``, as the code or as ``(ODBC <code>)`` in the text."""
    if not 400 <= status < 500:
        return False
    text = message.lower()
    return code in codes or any(f"(odbc {c})" in text for c in codes)


def failed_line(message: str, item_codes: Sequence[str]) -> int | None:
    """The 0-based index of the document line B1's ``message`` blames, if it says."""
    row = _ROW.search(message)
    if row is not None:
        index = int(row.group(1) or row.group(2)) - 1
        return index if 0 <= index < len(item_codes) else None
    named = {m.group(1) for m in _ITEM.finditer(message)}
    hits = [index for index, code in enumerate(item_codes) if code in named]
    return hits[0] if len(hits) == 1 else None


def translate(
    operation: str,
    status: int,
    raw: bytes,
    *,
    write: bool,
    item_codes: Sequence[str] = (),
    collision_codes: Collection[int] = COLLISION_CODES,
) -> B1Error:
    """The typed error for a Service Layer answer that is neither 2xx nor a session 401."""
    code, message = parse_answer(raw)
    if is_collision(status, code, message, collision_codes):
        return B1DuplicateEntry(code, message, operation=operation, status=status)
    if is_lock(status, code, message):
        return B1Locked(code, message, operation=operation, status=status)
    if status >= 500 or status in (408, 429):
        ambiguous = write and status not in (503, 429)
        reason = f"HTTP {status}" + (f" code {code}: {message}" if message else "")
        return B1Unavailable(reason, ambiguous=ambiguous, operation=operation, status=status)
    if status in (401, 403):
        reason = f"{operation} denied (HTTP {status}, code {code}): {message}"
        return B1AuthError(reason, operation=operation)
    line = failed_line(message, item_codes)
    return B1Rejected(code, message, line, operation=operation, status=status)


def redact(text: str, *secrets: str) -> str:
    """Every form of every secret (raw, URL-encoded, JSON-escaped, base64) as ``***``."""
    return redact_secrets(text, *secrets)
