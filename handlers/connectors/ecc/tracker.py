"""``skuflow_ecc_idocs``: every IDoc skuflow sends to ECC, from before it is sent until its
application is known — goods movements (keyed by their posting) and sales orders (keyed
``order:<reference>``, no materials: they never hold a stock posting back).

:meth:`IdocTracker.send` hands one recorded IDoc to ECC: failing for certain (nothing stored),
it is marked ``lost`` at once; an ambiguous failure (or cancellation mid-send) leaves it
``sending`` until the sender looks it up in EDIDC by its ARCKEY; stored, it is ``stored``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import asyncpg

from handlers.connectors.ecc.client import EccAuthError, EccClient, EccRejected, EccUnavailable
from handlers.ports.erp import ErpAuthFailed, ErpRejected, ErpUnavailable

#: IDoc statuses that end an inbound IDoc's processing here.
POSTED, FAILED = "53", "51"
#: Statuses of an inbound IDoc still on its way to the application [DOC-3P status list].
IN_PROCESS = frozenset({"50", "64", "62", "66", "69", "70", "75"})


class IdocTracker:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def fetch(self, docnum: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._pool.fetchrow(
            "SELECT * FROM skuflow_ecc_idocs WHERE docnum = $1", docnum
        )
        return row

    async def rows(self, key: str) -> list[asyncpg.Record]:
        return list(
            await self._pool.fetch(
                "SELECT * FROM skuflow_ecc_idocs WHERE key = $1 ORDER BY docnum", key
            )
        )

    async def update(self, docnum: int, **fields: str | None) -> None:
        columns = ", ".join(f"{name} = ${n}" for n, name in enumerate(fields, start=2))
        await self._pool.execute(
            f"UPDATE skuflow_ecc_idocs SET {columns}, updated_at = now() WHERE docnum = $1",
            docnum,
            *fields.values(),
        )

    async def lose(self, docnum: int, message: str = "not stored by ECC") -> None:
        with anyio.CancelScope(shield=True):
            await self.update(docnum, state="lost", message=message)

    async def send(
        self, client: EccClient, docnum: int, payload: Callable[[], Awaitable[bytes]]
    ) -> None:
        """Build the IDoc recorded as ``docnum`` and send it (see the module)."""
        sending = False
        try:
            body = await payload()
            sending = True
            await client.send_idoc(body)
        except EccUnavailable as exc:
            if exc.ambiguous:  # stored or not: found out before anything is sent again
                raise ErpUnavailable(str(exc), ambiguous=True) from None
            await self.lose(docnum)
            raise ErpUnavailable(str(exc), ambiguous=False) from None
        except EccAuthError as exc:
            await self.lose(docnum)
            raise ErpAuthFailed(str(exc)) from None
        except EccRejected as exc:
            await self.lose(docnum)
            raise ErpRejected("IDOC", str(exc)) from None
        except BaseException:
            if not sending:
                await self.lose(docnum)
            raise
        await self.update(docnum, state="stored")
