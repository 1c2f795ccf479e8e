"""Service Layer's ``$batch`` in the simulator: the request parsed, its parts executed in
order (:func:`execute`; the server, :mod:`devstack.sims.b1.server`, serves each sub request),
the answer rendered.

From "Working with SAP Business One Service Layer" §3.10 (p.81-88, 2021 edition): ``POST
/b1s/v1/$batch`` with ``Content-Type: multipart/mixed;boundary=<batch boundary>``; the body
is a series of sub requests and change sets, each a MIME part between boundary lines (``--``
boundary, the last ``--`` boundary ``--``). A sub request's MIME headers are ``Content-Type:
application/http`` and ``Content-Transfer-Encoding: binary``, then an empty line and the HTTP
request: its request line (``POST /b1s/v1/Orders``; the manual's examples also write ``post
orders``, relative and in lower case, and ``HTTP/1.1`` may follow), its headers, an empty
line, its body. A change set is a part of ``Content-Type: multipart/mixed;boundary=<change set
boundary>`` holding sub requests (never a ``GET``, never another change set), each with an
optional ``Content-ID`` (a MIME header, or a header of the HTTP request: both are read) that
later parts of the set name as ``$<id>``. The answer (202 Accepted under OData v3) is
``multipart/mixed;boundary=batchresponse_<uuid>``: one ``application/http`` part per sub
request, a change set's as one ``multipart/mixed;boundary=changesetresponse_<uuid>`` part with
one part per sub request (each with its ``Content-ID``) — or, when the change set failed, one
``application/http`` part with the failing sub request's error.

Parsing is lenient about line ends (CRLF or LF) and strict about structure: what it cannot
read raises :class:`BatchFormatError` with the text for B1's 400 (``Incomplete Batch Request
Body!`` for a body without its closing boundary is the manual's; the other texts are
[UNCONF]). A part without ``Content-Transfer-Encoding: binary`` is refused too: the manual
says every sub request must carry it [UNCONF: whether Service Layer refuses one without].
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

from multidict import CIMultiDict
from yarl import URL

INCOMPLETE = "Incomplete Batch Request Body!"  # the manual's text (p.85)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(rb"\r?\n")
_TEXT_LINE = re.compile(r"\r?\n")
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)


class BatchFormatError(ValueError):
    """A batch Service Layer cannot read: answered 400 with code -1000 and this text."""


@dataclass(frozen=True)
class SubRequest:
    """One HTTP request of a batch: ``target`` as written in its request line."""

    method: str
    target: str
    headers: CIMultiDict[str]
    body: bytes
    content_id: str | None = None


@dataclass(frozen=True)
class ChangeSet:
    requests: list[SubRequest]


@dataclass(frozen=True)
class SubAnswer:
    """One HTTP answer of a batch."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    content_id: str | None = None


@dataclass
class Answers:
    """What the batch answers, in the order of its parts: a sub request's answer, or a change
    set's answers (all of them, or its one error)."""

    parts: list[SubAnswer | list[SubAnswer]] = field(default_factory=list)


@dataclass
class Run:
    """A batch being executed: its number, and whether a change set of it is being written."""

    number: int
    in_change_set: bool = False


#: Serves one sub request of a batch; the mapping: what each ``$<Content-ID>`` of its change
#: set names (the ``Location`` its sub request answered).
Serve = Callable[[SubRequest, Run, Mapping[str, str]], Awaitable[SubAnswer]]


async def execute(
    parts: Sequence[SubRequest | ChangeSet],
    run: Run,
    serve: Serve,
    *,
    transaction: asyncio.Lock,
    save: Callable[[], Callable[[], None]],
    continue_on_error: bool = False,
) -> Answers:
    """The parts one after another ("The service processes the requests within a batch
    request sequentially", p.82) until one fails ("the batch will stop executing once a sub
    request fails", p.86) — or all of them, ``continue_on_error``. A change set is written
    while holding ``transaction`` (other writes wait for it) and, if a sub request of it
    fails, undone (``save()`` returns the undo) and answered by that sub request alone."""
    answers = Answers()
    for part in parts:
        if isinstance(part, ChangeSet):
            answer = await _change_set(part, run, serve, transaction, save)
        else:
            answer = await serve(part, run, {})
        answers.parts.append(answer)
        if not isinstance(answer, list) and answer.status >= 400 and not continue_on_error:
            break
    return answers


async def _change_set(
    change_set: ChangeSet,
    run: Run,
    serve: Serve,
    transaction: asyncio.Lock,
    save: Callable[[], Callable[[], None]],
) -> list[SubAnswer] | SubAnswer:
    async with transaction:
        undo = save()
        created: dict[str, str] = {}
        answers: list[SubAnswer] = []
        run.in_change_set = True
        try:
            for request in change_set.requests:
                answer = await serve(request, run, created)
                if answer.status >= 400:
                    undo()
                    return answer
                if request.content_id is not None and "Location" in answer.headers:
                    created[request.content_id] = answer.headers["Location"]
                answers.append(answer)
        finally:
            run.in_change_set = False
        return answers


def target(written: str, root: str, created: Mapping[str, str]) -> str:
    """A sub request's path and query: its request line may write a full URL, an absolute
    path or one relative to ``root`` (``/b1s/v1``), and start with ``$<Content-ID>`` — the
    entity an earlier sub request of its change set created (``created``)."""
    url = URL(written)
    path = url.raw_path_qs if url.is_absolute() else written
    path = path if path.startswith("/") else f"{root}/{path}"
    found = re.match(re.escape(root) + r"/\$(\w+)(.*)\Z", path, re.DOTALL)
    if found is not None and found.group(1) in created:
        location = URL(created[found.group(1)])
        return (location.raw_path if location.is_absolute() else str(location)) + found.group(2)
    return path


