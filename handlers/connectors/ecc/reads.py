"""What the ECC connector reads back over SOAP-RFC, shared by stock documents and sales documents:
table reads with ECC's failures translated into the port's errors, and an inbound IDoc's
control record (``EDIDC`` by ``ARCKEY``) and last status message (``EDIDS``).

A table the connector reads but may not (``S_TABU_DIS``), a table or field the system lacks,
or the ICF service switched off, is :class:`~handlers.ports.erp.ErpAuthFailed` — a
configuration to fix, not an outage; 5xx and timeouts are
:class:`~handlers.ports.erp.ErpUnavailable` (never ambiguous: a read changes nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import msgspec

from handlers.connectors.ecc.client import (
    EccAuthError,
    EccClient,
    EccError,
    EccRejected,
    EccUnavailable,
)
from handlers.connectors.ecc.rfc import where
from handlers.ports.erp import ErpAuthFailed, ErpError, ErpUnavailable

Conditions = Sequence[tuple[str, str | Sequence[str]]]


class StatusMessage(msgspec.Struct, frozen=True):
    """An IDoc status record's message (or a BAPIRET2 row): class, number, variables, text."""

    message_class: str
    number: str
    variables: tuple[str, str, str, str]
    text: str

    @property
    def code(self) -> str:
        return f"{self.message_class} {self.number}".strip()

    def is_one_of(self, codes: Collection[str]) -> bool:
        """Whether its ``"CLASS NUMBER"`` is one of ``codes``."""
        return self.code in codes


class TableReader:
    """``RFC_READ_TABLE`` with the port's errors."""

    def __init__(self, client: EccClient) -> None:
        self._client = client

    async def read(
        self, table: str, fields: Sequence[str], conditions: Conditions | str
    ) -> list[dict[str, str]]:
        """Rows of ``table`` matching ``conditions`` (pairs, or a WHERE clause as it is)."""
        clause = conditions if isinstance(conditions, str) else where(conditions)
        try:
            return await self._client.read_table(table, fields, clause)
        except EccAuthError as exc:
            raise ErpAuthFailed(str(exc)) from None
        except EccUnavailable as exc:
            raise ErpUnavailable(str(exc), ambiguous=False) from None
        except EccRejected as exc:
            raise ErpAuthFailed(f"{exc} (a table or field the connector needs)") from None
        except EccError as exc:
            raise ErpError(str(exc)) from None

    async def control_record(self, docnum: int, key: str) -> dict[str, str] | None:
        """The EDIDC row of our IDoc ``docnum`` sent for ``key`` (ARCKEY ``<key>#<docnum>``)."""
        rows = await self.read(
            "EDIDC", ["DOCNUM", "STATUS", "ARCKEY"], [("ARCKEY", f"{key}#{docnum}")]
        )
        return rows[-1] if rows else None

    async def last_status(self, receiver: str) -> StatusMessage:
        """The message of the IDoc's latest status record."""
        rows = await self.read(
            "EDIDS",
            ["DOCNUM", "COUNTR", "STATUS", "STAMID", "STAMNO", "STAPA1", "STAPA2", "STAPA3",
             "STAPA4", "STATXT"],
            [("DOCNUM", receiver)],
        )  # fmt: skip
        if not rows:
            return StatusMessage("", "", ("", "", "", ""), "")
        last = max(rows, key=lambda r: int(r["COUNTR"] or 0))
        variables = (last["STAPA1"], last["STAPA2"], last["STAPA3"], last["STAPA4"])
        return StatusMessage(last["STAMID"], last["STAMNO"], variables, fill(last, variables))


def fill(row: dict[str, str], variables: tuple[str, str, str, str]) -> str:
    """The status text with its ``&1``..``&4`` (or ``&``) placeholders filled."""
    text = row["STATXT"]
    for index, value in enumerate(variables, start=1):
        text = text.replace(f"&{index}", value)
    for value in variables:
        if "&" not in text:
            break
        text = text.replace("&", value, 1)
    return text


def line_named(materials: Sequence[str], message: StatusMessage) -> int | None:
    """The document line an error names: the only line whose material appears in the
    message's variables or text (ECC prints a numeric material without leading zeros)."""
    words = set(" ".join((*message.variables, message.text)).replace(":", " ").split())
    named = [i for i, m in enumerate(materials) if m in words or m.lstrip("0") in words]
    return named[0] if len(named) == 1 else None
