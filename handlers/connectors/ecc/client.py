r"""SAP ECC over HTTP: IDocs in through the ICF IDoc service, tables read through SOAP-RFC.

:meth:`EccClient.send_idoc` posts one IDoc-XML document to ``/sap/bc/idoc_xml`` (content type
``application/x-sap.idoc``; [DOC] the XML-HTTP port types are ``text/xml`` or
``application/x-sap.idoc``) or, with ``inbound="soap"``, inside a SOAP envelope to
``/sap/bc/srt/idoc`` [DOC: SAP Note 1487606 as quoted by M. Dejl, blogs.sap.com 2014; the SOAP
body layout is UNCONF: the IDoc's root element as the body's only child]. ``sap-client`` goes
in the query; basic auth is sent pre-emptively (ECC does not challenge first [DOC-3P: Dejl]).
A 200 means ECC *stored* the IDoc, never that it posted: the outcome is read afterwards
(:mod:`handlers.connectors.ecc.port`). :meth:`EccClient.read_table` calls ``RFC_READ_TABLE``
through ``/sap/bc/soap/rfc`` (:mod:`handlers.connectors.ecc.rfc`), :meth:`EccClient.call_function`
any other remote-enabled function module (a missing one, ``FU_NOT_FOUND``, is a configuration
error).

Every failure is an :class:`EccError`: :class:`EccAuthError` (401; 403 — the user lacks an
authorisation, e.g. ``S_TABU_DIS`` for a table, or ``S_IDOCCTRL``; a 404 — the ICF service is
not active in SICF, as hardened systems often have it [DOC-3P: research A1]; these are
configuration errors to fix in ECC, not outages), :class:`EccUnavailable` (5xx, timeout,
connection; ``ambiguous`` when an IDoc may have been stored: a 500/502/504, a timeout or a
connection lost after sending — never for a read), :class:`EccRejected` (a 4xx for malformed
input, or an RFC exception naming a bad table, field or WHERE clause). The password is a
:class:`~config.settings.Secret`, revealed only into the request's Authorization header;
answers are redacted before they reach a message.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import TypeVar

import aiohttp
from yarl import URL

from config.redaction import redact_secrets
from config.settings import Secret
from handlers.connectors.ecc.rfc import (
    FunctionAnswer,
    RfcError,
    RfcException,
    Row,
    function_request,
    parse_function_response,
    parse_read_table,
    read_table_request,
)
from handlers.connectors.http import exchange
from worker.errors import SkuflowError

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
#: RFC exceptions that mean "not allowed" or "not there", a configuration error.
AUTH_EXCEPTIONS = frozenset({"NOT_AUTHORIZED", "NO_AUTHORITY", "FU_NOT_FOUND"})
#: How much of an error answer is quoted in a message.
QUOTE = 300
T = TypeVar("T")


class EccError(SkuflowError):
    """A failed ECC call; ``operation`` names it (``idoc_xml``, ``RFC_READ_TABLE EDIDC``)."""

    def __init__(self, message: str, *, operation: str, status: int | None = None) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.status = status


class EccAuthError(EccError):
    """Credentials refused, an authorisation missing, or the ICF service not active."""


class EccUnavailable(EccError):
    """Outage, 5xx, timeout. ``ambiguous``: the IDoc may have been stored all the same."""

    def __init__(
        self, message: str, *, ambiguous: bool, operation: str, status: int | None = None
    ) -> None:
        super().__init__(message, operation=operation, status=status)
        self.ambiguous = ambiguous


class EccRejected(EccError):
    """ECC refused the request itself (malformed IDoc, unknown table or field)."""


class EccClient:
    """One ECC system and client, over a shared aiohttp session."""

    def __init__(
        self,
        url: str,
        client: str,
        user: str,
        password: Secret,
        session: aiohttp.ClientSession,
        *,
        inbound: str = "idoc_xml",
        timeout: float = 30.0,
        verify_tls: bool = True,
    ) -> None:
        if inbound not in ("idoc_xml", "soap"):
            raise ValueError("inbound must be 'idoc_xml' or 'soap'")
        if not (len(client) == 3 and client.isdigit()):
            raise ValueError("client must be three digits (sap-client)")
        self._url, self._client, self._user = url.rstrip("/"), client, user
        self._password, self._session = password, session
        self._inbound, self._timeout, self._ssl = inbound, timeout, verify_tls
        self.idocs_sent = 0
        self.reads = 0
        self.calls = 0

    def __repr__(self) -> str:
        return f"EccClient(url={self._url!r}, client={self._client!r}, user={self._user!r})"

    async def send_idoc(self, idoc_xml: bytes) -> None:
        """Hand one IDoc to ECC; returns once ECC has stored it (HTTP 200)."""
        if self._inbound == "soap":
            path, operation = "/sap/bc/srt/idoc", "srt/idoc"
            body, content_type = _soap_wrap(idoc_xml), "text/xml; charset=utf-8"
        else:
            path, operation = "/sap/bc/idoc_xml", "idoc_xml"
            body, content_type = idoc_xml, "application/x-sap.idoc"
        status, raw = await self._post(path, body, content_type, operation, write=True)
        self.idocs_sent += 1
        if 200 <= status < 300:
            return
        raise self._error(operation, status, raw, write=True)

    async def read_table(
        self, table: str, fields: Sequence[str], clause: str = "", *, row_count: int = 0
    ) -> list[dict[str, str]]:
        """Rows of ``table`` (``fields`` only) matching the Open SQL ``clause``."""
        operation = f"RFC_READ_TABLE {table}"
        request = read_table_request(table, fields, clause, row_count=row_count)
        self.reads += 1
        return await self._rfc("RFC_READ_TABLE", operation, request, parse_read_table, write=False)

    async def call_function(
        self,
        function: str,
        parameters: dict[str, str],
        tables: dict[str, Sequence[Row]] | None = None,
        *,
        write: bool = True,
    ) -> FunctionAnswer:
        """Call a remote-enabled function module (a wrapper that commits: ``write``, so an answer
        lost after sending is ambiguous). A missing module (``FU_NOT_FOUND``) is an
        :class:`EccAuthError`: a configuration to fix in ECC."""
        request = function_request(function, parameters, tables or {})
        self.calls += 1
        return await self._rfc(
            function, function, request,
            lambda raw: parse_function_response(raw, function), write=write,
        )  # fmt: skip

    async def _rfc(
        self,
        function: str,
        operation: str,
        request: bytes,
        parse: Callable[[bytes], T],
        *,
        write: bool,
    ) -> T:
        status, raw = await self._post(
            "/sap/bc/soap/rfc", request, "text/xml; charset=utf-8", operation, write=write,
            action=f"urn:sap-com:document:sap:rfc:functions:{function}",
        )  # fmt: skip
        if status not in (200, 500):  # a SOAP fault comes with a 500
            raise self._error(operation, status, raw, write=write)
        try:
            return parse(raw)
        except RfcException as exc:
            if exc.name in AUTH_EXCEPTIONS:
                raise EccAuthError(str(exc), operation=operation, status=status) from None
            raise EccRejected(str(exc), operation=operation, status=status) from None
        except RfcError as exc:
            if status == 500:
                raise self._error(operation, status, raw, write=write) from None
            raise EccUnavailable(
                f"unreadable answer: {exc}", ambiguous=write, operation=operation, status=status
            ) from None

    def _error(self, operation: str, status: int, raw: bytes, *, write: bool) -> EccError:
        text = self._quote(raw)
        if status in (401, 403):
            return EccAuthError(
                f"HTTP {status}: user {self._user} refused or not authorised: {text}",
                operation=operation, status=status,
            )  # fmt: skip
        if status == 404:
            return EccAuthError(
                f"HTTP 404: the ICF service is not active (SICF) at {self._url}: {text}",
                operation=operation, status=status,
            )  # fmt: skip
        if 400 <= status < 500 and status not in (408, 429):
            return EccRejected(f"HTTP {status}: {text}", operation=operation, status=status)
        ambiguous = write and status != 503
        return EccUnavailable(
            f"HTTP {status}: {text}", ambiguous=ambiguous, operation=operation, status=status
        )

    def _quote(self, raw: bytes) -> str:
        text = raw[:QUOTE].decode("utf-8", "replace").replace("\n", " ").strip()
        return redact_secrets(text, self._password.reveal())

    async def _post(
        self,
        path: str,
        body: bytes,
        content_type: str,
        operation: str,
        *,
        write: bool,
        action: str | None = None,
    ) -> tuple[int, bytes]:
        credentials = f"{self._user}:{self._password.reveal()}".encode()
        headers = {
            "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
            "Content-Type": content_type,
        }
        if action is not None:
            headers["SOAPAction"] = action
        url = URL(self._url + path).with_query({"sap-client": self._client})
        request = self._session.post(
            url, data=body, headers=headers, ssl=self._ssl, allow_redirects=False
        )
        answer = await exchange(
            request, self._timeout, write=write,
            unavailable=lambda reason, ambiguous: EccUnavailable(
                reason, ambiguous=ambiguous, operation=operation
            ),
        )  # fmt: skip
        return answer.status, answer.body


def _soap_wrap(idoc_xml: bytes) -> bytes:
    """The IDoc-XML as the only child of a SOAP 1.1 body [UNCONF layout, see the module]."""
    start = idoc_xml.find(b"?>")
    document = idoc_xml[start + 2 :].lstrip() if idoc_xml.startswith(b"<?xml") else idoc_xml
    return (
        b'<?xml version="1.0" encoding="utf-8"?>'
        b'<soap:Envelope xmlns:soap="'
        + SOAP_ENV.encode()
        + b'"><soap:Body>'
        + document
        + b"</soap:Body></soap:Envelope>"
    )