def boundary_of(content_type: str) -> str:
    """The boundary of a ``multipart/mixed`` content type."""
    media = content_type.split(";", 1)[0].strip().lower()
    found = _BOUNDARY.search(content_type)
    if media != "multipart/mixed" or found is None:
        raise BatchFormatError("Content-Type of a batch must be multipart/mixed with a boundary")
    return found.group(1) or found.group(2)


def parse(content_type: str, body: bytes) -> list[SubRequest | ChangeSet]:
    """The parts of a batch request, in order."""
    parts: list[SubRequest | ChangeSet] = []
    for headers, content in _mime_parts(body, boundary_of(content_type)):
        kind = headers.get("Content-Type", "")
        if kind.lower().startswith("multipart/mixed"):
            requests = []
            for inner_headers, inner in _mime_parts(content, boundary_of(kind)):
                if inner_headers.get("Content-Type", "").lower().startswith("multipart/"):
                    raise BatchFormatError("A change set must not contain a change set")
                request = _sub_request(inner_headers, inner)
                if request.method == "GET":
                    raise BatchFormatError("A change set must not contain a GET request")
                requests.append(request)
            if not requests:
                raise BatchFormatError(INCOMPLETE)
            parts.append(ChangeSet(requests))
        else:
            parts.append(_sub_request(headers, content))
    if not parts:
        raise BatchFormatError(INCOMPLETE)
    return parts


def render(answers: Answers) -> tuple[str, bytes]:
    """(Content-Type, body) of the batch answer."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks: list[bytes] = []
    for part in answers.parts:
        chunks.append(f"--{boundary}\r\n".encode())
        if isinstance(part, list):
            inner = f"changesetresponse_{uuid.uuid4()}"
            chunks.append(f"Content-Type: multipart/mixed;boundary={inner}\r\n\r\n".encode())
            chunks.extend(f"--{inner}\r\n".encode() + _http_part(answer) for answer in part)
            chunks.append(f"--{inner}--\r\n".encode())
        else:
            chunks.append(_http_part(part))
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/mixed;boundary={boundary}", b"".join(chunks)


def count(parts: Sequence[SubRequest | ChangeSet]) -> int:
    """How many sub requests ``parts`` hold (a change set's each count)."""
    return sum(len(p.requests) if isinstance(p, ChangeSet) else 1 for p in parts)


# --- reading ---


def _mime_parts(body: bytes, boundary: str) -> list[tuple[CIMultiDict[str], bytes]]:
    """(MIME headers, content) of each part between the boundary lines."""
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    )
    found = list(delimiter.finditer(body))
    closing = [m for m in found if m.group(1)]
    if not closing:
        raise BatchFormatError(INCOMPLETE)
    parts = []
    for start, end in itertools.pairwise(found):
        if start.group(1):
            break
        headers, content = _split_headers(body[start.end() : end.start()])
        parts.append((headers, content))
    return parts


def _split_headers(chunk: bytes) -> tuple[CIMultiDict[str], bytes]:
    """Header lines up to the first empty line, and what follows (all headers if none)."""
    end = _HEADER_END.search(chunk)
    head, rest = (chunk, b"") if end is None else (chunk[: end.start()], chunk[end.end() :])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in _TEXT_LINE.split(head.decode("utf-8", errors="replace")) if head else []:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise BatchFormatError(f"Invalid header line in batch: {line[:80]!r}")
        headers.add(name.strip(), value.strip())
    return headers, rest


def _sub_request(mime: CIMultiDict[str], content: bytes) -> SubRequest:
    if mime.get("Content-Type", "").split(";")[0].strip().lower() != "application/http":
        raise BatchFormatError("Each sub request must have Content-Type application/http")
    if mime.get("Content-Transfer-Encoding", "").strip().lower() != "binary":
        raise BatchFormatError("Each sub request must have Content-Transfer-Encoding binary")
    content = content.lstrip(b"\r\n")
    line_end = _LINE.search(content)
    request_line = (content if line_end is None else content[: line_end.start()]).decode()
    rest = b"" if line_end is None else content[line_end.end() :]
    words = request_line.split()
    if len(words) not in (2, 3) or (len(words) == 3 and not words[2].startswith("HTTP/")):
        raise BatchFormatError(f"Invalid request line in batch: {request_line[:80]!r}")
    if rest[:1] in (b"\r", b"\n"):  # no headers: the empty line that ends them comes first
        headers, body = CIMultiDict[str](), rest.removeprefix(b"\r").removeprefix(b"\n")
    else:
        headers, body = _split_headers(rest)
    content_id = mime.get("Content-ID") or headers.get("Content-ID")
    return SubRequest(words[0].upper(), words[1], headers, body, content_id)


# --- writing ---


def _http_part(answer: SubAnswer) -> bytes:
    mime = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if answer.content_id is not None:
        mime += f"Content-ID: {answer.content_id}\r\n"
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {answer.status} {reason}".rstrip()]
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
    if answer.body:
        headers["Content-Length"] = str(len(answer.body))
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = "\r\n".join(lines) + "\r\n\r\n"
    return (mime + "\r\n" + head).encode() + answer.body + b"\r\n"
