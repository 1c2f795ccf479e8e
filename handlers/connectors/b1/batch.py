"""Service Layer's ``$batch`` on the wire, for :meth:`.client.B1Client.batch`.

As "Working with SAP Business One Service Layer" §3.10 (p.81-88) describes it: ``POST
/b1s/v1/$batch`` with ``Content-Type: multipart/mixed;boundary=batch_<uuid>`` (unquoted:
B1SLayer notes that Service Layer refuses a quoted boundary); each sub request a part of
``Content-Type: application/http`` and ``Content-Transfer-Encoding: binary`` holding the HTTP
request — request line with the absolute path (``POST /b1s/v1/Orders HTTP/1.1``), headers, an
empty line, the body. Sub requests outside change sets are independent; this module writes no
change sets. The answer (202 under OData v3) is ``multipart/mixed`` with one
``application/http`` part per sub request executed, in order, each an HTTP answer (status line,
headers, body); a change set's answers, should one come, are read in their order too. B1 stops
a batch at its first failed sub request (p.86): the answers may be fewer than the requests.

:func:`batch_body` writes a batch; :func:`batch_answers` reads the answer with the standard
library's MIME parser (lenient about line ends and header spacing: the manual's examples write
``Content-Type:application/http``) and raises :class:`MalformedAnswer` for what it cannot read.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Sequence
from email.message import Message

import msgspec

_PARSER = email.parser.BytesParser(policy=email.policy.HTTP)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")


class MalformedAnswer(ValueError):
    """A batch answer that cannot be read."""


class BatchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One sub request: ``path`` after the Service Layer root (``/Orders``); ``operation``
    names it in errors; ``codes``: the item code of each document line (a rejection naming an
    item names its line), as for :meth:`~handlers.connectors.b1.client.B1Client.write`."""

    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    operation: str
    codes: tuple[str, ...] = ()


class BatchAnswer(msgspec.Struct, frozen=True):
    """One sub request's answer: status, headers (names lower case), body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def batch_body(boundary: str, root: str, requests: Sequence[BatchRequest]) -> bytes:
    """The body of a batch of independent sub requests; ``root``: the path of the Service Layer
    root (``/b1s/v1``)."""
    chunks: list[bytes] = []
    for request in requests:
        head = [f"{request.method} {root}{request.path} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in request.headers]
        if request.body is not None:
            head.append("Content-Type: application/json")
        chunks += [
            f"--{boundary}\r\n".encode(),
            b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n",
            "\r\n".join(head).encode() + b"\r\n\r\n",
            (request.body or b"") + b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def batch_answers(content_type: str, body: bytes) -> list[BatchAnswer]:
    """Every sub request's answer in a batch answer, in order (a change set's flattened)."""
    message = _PARSER.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if message.get_content_type() != "multipart/mixed" or not message.is_multipart():
        raise MalformedAnswer(f"a batch answer is multipart/mixed, not {content_type[:80]!r}")
    if message.defects:
        raise MalformedAnswer(f"malformed batch answer: {message.defects[0]!r}")
    return [answer for part in _parts(message) for answer in _answers(part)]


def _parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    parts = (
        [part for part in payload if isinstance(part, Message)] if isinstance(payload, list) else []
    )
    if not parts:
        raise MalformedAnswer("a multipart part without parts")
    return parts


def _answers(part: Message) -> list[BatchAnswer]:
    if part.get_content_type() == "multipart/mixed":  # a change set's answers
        return [answer for inner in _parts(part) for answer in _answers(inner)]
    if part.get_content_type() != "application/http":
        raise MalformedAnswer(f"a batch answer part of {part.get_content_type()!r}")
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raise MalformedAnswer("a batch answer part without content")
    raw = raw.lstrip(b"\r\n")
    end = _BLANK_LINE.search(raw)
    head, content = (raw, b"") if end is None else (raw[: end.start()], raw[end.end() :])
    status_line, *lines = _LINE_END.split(head.decode("utf-8", errors="replace"))
    words = status_line.split(maxsplit=2)
    if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
        raise MalformedAnswer(f"not an HTTP status line: {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise MalformedAnswer(f"not a header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return [BatchAnswer(int(words[1]), headers, content)]
